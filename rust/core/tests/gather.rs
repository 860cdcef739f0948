//! `gather` against plain reference loops: every layout (dense C/F, CSR, CSC sorted or not),
//! value and index type, row range and thread count gives the reference's bits.

use ecorecover_core::gather::{self, Columns, Matrix, Moments, Scaling, Sparse};
use ndarray::{Array2, ShapeBuilder};

#[path = "common/random.rs"]
mod random;
use random::{csr, random, Rng};

struct Ref {
    sum: Vec<f64>,
    nnz: Vec<i64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    omitted: Vec<bool>,
    sq: Vec<f64>,
}

/// The numpy path as loops: cells in order, slots in order.
fn reference(x: &Array2<f64>, cols: &[usize], groups: &[i64], g_n: usize, scale: bool, transform: bool) -> Ref {
    let k = cols.len();
    let t = |v: f64| if transform { (v + 1.0).log2() } else { v };
    let mut r = Ref {
        sum: vec![0.0; g_n * k],
        nnz: vec![0; g_n * k],
        lo: vec![f64::INFINITY; g_n * k],
        hi: vec![f64::NEG_INFINITY; g_n * k],
        omitted: vec![false; x.nrows()],
        sq: vec![0.0; g_n * k],
    };
    let mut eff = groups.to_vec();
    for (c, g) in eff.iter_mut().enumerate() {
        let expressed = cols.iter().filter(|&&j| t(x[[c, j]]) > 1e-16).count();
        if scale && *g >= 0 && expressed < 3 {
            r.omitted[c] = true;
            *g = -1;
        }
        if *g < 0 {
            continue;
        }
        for (s, &j) in cols.iter().enumerate() {
            let v = t(x[[c, j]]);
            if v != 0.0 {
                let a = *g as usize * k + s;
                r.sum[a] += v;
                r.nnz[a] += 1;
                r.lo[a] = r.lo[a].min(v);
                r.hi[a] = r.hi[a].max(v);
            }
        }
    }
    let n_kept: Vec<f64> = (0..g_n).map(|g| eff.iter().filter(|&&e| e == g as i64).count() as f64).collect();
    let mean: Vec<f64> = (0..g_n * k).map(|a| r.sum[a] / n_kept[a / k.max(1)]).collect();
    for (c, &g) in eff.iter().enumerate() {
        if g < 0 {
            continue;
        }
        for (s, &j) in cols.iter().enumerate() {
            let v = t(x[[c, j]]);
            if v != 0.0 {
                let a = g as usize * k + s;
                r.sq[a] += (v - mean[a]) * (v - mean[a]);
            }
        }
    }
    r
}

fn bits(a: &[f64]) -> Vec<u64> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// Runs both passes over `m` in the row blocks `blocks` and compares with the reference.
#[allow(clippy::too_many_arguments)]
fn check(
    m: &Matrix<f64, i64>,
    x: &Array2<f64>,
    cols: &[usize],
    groups: &[i64],
    g_n: usize,
    scale: bool,
    transform: bool,
    block: usize,
) {
    let k = cols.len();
    let want = reference(x, cols, groups, g_n, scale, transform);
    let c64: Vec<i64> = cols.iter().map(|&c| c as i64).collect();
    let columns = Columns::new(&c64, x.ncols()).unwrap();
    let (mut sum, mut nnz) = (vec![0.0; g_n * k], vec![0i64; g_n * k]);
    let (mut lo, mut hi) = (vec![f64::INFINITY; g_n * k], vec![f64::NEG_INFINITY; g_n * k]);
    let mut omitted = vec![false; x.nrows()];
    for a in (0..x.nrows()).step_by(block) {
        let b = (a + block).min(x.nrows());
        let acc = Moments { sum: &mut sum, nnz: &mut nnz, lo: &mut lo, hi: &mut hi };
        gather::pass1(m, a..b, &columns, &groups[a..b], g_n, scale, transform, acc, &mut omitted[a..b]).unwrap();
    }
    assert_eq!(bits(&sum), bits(&want.sum));
    assert_eq!(nnz, want.nnz);
    assert_eq!(bits(&lo), bits(&want.lo));
    assert_eq!(bits(&hi), bits(&want.hi));
    assert_eq!(omitted, want.omitted);
    let eff: Vec<i64> = groups.iter().zip(&omitted).map(|(&g, &o)| if o { -1 } else { g }).collect();
    let n_kept: Vec<f64> = (0..g_n).map(|g| eff.iter().filter(|&&e| e == g as i64).count() as f64).collect();
    let mean: Vec<f64> = (0..g_n * k).map(|a| sum[a] / n_kept[a / k.max(1)]).collect();
    let mut sq = vec![0.0; g_n * k];
    for a in (0..x.nrows()).step_by(block) {
        let b = (a + block).min(x.nrows());
        gather::pass2(m, a..b, &columns, &eff[a..b], &mean, transform, &mut sq).unwrap();
    }
    assert_eq!(bits(&sq), bits(&want.sq));
}

