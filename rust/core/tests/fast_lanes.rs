//! The fast-mode lane kernel against the plain per-cell reference: same bits and iteration
//! counts on every SIMD path of this CPU, for random shapes (cell counts that are not a
//! multiple of the lane width, cells without any entry, k = 1, unused and all-zero W rows).

use ecorecover_core::fast::{solve_cells_on, solve_cells_reference, FastOptions, GeneModel, Scaling, SimdPath};
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

fn check(n: usize, g: usize, k: usize, seed: u64, scaled: bool, posneg: bool, max_iter: usize) {
    let c = case(n, g, k, seed, posneg && !scaled);
    let x = Compressed::new(&c.indptr, &c.indices, &c.data, n, g).unwrap();
    let model = GeneModel { wpos: c.wpos.view(), wneg: c.wneg.view(), posneg };
    let scaling = scaled.then_some(Scaling { mean: &c.mean, sd: &c.sd, scale_max: 2.5 });
    let opts = FastOptions { max_iter, ..FastOptions::default() };
    let reference = solve_cells_reference(&x, &model, scaling, &opts, &Cancel::new());
    for path in SimdPath::available() {
        let lanes = solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new());
        match (&reference, &lanes) {
            (Ok((hr, ir)), Ok((hl, il))) => {
                assert_eq!(ir, il, "{path:?}: iterations differ");
                for (cell, (a, b)) in hr.outer_iter().zip(hl.outer_iter()).enumerate() {
                    let (a, b): (Vec<u64>, Vec<u64>) =
                        (a.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_bits()).collect());
                    assert_eq!(a, b, "{path:?}: cell {cell} differs");
                }
            }
            (r, l) => assert_eq!(r, l, "{path:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn lanes_match_the_reference_bit_for_bit(
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
    for path in SimdPath::available() {
        let a = one.install(|| solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new()).unwrap());
        let b = two.install(|| solve_cells_on(path, &x, &model, scaling, &opts, &Cancel::new()).unwrap());
        assert_eq!(a, r, "{path:?}");
        assert_eq!(b, r, "{path:?}");
    }
}
