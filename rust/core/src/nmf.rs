//! KL (Brunet) multiplicative updates with one factor fixed, under NMF's connectivity
//! stopping rule.
//!
//! NMF orientation: V (m features x n cells) ~ W (m x k) H (k x n), all non-negative.
//! - H-step (W fixed): `H_aj <- H_aj * (sum_i W_ia V_ij / (WH)_ij) / (sum_i W_ia)`
//! - W-step (H fixed): `W_ia <- W_ia * (sum_j H_aj V_ij / (WH)_ij) / (sum_j H_aj)`
//!
//! Terms with `V_ij = 0` add an exact zero, so the kernels skip them (about half of a posneg
//! matrix is zero), and a term with `(WH)_ij = 0` contributes 0. Every 10th iteration the
//! updated factor is floored at [`crate::EPS`] and the connectivity rule is checked. Cells
//! (H-step) or features (W-step) are independent within an iteration and are processed in
//! parallel, each in a fixed sequential order: results do not depend on the thread count.
//!
//! Both steps poll a [`Cancel`] flag before every `every` iterations and, within them, before
//! each block of [`LANES`] units and at most [`CANCEL_POLL_ITERS`] iterations: once it is set
//! they return [`CoreError::Cancelled`] within a few milliseconds, whatever the problem size.
//!
//! The lane kernel is compiled for the baseline target, AVX2 and AVX-512F and chosen at run time
//! ([`KernelPath::detect`]); every copy gives the same bits (no FMA, same order per unit).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::error::{CoreError, Result};
use crate::EPS;

mod lanes;
// Only the x86-64 AVX-512 path (and the tests) use the whole-vector kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod vector;

pub use lanes::KernelPath;
use lanes::{blocks, Steps, LANES};

/// NMF's connectivity stopping rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRule {
    /// Hard cap on iterations (NMF: 2000).
    pub max_iter: usize,
    /// Check (and floor) every this many iterations (NMF: 10).
    pub every: usize,
    /// Stop when the partition has stayed the same more than this many checks (NMF: 40).
    pub stationary: usize,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule { max_iter: 2000, every: 10, stationary: 40 }
    }
}

/// Tracks the partition of columns induced by each column's argmax of H.
#[derive(Clone, Debug, Default)]
pub struct Connectivity {
    reference: Option<Vec<u32>>,
    counter: usize,
}

impl Connectivity {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the labels of one check; returns true when the rule says stop.
    pub fn observe(&mut self, labels: Vec<u32>, stationary: usize) -> bool {
        match &self.reference {
            Some(r) if same_partition(r, &labels) => self.counter += 1,
            _ => {
                self.reference = Some(labels);
                self.counter = 0;
            }
        }
        self.counter > stationary
    }
}

/// True when two label vectors induce the same partition (equal connectivity matrices),
/// checked in O(n) through a label bijection.
pub fn same_partition(a: &[u32], b: &[u32]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let na = a.iter().copied().max().map_or(0, |m| m as usize + 1);
    let nb = b.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut fwd = vec![u32::MAX; na];
    let mut bwd = vec![u32::MAX; nb];
    for (&x, &y) in a.iter().zip(b) {
        let (f, g) = (&mut fwd[x as usize], &mut bwd[y as usize]);
        if *f == u32::MAX && *g == u32::MAX {
            *f = y;
            *g = x;
        } else if *f != y || *g != x {
            return false;
        }
    }
    true
}

/// Index of the first maximum of each length-`k` chunk (each cell's column of H).
pub fn argmax_labels(h_cellmajor: &[f64], k: usize) -> Vec<u32> {
    h_cellmajor
        .chunks(k)
        .map(|col| {
            let mut best = 0usize;
            for (a, &v) in col.iter().enumerate().skip(1) {
                if v > col[best] {
                    best = a;
                }
            }
            best as u32
        })
        .collect()
}

/// Compressed copy of the non-zeros of V by column (cells) or by row (features).
struct Nonzeros {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f64>,
}