fn layouts(x: &Array2<f64>, f: impl Fn(&Matrix<f64, i64>)) {
    let fx = {
        let mut a = Array2::zeros(x.dim().f());
        a.assign(x);
        a
    };
    f(&Matrix::Dense(x.view()));
    f(&Matrix::Dense(fx.view()));
    let (p, i, d) = csr(x);
    f(&Matrix::Csr(Sparse::new(&p, &i, &d, x.nrows(), true).unwrap(), x.ncols()));
    f(&Matrix::Csr(Sparse::new(&p, &i, &d, x.nrows(), false).unwrap(), x.ncols()));
    let xt = x.t().to_owned();
    let (p, i, d) = csr(&xt);
    f(&Matrix::Csc(Sparse::new(&p, &i, &d, x.ncols(), true).unwrap(), x.nrows()));
    f(&Matrix::Csc(Sparse::new(&p, &i, &d, x.ncols(), false).unwrap(), x.nrows()));
}

#[test]
fn passes_match_the_reference_for_every_layout_block_and_thread_count() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for case in 0..12 {
        let (n, p) = (30 + rng.below(150), 5 + rng.below(40));
        let density = 0.05 + 0.4 * rng.unif();
        let x = random(&mut rng, n, p, density, case % 3 == 0);
        let mut cols: Vec<usize> = (0..p).filter(|_| rng.unif() < 0.6).collect();
        if case % 2 == 1 {
            cols.reverse();
        }
        let g_n = 1 + rng.below(3);
        let groups: Vec<i64> = (0..n).map(|_| rng.below(g_n + 1) as i64 - 1).collect();
        let (scale, transform, block) = (case % 4 != 3, case % 3 == 0, [7, 1000, 64][case % 3]);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| layouts(&x, |m| check(m, &x, &cols, &groups, g_n, scale, transform, block)));
        }
    }
}

#[test]
fn scan_reports_the_first_bad_values_in_cell_order() {
    let mut x = Array2::zeros((6, 5));
    x[[1, 3]] = 2.0;
    x[[2, 4]] = -1.5;
    x[[3, 1]] = f64::NAN;
    x[[4, 0]] = f64::INFINITY;
    x[[5, 2]] = -3.0;
    let cols = Columns::new(&[1, 2, 3, 4], 5).unwrap();
    layouts(&x, |m| {
        let mut tile = vec![0.0; 6 * 4];
        let scan = gather::fill_tile(m, &[0, 1, 2, 3, 4, 5], &cols, false, &mut tile).unwrap();
        assert_eq!(scan.nonfinite, 1); // column 0 is not read
        assert_eq!(scan.first_nonfinite.map(|f| (f.0, f.1)), Some((3, 0)));
        assert_eq!(scan.first_negative, Some((2, 3, -1.5)));
        assert_eq!((scan.min, scan.max, scan.stored, scan.cells), (-3.0, 2.0, 4, 24));
        assert!(scan.implicit_zero());
    });
}

#[test]
fn passes_over_many_tiles_match_the_reference() {
    let mut rng = Rng(0xDEADBEEF);
    let (n, p) = (3000, 70);
    let x = random(&mut rng, n, p, 0.5, true);
    let cols: Vec<usize> = (0..p).rev().filter(|_| rng.unif() < 0.7).collect();
    let groups: Vec<i64> = (0..n).map(|_| rng.below(4) as i64 - 1).collect();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| layouts(&x, |m| check(m, &x, &cols, &groups, 3, true, threads == 1, 2500)));
    }
}

