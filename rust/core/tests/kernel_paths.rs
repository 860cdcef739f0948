//! Every compiled copy of the NMF lane kernel (scalar, AVX2, AVX-512) that this CPU runs gives
//! the same bits, on random problems and on R's fixtures, for any thread count.

mod common;

use ecorecover_core::nmf::{simd_level, update_h_with, update_w_with, KernelPath, StopRule};
use ecorecover_core::{Cancel, CoreError};
use ndarray::Array2;
use proptest::prelude::*;

use common::{fixture, matrix};

fn bits(a: &Array2<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

type Step = fn(&Array2<f64>, &Array2<f64>, &Array2<f64>, &StopRule, KernelPath) -> (Array2<f64>, usize);

fn h_step(v: &Array2<f64>, w: &Array2<f64>, h0: &Array2<f64>, rule: &StopRule, p: KernelPath) -> (Array2<f64>, usize) {
    update_h_with(v.view(), w.view(), h0.view(), rule, &Cancel::new(), p).unwrap()
}

fn w_step(v: &Array2<f64>, w0: &Array2<f64>, h: &Array2<f64>, rule: &StopRule, p: KernelPath) -> (Array2<f64>, usize) {
    update_w_with(v.view(), w0.view(), h.view(), rule, &Cancel::new(), p).unwrap()
}

/// Runs `step` with every available path on 1 and 3 threads; asserts all agree bit for bit
/// (factor and iteration count) and returns the result.
fn same_on_every_path(
    step: Step,
    v: &Array2<f64>,
    w: &Array2<f64>,
    h: &Array2<f64>,
    rule: &StopRule,
) -> (Array2<f64>, usize) {
    let mut runs = Vec::new();
    for path in KernelPath::available() {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            runs.push((path, threads, pool.install(|| step(v, w, h, rule, path))));
        }
    }
    let (p0, t0, (x0, i0)) = &runs[0];
    for (p, t, (x, i)) in &runs[1..] {
        assert_eq!(i, i0, "iterations: {p:?} on {t} threads vs {p0:?} on {t0}");
        assert!(bits(x) == bits(x0), "factor bits: {p:?} on {t} threads vs {p0:?} on {t0}");
    }
    runs.swap_remove(0).2
}

#[test]
fn the_scalar_path_is_always_available_and_detect_picks_the_widest() {
    let avail = KernelPath::available();
    assert_eq!(avail[0], KernelPath::Scalar);
    assert_eq!(KernelPath::detect(), *avail.last().unwrap());
    assert_eq!(simd_level(), KernelPath::detect().name());
    eprintln!("kernel paths on this CPU: {avail:?}");
}

#[test]
fn an_unavailable_path_is_refused_by_name() {
    let v = Array2::<f64>::ones((3, 4));
    let (w, h) = (Array2::<f64>::ones((3, 2)), Array2::<f64>::ones((2, 4)));
    for path in KernelPath::ALL.into_iter().filter(|p| !p.is_available()) {
        let err = update_h_with(v.view(), w.view(), h.view(), &StopRule::default(), &Cancel::new(), path);
        assert!(matches!(&err, Err(CoreError::InvalidArgument(m)) if m.contains(path.name())), "{err:?}");
    }
}

#[test]
fn h_step_fixture_is_the_same_on_every_path() {
    let d = "recover/nmfpredict_kernel_small/";
    let (v, w, h0, want) = (
        matrix(&format!("{d}V.tsv.gz")),
        matrix(&format!("{d}W_used.tsv")),
        matrix(&format!("{d}H0.tsv.gz")),
        matrix(&format!("{d}H_raw.tsv.gz")),
    );
    let (got, iters) = same_on_every_path(h_step, &v, &w, &h0, &StopRule::default());
    assert_eq!(iters, 970);
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn w_step_fixture_is_the_same_on_every_path() {
    let d = "nmf_generate_w/nfeature150_perse20/";
    let cols: Vec<String> = fixture(&format!("{d}V.tsv.gz"))[0][1..].to_vec();
    let (v, w0, want) = (
        matrix(&format!("{d}V.tsv.gz")),
        matrix(&format!("{d}W0.tsv.gz")),
        matrix(&format!("{d}W_fit_before_selection.tsv.gz")),
    );
    let fr = fixture("nmf_generate_w/fractions.tsv");
    let k = fr[0].len() - 1;
    let row = |name: &str| fr[1..].iter().find(|r| r[0] == name).unwrap().clone();
    let h =
        Array2::from_shape_fn((k, cols.len()), |(a, j)| row(&cols[j])[a + 1].parse::<f64>().unwrap() + f64::EPSILON);
    let (got, iters) = same_on_every_path(w_step, &v, &w0, &h, &StopRule::default());
    assert_eq!(iters, 420);
    assert_eq!(bits(&got), bits(&want));
}

/// A random problem: V with about `zero_pct`% zeros (some all-zero columns and rows when the
/// draw says so), W and H0 with values spread over many orders of magnitude (some tiny, so the
/// EPS floor and zero `(WH)` terms are exercised).
fn problem(seed: u64, m: usize, n: usize, k: usize, zero_pct: u64) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut unit = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
    let v = Array2::from_shape_fn((m, n), |_| {
        let u = unit();
        if u * 100.0 < zero_pct as f64 {
            0.0
        } else {
            (unit() * 6.0).exp2() * unit()
        }
    });
    let w = Array2::from_shape_fn((m, k), |_| {
        let u = unit();
        if u < 0.05 {
            0.0
        } else {
            (u * 40.0 - 30.0).exp2()
        }
    });
    let h = Array2::from_shape_fn((k, n), |_| (unit() * 20.0 - 10.0).exp2());
    (v, w, h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_problems_are_the_same_on_every_path(
        seed in any::<u64>(),
        m in 1usize..40,
        n in 1usize..40,
        k in 1usize..13,
        zero_pct in 0u64..100,
        max_iter in 1usize..60,
        every in 1usize..25,
        stationary in 0usize..4,
    ) {
        let (v, w, h) = problem(seed, m, n, k, zero_pct);
        let rule = StopRule { max_iter, every, stationary };
        same_on_every_path(h_step, &v, &w, &h, &rule);
        same_on_every_path(w_step, &v, &w, &h, &rule);
    }
}

#[test]
fn a_realistic_h_step_is_the_same_on_every_path() {
    // The shape of a recovery run (features x cells, k SEs), long enough for the connectivity
    // rule to decide.
    let (v, w, h) = problem(7, 150, 41, 11, 50);
    let (_, iters) = same_on_every_path(h_step, &v, &w, &h, &StopRule { max_iter: 450, every: 10, stationary: 40 });
    assert!(iters >= 410, "{iters}");
}