impl Nonzeros {
    fn by_columns(v: &ArrayView2<f64>) -> Self {
        let (_, n) = v.dim();
        let mut ptr = Vec::with_capacity(n + 1);
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        ptr.push(0);
        for j in 0..n {
            for (i, &x) in v.column(j).iter().enumerate() {
                if x != 0.0 {
                    idx.push(i as u32);
                    val.push(x);
                }
            }
            ptr.push(idx.len());
        }
        Nonzeros { ptr, idx, val }
    }

    fn by_rows(v: &ArrayView2<f64>) -> Self {
        Self::by_columns(&v.t())
    }

    #[inline]
    fn get(&self, j: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.ptr[j], self.ptr[j + 1]);
        (&self.idx[a..b], &self.val[a..b])
    }
}

fn check_factor(x: &ArrayView2<f64>, name: &str) -> Result<()> {
    if let Some(v) = x.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite(format!("{name} holds {v}")));
    }
    if let Some(v) = x.iter().find(|&&v| v < 0.0) {
        return Err(CoreError::Negative(format!("{name} holds {v}; NMF needs non-negative input")));
    }
    Ok(())
}

fn check_path(path: KernelPath) -> Result<()> {
    if path.is_available() {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument(format!(
            "kernel path {path:?} ({}) is not supported by this CPU; available: {:?}",
            path.name(),
            KernelPath::available()
        )))
    }
}

fn check_shapes(v: &ArrayView2<f64>, w: &ArrayView2<f64>, h: &ArrayView2<f64>) -> Result<()> {
    let (m, n) = v.dim();
    let (mw, k) = w.dim();
    let (kh, nh) = h.dim();
    if mw != m || nh != n || kh != k {
        return Err(CoreError::Shape(format!(
            "V is {m} x {n}, W is {mw} x {k}, H is {kh} x {nh}: need W m x k and H k x n"
        )));
    }
    if k == 0 {
        return Err(CoreError::Shape("the rank k (columns of W, rows of H) is 0".into()));
    }
    if m == 0 || n == 0 {
        return Err(CoreError::Shape(format!("V is empty ({m} features x {n} cells)")));
    }
    check_factor(v, "V")?;
    check_factor(w, "W")?;
    check_factor(h, "H")
}

/// Most iterations a block runs between two polls of the cancel flag. Splitting a block's
/// iterations over several calls of its kernel changes no bit: the only state carried from one
/// iteration to the next is the factor itself.
pub const CANCEL_POLL_ITERS: usize = 10;

/// The SIMD level the kernels use on this CPU: "avx512", "avx2", "sse2" (baseline x86-64) or
/// "scalar".
pub fn simd_level() -> &'static str {
    KernelPath::detect().name()
}