#[test]
fn pass1_reports_what_the_tile_scan_reports() {
    let mut rng = Rng(99);
    let mut x = random(&mut rng, 40, 9, 0.5, false);
    x[[3, 2]] = -0.0;
    x[[7, 5]] = -2.0;
    x[[9, 1]] = f64::NAN;
    x[[11, 4]] = f64::INFINITY;
    x[[12, 6]] = f64::NEG_INFINITY;
    x[[20, 8]] = -1e-300;
    let cols = Columns::new(&[8, 1, 2, 4, 5, 6], 9).unwrap();
    let rows: Vec<usize> = (0..40).collect();
    let groups = vec![0i64; 40];
    layouts(&x, |m| {
        let mut tile = vec![0.0; 40 * 6];
        let want = gather::fill_tile(m, &rows, &cols, false, &mut tile).unwrap();
        let (mut sum, mut nnz, mut lo, mut hi) = (vec![0.0; 6], vec![0i64; 6], vec![0.0; 6], vec![0.0; 6]);
        let acc = Moments { sum: &mut sum, nnz: &mut nnz, lo: &mut lo, hi: &mut hi };
        let got = gather::pass1(m, 0..40, &cols, &groups, 1, true, false, acc, &mut [false; 40]).unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(got.first_negative.map(|f| (f.0, f.1)), Some((7, 4)));
        assert_eq!(got.first_nonfinite.map(|f| (f.0, f.1)), Some((9, 1)));
        assert_eq!(got.nonfinite, 3);
    });
}

#[test]
fn run_blocks_match_the_reference() {
    let mut rng = Rng(12345);
    let x = random(&mut rng, 80, 20, 0.3, false);
    let rows: Vec<usize> = (0..80).filter(|_| rng.unif() < 0.4).collect();
    let c: Vec<i64> = vec![7, 2, 15, 3, 11, 19];
    let cols = Columns::new(&c, 20).unwrap();
    let mean: Vec<f64> = (0..6).map(|_| rng.unif()).collect();
    let mut sd: Vec<f64> = (0..6).map(|_| 0.1 + rng.unif()).collect();
    sd[1] = 0.0;
    let in_w = vec![true, true, false, true, true, true, true, true, true, true, false, true];
    let z = |i: usize, j: usize| ecorecover_core::preprocess::scaled(x[[rows[i], c[j] as usize]], mean[j], sd[j], 10.0);
    layouts(&x, |m| {
        let sc = Some(Scaling { mean: &mean, sd: &sd, max: 10.0 });
        let d = gather::extract_dense(m, &rows, &cols, sc, false).unwrap();
        for ((i, j), v) in d.indexed_iter() {
            assert_eq!(v.to_bits(), z(i, j).to_bits());
        }
        let (v, kept) = gather::run_features(m, &rows, &cols, sc, true, false, &in_w).unwrap();
        assert!(!kept.contains(&2) && !kept.contains(&10));
        for (r, &f) in kept.iter().enumerate() {
            for i in 0..rows.len() {
                let zz = z(i, f % 6);
                let want = if f < 6 { zz.max(0.0) } else { (-zz).max(0.0) };
                assert_eq!(v[[r, i]].to_bits(), (want + 0.0).to_bits());
            }
        }
        let (p, ix, dd) = gather::extract_csr(m, &rows, &cols, false).unwrap();
        assert_eq!(p.len(), rows.len() + 1);
        for i in 0..rows.len() {
            for e in p[i] as usize..p[i + 1] as usize {
                assert_eq!(dd[e], x[[rows[i], c[ix[e] as usize] as usize]]);
            }
        }
    });
}

