//! The fast-mode lane kernel against the plain per-cell reference solver (its own QP and the
//! C library's log): every SIMD path of this CPU gives the same bits, whatever the thread
//! count and the other cells of the block, and each cell's objective is the reference's to a
//! tight tolerance, for random shapes (cell counts that are not a multiple of the lane width,
//! cells without any entry, k = 1, unused and all-zero W rows).

use ecorecover_core::fast::{solve_cells_on, solve_cells_reference, FastOptions, GeneModel, Scaling, SimdPath};
use ecorecover_core::preprocess::scaled;
use ecorecover_core::sparse::Compressed;
use ecorecover_core::Cancel;
use ndarray::Array2;
use proptest::prelude::*;

/// A random problem: `n` cells x `g` genes, k SEs, from a seed.
struct Case {
    wpos: Array2<f64>,
    wneg: Array2<f64>,
    indptr: Vec<i64>,
    indices: Vec<i64>,
    data: Vec<f64>,
    mean: Vec<f64>,
    sd: Vec<f64>,
}

fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn case(n: usize, g: usize, k: usize, seed: u64, signed: bool) -> Case {
    let mut s = seed;
    let w = |s: &mut u64| {
        Array2::from_shape_fn((g, k), |_| {
            let u = uniform(s);
            if u < 0.05 {
                f64::NAN // unused feature
            } else if u < 0.15 {
                0.0
            } else {
                2.0 * uniform(s).powi(2)
            }
        })
    };
    let (mut wpos, wneg) = (w(&mut s), w(&mut s));
    if g > 0 && uniform(&mut s) < 0.5 {
        wpos.row_mut(0).fill(0.0); // an all-zero row: the feature is dropped
    }
    let (mut indptr, mut indices, mut data) = (vec![0i64], vec![], vec![]);
    for _ in 0..n {
        let density = if uniform(&mut s) < 0.2 { 0.0 } else { uniform(&mut s) }; // some empty cells
        for j in 0..g {
            if uniform(&mut s) < density {
                indices.push(j as i64);
                let x = 3.0 * uniform(&mut s);
                data.push(if signed && uniform(&mut s) < 0.4 { -x } else { x });
            }
        }
        indptr.push(indices.len() as i64);
    }
    let mean = (0..g).map(|_| uniform(&mut s)).collect();
    let sd = (0..g).map(|_| 0.2 + uniform(&mut s)).collect();
    Case { wpos, wneg, indptr, indices, data, mean, sd }
}

/// Each cell's objective `f(h) = d . h - sum v_i ln (W h)_i` (`d`: the used rows' column sums).
fn objectives(c: &Case, n: usize, g: usize, posneg: bool, scaling: Option<Scaling>, h: &Array2<f64>) -> Vec<f64> {
    let k = h.ncols();
    let used = |w: &Array2<f64>, j: usize| !w.row(j).iter().any(|v| v.is_nan());
    let mut d = vec![0.0; k];
    for j in 0..g {
        for (w, on) in [(&c.wpos, true), (&c.wneg, posneg)] {
            if on && used(w, j) {
                (0..k).for_each(|a| d[a] += w[[j, a]]);
            }
        }
    }
    (0..n)
        .map(|cell| {
            let mut z: Vec<f64> =
                (0..g).map(|j| scaling.map_or(0.0, |s| scaled(0.0, s.mean[j], s.sd[j], s.scale_max))).collect();
            for e in c.indptr[cell] as usize..c.indptr[cell + 1] as usize {
                let (j, x) = (c.indices[e] as usize, c.data[e]);
                z[j] = scaling.map_or(x, |s| scaled(x, s.mean[j], s.sd[j], s.scale_max));
            }
            let hr = h.row(cell);
            let mut f: f64 = (0..k).map(|a| d[a] * hr[a]).sum();
            for (j, &zj) in z.iter().enumerate() {
                let (w, v) = if zj > 0.0 {
                    (&c.wpos, zj)
                } else if zj < 0.0 && posneg {
                    (&c.wneg, -zj)
                } else {
                    continue;
                };
                if used(w, j) && w.row(j).iter().any(|&x| x > 0.0) {
                    f -= v * (0..k).map(|a| w[[j, a]] * hr[a]).sum::<f64>().ln();
                }
            }
            f
        })
        .collect()
}