/// Runs KL steps on `x` (n units x k, unit-major) with `f` fixed (t x k row-major), `nz` the
/// non-zeros of V per unit, under the connectivity rule on `fixed_labels`, or when `None` on
/// the argmax labels of `x` ([`argmax_labels`], read from the lane-wise copy); stops with
/// [`CoreError::Cancelled`] (leaving `x` unspecified) once `cancel` is set.
/// The kernel is `path`'s copy; every copy gives the same bits.
fn run(
    nz: &Nonzeros,
    s: &Steps,
    path: KernelPath,
    x: &mut [f64],
    rule: &StopRule,
    cancel: &Cancel,
    fixed_labels: Option<&[u32]>,
) -> Result<usize> {
    let k = s.k;
    let n_units = x.len() / k;
    let blocks = blocks(nz, n_units);
    // Lane-wise factor of every block; padding lanes hold 1 and are never read back.
    let mut xb: Vec<Vec<[f64; LANES]>> = blocks
        .iter()
        .map(|b| {
            (0..k)
                .map(|a| {
                    let mut v = [1.0; LANES];
                    for (l, &j) in b.units.iter().enumerate() {
                        v[l] = x[j * k + a];
                    }
                    v
                })
                .collect()
        })
        .collect();
    let mut conn = Connectivity::new();
    let every = rule.every.max(1);
    let mut it = 0usize;
    while it < rule.max_iter {
        cancel.check()?;
        let block = (every - it % every).min(rule.max_iter - it);
        let end = it + block;
        blocks.par_iter().zip(xb.par_iter_mut()).for_each_init(Vec::new, |scratch, (b, xv)| {
            let mut done = 0;
            while done < block {
                if cancel.is_cancelled() {
                    return; // the sweep is abandoned as a whole below
                }
                let steps = (block - done).min(CANCEL_POLL_ITERS);
                path.steps(s, b, xv, steps, scratch);
                done += steps;
            }
            if end.is_multiple_of(every) {
                for v in xv.iter_mut().flat_map(|r| r.iter_mut()) {
                    if *v < EPS {
                        *v = EPS;
                    }
                }
            }
        });
        cancel.check()?;
        it = end;
        if it.is_multiple_of(every) {
            let labels = fixed_labels.map_or_else(|| lane_labels(&blocks, &xb, n_units), <[u32]>::to_vec);
            if conn.observe(labels, rule.stationary) {
                break;
            }
        }
    }
    write_back(&blocks, &xb, k, x);
    Ok(it)
}

/// [`argmax_labels`] of the factor, read from its lane-wise copy: per unit, the first `a` with
/// the largest value.
fn lane_labels(blocks: &[lanes::Block], xb: &[Vec<[f64; LANES]>], n_units: usize) -> Vec<u32> {
    let mut labels = vec![0u32; n_units];
    for (b, xv) in blocks.iter().zip(xb) {
        for (l, &j) in b.units.iter().enumerate() {
            let mut best = 0usize;
            for (a, row) in xv.iter().enumerate().skip(1) {
                if row[l] > xv[best][l] {
                    best = a;
                }
            }
            labels[j] = best as u32;
        }
    }
    labels
}

/// Copies the lane-wise factor of every block back into `x` (unit-major).
fn write_back(blocks: &[lanes::Block], xb: &[Vec<[f64; LANES]>], k: usize, x: &mut [f64]) {
    for (b, xv) in blocks.iter().zip(xb) {
        for (l, &j) in b.units.iter().enumerate() {
            for a in 0..k {
                x[j * k + a] = xv[a][l];
            }
        }
    }
}

/// H-step with W fixed: returns (H, iterations). V is m x n, W m x k, H0 k x n. Stops with
/// [`CoreError::Cancelled`] once `cancel` is set.
pub fn update_h(
    v: ArrayView2<f64>,
    w: ArrayView2<f64>,
    h0: ArrayView2<f64>,
    rule: &StopRule,
    cancel: &Cancel,
) -> Result<(Array2<f64>, usize)> {
    update_h_with(v, w, h0, rule, cancel, KernelPath::detect())
}

/// [`update_h`] with the kernel copy forced (for tests and benches; every available path gives
/// the same bits). An error names a path this CPU cannot run.
pub fn update_h_with(
    v: ArrayView2<f64>,
    w: ArrayView2<f64>,
    h0: ArrayView2<f64>,
    rule: &StopRule,
    cancel: &Cancel,
    path: KernelPath,
) -> Result<(Array2<f64>, usize)> {
    check_path(path)?;
    check_shapes(&v, &w, &h0)?;
    let (m, n) = v.dim();
    let k = w.ncols();
    // ndarray iterates in logical (row-major) order whatever the memory layout.
    let f: Vec<f64> = w.iter().copied().collect();
    let mut denom = vec![0.0; k];
    for i in 0..m {
        for a in 0..k {
            denom[a] += f[i * k + a];
        }
    }
    let nz = Nonzeros::by_columns(&v);
    let mut x: Vec<f64> = (0..n).flat_map(|j| h0.column(j).to_vec()).collect();
    let steps = Steps { f: &f, k, denom: &denom };
    let iters = run(&nz, &steps, path, &mut x, rule, cancel, None)?;
    let h = Array2::from_shape_fn((k, n), |(a, j)| x[j * k + a]);
    Ok((h, iters))
}