#[test]
fn other_value_and_index_types_give_the_same_bits() {
    let mut rng = Rng(777);
    let x = random(&mut rng, 50, 12, 0.4, true);
    let cols = Columns::new(&[0, 3, 5, 6, 11], 12).unwrap();
    let rows: Vec<usize> = (0..50).collect();
    let mut want = vec![0.0; 50 * 5];
    gather::fill_tile(&Matrix::<f64, i64>::Dense(x.view()), &rows, &cols, true, &mut want).unwrap();
    let xi = x.mapv(|v| v as i32);
    let xf = x.mapv(|v| v as f32);
    let (p, i, d) = csr(&x);
    let (p32, i32_): (Vec<i32>, Vec<i32>) =
        (p.iter().map(|&v| v as i32).collect(), i.iter().map(|&v| v as i32).collect());
    let du16: Vec<u16> = d.iter().map(|&v| v as u16).collect();
    let mut got = vec![0.0; 50 * 5];
    gather::fill_tile(&Matrix::<i32, i64>::Dense(xi.view()), &rows, &cols, true, &mut got).unwrap();
    assert_eq!(bits(&got), bits(&want));
    gather::fill_tile(&Matrix::<f32, i64>::Dense(xf.view()), &rows, &cols, true, &mut got).unwrap();
    assert_eq!(bits(&got), bits(&want));
    let m = Matrix::Csr(Sparse::new(&p32, &i32_, &du16, 50, true).unwrap(), 12);
    gather::fill_tile(&m, &rows, &cols, true, &mut got).unwrap();
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn broken_sparse_input_is_refused() {
    let (p, i, d) = (vec![0i64, 2, 3], vec![1i64, 1, 9], vec![1.0, 2.0, 3.0]);
    let cols = Columns::new(&[0, 1], 3).unwrap();
    let m = Matrix::Csr(Sparse::new(&p, &i, &d, 2, true).unwrap(), 3);
    let mut tile = vec![0.0; 4];
    let e = gather::fill_tile(&m, &[0, 1], &cols, false, &mut tile).unwrap_err();
    assert!(e.to_string().contains("twice") || e.to_string().contains("range"), "{e}");
    assert!(Sparse::new(&[0i64, 5], &i, &d, 1, true).is_err());
    assert!(Columns::new(&[0, 0], 3).is_err());
    assert!(Columns::new(&[3], 3).is_err());
}

#[test]
fn passes_refuse_broken_sparse_input() {
    let cols = Columns::new(&[0, 2], 3).unwrap();
    let groups = [0i64, 0];
    let run = |p: &[i64], i: &[i64], sorted: bool, csc: bool| -> String {
        let d = vec![1.0; i.len()];
        let sp = Sparse::new(p, i, &d, if csc { 3 } else { 2 }, sorted).unwrap();
        let m = if csc { Matrix::Csc(sp, 2) } else { Matrix::Csr(sp, 3) };
        let (mut s, mut z, mut lo, mut hi) = (vec![0.0; 2], vec![0i64; 2], vec![0.0; 2], vec![0.0; 2]);
        let acc = Moments { sum: &mut s, nnz: &mut z, lo: &mut lo, hi: &mut hi };
        let e1 = gather::pass1(&m, 0..2, &cols, &groups, 1, false, false, acc, &mut [false; 2]).unwrap_err();
        let e2 = gather::pass2(&m, 0..2, &cols, &groups, &[0.0, 0.0], false, &mut [0.0; 2]).unwrap_err();
        assert_eq!(e1.to_string(), e2.to_string());
        e1.to_string()
    };
    // CSR: row 0 stores column 2 twice; columns out of order; an index out of range.
    for sorted in [true, false] {
        assert!(run(&[0, 2, 3], &[2, 2, 0], sorted, false).contains("twice"));
        assert!(run(&[0, 2, 3], &[0, 1, 7], sorted, false).contains("range"));
    }
    assert!(run(&[0, 2, 3], &[2, 0, 0], true, false).contains("not sorted"));
    // CSC: column 0 stores row 1 twice; rows out of order; an index out of range (sorted
    // columns are searched for the row range, so only unsorted ones see it).
    for sorted in [true, false] {
        assert!(run(&[0, 2, 2, 3], &[1, 1, 0], sorted, true).contains("twice"));
    }
    assert!(run(&[0, 2, 2, 3], &[0, 1, 5], false, true).contains("range"));
    assert!(run(&[0, 2, 2, 3], &[1, 0, 0], true, true).contains("not sorted"));
}