fn check(n: usize, g: usize, k: usize, seed: u64, scaled: bool, posneg: bool, max_iter: usize) {
    let c = case(n, g, k, seed, posneg && !scaled);
    let x = Compressed::new(&c.indptr, &c.indices, &c.data, n, g).unwrap();
    let model = GeneModel { wpos: c.wpos.view(), wneg: c.wneg.view(), posneg };
    let scaling = scaled.then_some(Scaling { mean: &c.mean, sd: &c.sd, scale_max: 2.5 });
    let opts = FastOptions { max_iter, ..FastOptions::default() };
    let reference = solve_cells_reference(&x, &model, scaling, &opts, &Cancel::new());
    let mut first: Option<(Array2<f64>, Vec<u32>)> = None;
    for path in SimdPath::available() {
        let lanes = solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new());
        match (&reference, lanes) {
            (Ok((hr, _)), Ok(out)) => {
                if let Some(f) = &first {
                    assert_eq!(bits(&f.0), bits(&out.0), "{path:?}: not the bits of the first path");
                    assert_eq!(f.1, out.1, "{path:?}: iterations differ between paths");
                }
                if max_iter >= 100 {
                    let (fr, fl) =
                        (objectives(&c, n, g, posneg, scaling, hr), objectives(&c, n, g, posneg, scaling, &out.0));
                    for (cell, (a, b)) in fr.iter().zip(&fl).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-9 * (1.0 + a.abs()),
                            "{path:?}: cell {cell}: objective {b} vs reference {a}"
                        );
                    }
                }
                // Each cell alone gives its bits (batch composition does not matter).
                for cell in [0, n / 2, n.saturating_sub(1)].into_iter().filter(|&c| c < n) {
                    let (p0, p1) = (c.indptr[cell] as usize, c.indptr[cell + 1] as usize);
                    let idx = &c.indices[p0..p1];
                    let indptr = [0, idx.len() as i64];
                    let one = Compressed::new(&indptr, idx, &c.data[p0..p1], 1, g).unwrap();
                    let (h1, i1) = solve_cells_on(path, &one, &model, scaling, &opts, &Cancel::new()).unwrap();
                    assert_eq!(
                        bits(&h1),
                        bits(&out.0.select(ndarray::Axis(0), &[cell])),
                        "{path:?}: cell {cell} alone"
                    );
                    assert_eq!(i1[0], out.1[cell]);
                }
                first.get_or_insert(out);
            }
            (r, l) => assert_eq!(r.as_ref().map(|_| ()), l.as_ref().map(|_| ()), "{path:?}"),
        }
    }
}

fn bits(h: &Array2<f64>) -> Vec<u64> {
    h.iter().map(|v| v.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn lanes_agree_with_the_reference_and_across_paths(
        n in 0usize..45,
        g in 1usize..30,
        k in 1usize..7,
        seed in any::<u64>(),
        scaled in any::<bool>(),
        posneg in any::<bool>(),
    ) {
        check(n, g, k, seed, scaled, posneg, 100);
    }
}

#[test]
fn k_one_and_ragged_lanes() {
    for (n, seed) in [(1, 1), (7, 2), (9, 3), (17, 4), (1030, 5)] {
        check(n, 12, 1, seed, true, true, 100);
    }
}

#[test]
fn empty_cells_and_iteration_caps() {
    // No scaling and no entries: every feature is 0, the cell has no signal.
    check(13, 5, 3, 9, false, true, 100);
    for max_iter in [0, 1, 2, 3] {
        check(21, 20, 4, 11, true, true, max_iter);
    }
}

#[test]
fn realistic_size_and_threads() {
    let c = case(700, 75, 11, 42, false);
    let x = Compressed::new(&c.indptr, &c.indices, &c.data, 700, 75).unwrap();
    let model = GeneModel { wpos: c.wpos.view(), wneg: c.wneg.view(), posneg: true };
    let scaling = Some(Scaling { mean: &c.mean, sd: &c.sd, scale_max: 10.0 });
    let opts = FastOptions::default();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let r = solve_cells_reference(&x, &model, scaling, &opts, &Cancel::new()).unwrap();
    let mut first = None;
    for path in SimdPath::available() {
        let a = one.install(|| solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new()).unwrap());
        let b = two.install(|| solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new()).unwrap());
        assert_eq!(a, b, "{path:?}: threads");
        assert_eq!(first.get_or_insert_with(|| a.clone()), &a, "{path:?}: paths");
        let (fr, fl) = (objectives(&c, 700, 75, true, scaling, &r.0), objectives(&c, 700, 75, true, scaling, &a.0));
        for (cell, (x, y)) in fr.iter().zip(&fl).enumerate() {
            assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{path:?}: cell {cell}: objective {y} vs reference {x}");
        }
    }
}