/// W-step with H fixed: returns (W, iterations). V is m x n, W0 m x k, H k x n. The
/// connectivity rule looks at the fixed H, so it stops after `every * (stationary + 2)`
/// iterations (420 with NMF's defaults). Stops with [`CoreError::Cancelled`] once `cancel` is
/// set.
pub fn update_w(
    v: ArrayView2<f64>,
    w0: ArrayView2<f64>,
    h: ArrayView2<f64>,
    rule: &StopRule,
    cancel: &Cancel,
) -> Result<(Array2<f64>, usize)> {
    update_w_with(v, w0, h, rule, cancel, KernelPath::detect())
}

/// [`update_w`] with the kernel copy forced (for tests and benches, as [`update_h_with`]).
pub fn update_w_with(
    v: ArrayView2<f64>,
    w0: ArrayView2<f64>,
    h: ArrayView2<f64>,
    rule: &StopRule,
    cancel: &Cancel,
    path: KernelPath,
) -> Result<(Array2<f64>, usize)> {
    check_path(path)?;
    check_shapes(&v, &w0, &h)?;
    let (m, n) = v.dim();
    let k = w0.ncols();
    // The fixed factor, cell-major (n x k) so each cell's H column is contiguous.
    let f: Vec<f64> = (0..n).flat_map(|j| h.column(j).to_vec()).collect();
    let mut denom = vec![0.0; k];
    for j in 0..n {
        for a in 0..k {
            denom[a] += f[j * k + a];
        }
    }
    let labels = argmax_labels(&f, k);
    let nz = Nonzeros::by_rows(&v);
    let mut x: Vec<f64> = w0.iter().copied().collect();
    let steps = Steps { f: &f, k, denom: &denom };
    let iters = run(&nz, &steps, path, &mut x, rule, cancel, Some(&labels))?;
    let w = Array2::from_shape_fn((m, k), |(i, a)| x[i * k + a]);
    Ok((w, iters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn partitions_compare_up_to_relabelling() {
        assert!(same_partition(&[0, 0, 1, 2], &[2, 2, 0, 1]));
        assert!(!same_partition(&[0, 0, 1, 2], &[0, 1, 1, 2]));
        assert!(!same_partition(&[0, 1], &[0, 0]));
        assert!(same_partition(&[], &[]));
    }

    #[test]
    fn fixed_h_stops_after_420() {
        let v = array![[1.0, 0.0, 2.0], [0.5, 3.0, 0.0]];
        let h = array![[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]] + EPS;
        let w0 = array![[0.3, 0.6], [0.2, 0.9]];
        let (w, it) = update_w(v.view(), w0.view(), h.view(), &StopRule::default(), &Cancel::new()).unwrap();
        assert_eq!(it, 420);
        // Converges to per-class means for a 0/1 H.
        assert!((w[[0, 0]] - 1.5).abs() < 1e-9);
        assert!((w[[1, 1]] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn lane_labels_are_the_argmax_labels() {
        // Ties (values from a small set) must go to the first maximum, as in `argmax_labels`.
        let (n, k) = (21, 4);
        let v = Array2::from_shape_fn((5, n), |(i, j)| ((i * 7 + j * 3) % 4) as f64);
        let nz = Nonzeros::by_columns(&v.view());
        let x: Vec<f64> = (0..n * k).map(|i| ((i * 13) % 5) as f64).collect();
        let bl = blocks(&nz, n);
        let xb: Vec<Vec<[f64; LANES]>> = bl
            .iter()
            .map(|b| {
                (0..k)
                    .map(|a| {
                        let mut r = [9.0; LANES];
                        b.units.iter().enumerate().for_each(|(l, &j)| r[l] = x[j * k + a]);
                        r
                    })
                    .collect()
            })
            .collect();
        assert_eq!(lane_labels(&bl, &xb, n), argmax_labels(&x, k));
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let v = Array2::<f64>::ones((3, 4));
        let w = Array2::<f64>::ones((2, 2));
        let h = Array2::<f64>::ones((2, 4));
        let cancel = Cancel::new();
        assert!(matches!(
            update_h(v.view(), w.view(), h.view(), &StopRule::default(), &cancel),
            Err(CoreError::Shape(_))
        ));
    }

    fn problem(m: usize, n: usize, k: usize) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        let v =
            Array2::from_shape_fn((m, n), |(i, j)| ((i * 31 + j * 17) % 13) as f64 * ((i + j) % 3 != 0) as u8 as f64);
        let w = Array2::from_shape_fn((m, k), |(i, a)| 0.1 + ((i * 7 + a * 5) % 11) as f64);
        let h = Array2::from_shape_fn((k, n), |(a, j)| 0.1 + ((a * 3 + j * 13) % 7) as f64);
        (v, w, h)
    }

    #[test]
    fn a_set_cancel_flag_stops_both_steps() {
        let (v, w, h) = problem(30, 50, 4);
        let cancel = Cancel::new();
        cancel.cancel();
        let rule = StopRule { max_iter: 1_000_000, every: 10, stationary: 1_000_000 };
        assert_eq!(update_h(v.view(), w.view(), h.view(), &rule, &cancel), Err(CoreError::Cancelled));
        assert_eq!(update_w(v.view(), w.view(), h.view(), &rule, &cancel), Err(CoreError::Cancelled));
    }

    #[test]
    fn cancelling_from_another_thread_stops_an_endless_run() {
        let (v, w, h) = problem(40, 400, 5);
        // The connectivity check every 10 iterations, and a check period the run never reaches
        // (the flag is then only seen inside the sweep).
        for every in [10, usize::MAX / 2] {
            let cancel = Cancel::new();
            let rule = StopRule { max_iter: usize::MAX, every, stationary: usize::MAX };
            let started = std::time::Instant::now();
            let out = std::thread::scope(|s| {
                let job = s.spawn(|| update_h(v.view(), w.view(), h.view(), &rule, &cancel));
                std::thread::sleep(std::time::Duration::from_millis(100));
                cancel.cancel();
                job.join().unwrap()
            });
            assert_eq!(out, Err(CoreError::Cancelled));
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "every {every}: {:?}", started.elapsed());
        }
    }

    #[test]
    fn polling_changes_no_bit() {
        // `every` > CANCEL_POLL_ITERS splits each block's iterations over several kernel calls;
        // the result must equal the one of a single call per sweep (every = CANCEL_POLL_ITERS
        // with the same floors: none, since max_iter < every).
        let (v, w, h) = problem(30, 50, 4);
        let cancel = Cancel::new();
        let n = 3 * CANCEL_POLL_ITERS + 7;
        let split = StopRule { max_iter: n, every: 1000, stationary: 40 };
        let (a, ia) = update_h(v.view(), w.view(), h.view(), &split, &cancel).unwrap();
        // Reference: the plain multiplicative update, unit by unit.
        let (m, k) = w.dim();
        let mut r = h.clone();
        for _ in 0..n {
            for j in 0..v.ncols() {
                let mut acc = vec![0.0; k];
                for i in 0..m {
                    if v[[i, j]] == 0.0 {
                        continue;
                    }
                    let mut wh = 0.0;
                    for c in 0..k {
                        wh += w[[i, c]] * r[[c, j]];
                    }
                    let q = if wh != 0.0 { v[[i, j]] / wh } else { 0.0 };
                    for c in 0..k {
                        acc[c] += w[[i, c]] * q;
                    }
                }
                for c in 0..k {
                    let d: f64 = (0..m).map(|i| w[[i, c]]).fold(0.0, |s, x| s + x);
                    r[[c, j]] = r[[c, j]] * acc[c] / d;
                }
            }
        }
        assert_eq!(ia, n);
        assert_eq!(a, r);
    }
}
