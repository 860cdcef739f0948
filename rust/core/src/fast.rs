//! Fast recovery: every cell's scores from its own convex KL problem, solved to convergence.
//!
//! For one cell with non-negative feature values `v` (posneg of its scaled expression) and the
//! model W (features x k), the H-step of NMF minimises, over `h >= 0`,
//!
//! `f(h) = sum_i (W h)_i - v_i ln (W h)_i` = `d . h - sum_{i: v_i > 0} v_i ln (W h)_i`,
//!
//! with `d_a = sum_i W_ia` over every feature of V. The multiplicative updates of R's
//! `NMFpredict` approach its minimiser over thousands of iterations (and the stopping rule
//! couples all cells of a run); here each cell is solved on its own by sequential quadratic
//! programming: at the current `h`, the exact non-negative minimiser of f's second-order
//! model (a k-variable QP, solved by a primal active-set method with Cholesky factorisations
//! of the free block) gives the direction, then an Armijo backtracking search on f. Once the
//! support is found, full steps are taken and convergence is quadratic: 3-6 iterations per
//! cell on the fixtures. `k` (the number of SEs) is small, ~12.
//!
//! Cells are independent: they are solved in lanes of [`LANES`] cells in lock-step (the lane
//! kernel in [`lanes`], compiled for AVX2 as well and chosen at run time, with a polynomial
//! log and a block-pivoting QP in plain arithmetic), so every cell gets the same bits on any
//! path, for any thread count and whatever the other cells of its block; the plain per-cell
//! solver in [`reference`] is the slower reference it is tested against. A [`Cancel`] flag is polled before
//! each cell and every Newton iteration.
//!
//! Also here: R's sum-to-one (`t(t(H) / colSums(H))`, colSums accumulating in x87 long
//! double) for cells x k score matrices.

// Index loops are the clearer form for these small dense k x k kernels; `!(x > 0.0)` is
// meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

mod lanes;
mod ln;
mod pivot;
mod qp;
mod reference;
mod search;
mod simd;

use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

pub use lanes::{SimdPath, LANES};

use crate::cancel::Cancel;
use crate::error::{CoreError, Result};
use crate::longdouble::ld_sum;
use crate::preprocess::scaled;
use crate::sparse::Compressed;

/// Stopping rule of the per-cell solver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FastOptions {
    /// Newton iterations per cell at most.
    pub max_iter: usize,
    /// Stop when no score moved by more than `tol` times the largest score.
    pub tol: f64,
}

impl Default for FastOptions {
    fn default() -> Self {
        FastOptions { max_iter: 100, tol: 1e-10 }
    }
}

/// Seurat ScaleData's per-gene statistics (None: use the values as they are).
#[derive(Clone, Copy, Debug)]
pub struct Scaling<'a> {
    pub mean: &'a [f64],
    pub sd: &'a [f64],
    pub scale_max: f64,
}

/// The model seen per gene: W's row of the gene's positive and negative feature (`g x k`,
/// row-major); a row holding NaN marks a feature that is not used (absent from W or
/// filtered). Without posneg, `wneg` is ignored and the gene itself is the feature (`wpos`).
#[derive(Clone, Copy, Debug)]
pub struct GeneModel<'a> {
    pub wpos: ArrayView2<'a, f64>,
    pub wneg: ArrayView2<'a, f64>,
    pub posneg: bool,
}

struct Prepared {
    k: usize,
    g: usize,
    posneg: bool,
    /// Per gene: W rows (k each) or None (NaN in W: the feature is not used).
    pos: Vec<Option<Vec<f64>>>,
    neg: Vec<Option<Vec<f64>>>,
    /// Per gene: the sums of the W rows in `pos` and `neg` (0 where unused) and their
    /// logarithms ([`ln::ln`]), which give `W h` and f at the lane kernel's start value.
    pos_sum: Vec<(f64, f64)>,
    neg_sum: Vec<(f64, f64)>,
    /// Column sums of the used rows of W (the linear term d of f).
    denom: Vec<f64>,
    /// The sum of `denom`.
    denom_sum: f64,
}

fn prepare(model: &GeneModel) -> Result<Prepared> {
    let (g, k) = model.wpos.dim();
    if k == 0 {
        return Err(CoreError::Shape("the model has no SE (k = 0)".into()));
    }
    if model.posneg && model.wneg.dim() != (g, k) {
        return Err(CoreError::Shape(format!(
            "wpos is {g} x {k} but wneg is {} x {}",
            model.wneg.nrows(),
            model.wneg.ncols()
        )));
    }
    let rows = |w: &ArrayView2<f64>| -> Result<Vec<Option<Vec<f64>>>> {
        w.outer_iter()
            .map(|r| {
                if r.iter().any(|v| v.is_nan()) {
                    Ok(None)
                } else if let Some(v) = r.iter().find(|v| !v.is_finite() || **v < 0.0) {
                    Err(CoreError::InvalidArgument(format!("model weights must be finite and >= 0, got {v}")))
                } else {
                    Ok(Some(r.to_vec()))
                }
            })
            .collect()
    };
    let pos = rows(&model.wpos)?;
    let neg = if model.posneg { rows(&model.wneg)? } else { vec![None; g] };
    let mut denom = vec![0.0; k];
    for r in pos.iter().chain(neg.iter()).flatten() {
        for a in 0..k {
            denom[a] += r[a];
        }
    }
    let denom_sum = denom.iter().sum();
    let sums = |rows: &[Option<Vec<f64>>]| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| {
                let s = r.as_ref().map_or(0.0, |r| r.iter().sum());
                (s, ln::ln(s))
            })
            .collect()
    };
    let (pos_sum, neg_sum) = (sums(&pos), sums(&neg));
    Ok(Prepared { k, g, posneg: model.posneg, pos, neg, pos_sum, neg_sum, denom, denom_sum })
}

/// One block's input: the CSR rows, the scaling and the value of a gene where a cell has no
/// entry; first error met while gathering (a negative value without posneg).
struct Input<'a> {
    x: &'a Compressed<'a>,
    scaling: Option<Scaling<'a>>,
    z0: Vec<f64>,
    failed: Mutex<Option<CoreError>>,
}

/// One cell's features: its scaled values `z` (all genes), and the used features' W rows
/// (`a`, p x k), values (`v`, all > 0) and row sums with their logarithms (`s`) in gene order.
struct Features {
    z: Vec<f64>,
    a: Vec<f64>,
    v: Vec<f64>,
    s: Vec<(f64, f64)>,
}

impl Features {
    fn new(g: usize, k: usize) -> Self {
        Features { z: vec![0.0; g], a: Vec::with_capacity(g * k), v: Vec::with_capacity(g), s: Vec::with_capacity(g) }
    }

    /// Scale the cell's values (if a scaling is given) and keep its posneg features whose W
    /// row is used and not all zero.
    fn gather(&mut self, prep: &Prepared, input: &Input, cell: usize) {
        self.z.copy_from_slice(&input.z0);
        let (idx, val) = input.x.slice(cell);
        for (&j, &val) in idx.iter().zip(val) {
            let j = j as usize;
            self.z[j] = match &input.scaling {
                Some(s) => scaled(val, s.mean[j], s.sd[j], s.scale_max),
                None => val,
            };
        }
        self.a.clear();
        self.v.clear();
        self.s.clear();
        for j in 0..prep.g {
            let zj = self.z[j];
            let (row, val, sum) = if zj > 0.0 {
                (&prep.pos[j], zj, prep.pos_sum[j])
            } else if zj < 0.0 {
                if !prep.posneg {
                    if prep.pos[j].is_some() {
                        let mut e = input.failed.lock().unwrap_or_else(|p| p.into_inner());
                        if e.is_none() {
                            *e = Some(CoreError::Negative(format!(
                                "feature value {zj} of gene {j}: a model without posneg features needs non-negative data"
                            )));
                        }
                    }
                    continue;
                }
                (&prep.neg[j], -zj, prep.neg_sum[j])
            } else {
                continue;
            };
            if let Some(r) = row {
                if r.iter().any(|&c| c > 0.0) {
                    self.a.extend_from_slice(r);
                    self.v.push(val);
                    self.s.push(sum);
                }
            }
        }
    }
}

/// Check the block against the model and build what every cell's gathering needs.
fn input<'a>(x: &'a Compressed<'a>, prep: &Prepared, scaling: Option<Scaling<'a>>) -> Result<Input<'a>> {
    let g = prep.g;
    if x.n_minor != g {
        return Err(CoreError::Shape(format!("the data have {} genes but the model {g}", x.n_minor)));
    }
    if let Some(s) = &scaling {
        if s.mean.len() != g || s.sd.len() != g {
            return Err(CoreError::Shape(format!(
                "mean/sd have {}/{} entries for {g} genes",
                s.mean.len(),
                s.sd.len()
            )));
        }
    }
    if let Some(v) = x.data.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite(format!("the expression block holds {v}")));
    }
    // The value of a gene where the cell has no entry.
    let z0: Vec<f64> = match &scaling {
        Some(s) => (0..g).map(|j| scaled(0.0, s.mean[j], s.sd[j], s.scale_max)).collect(),
        None => vec![0.0; g],
    };
    Ok(Input { x, scaling, z0, failed: Mutex::new(None) })
}

/// Cells per parallel task of the lane kernel (its lanes are refilled within a task).
const CELLS_PER_TASK: usize = 512;

/// Fast recovery of the cells of a CSR block (cells x model genes, raw values): scales each
/// value with `scaling` (if given), builds the cell's posneg features, and solves its KL
/// problem. Returns H (cells x k) and the Newton iterations per cell, or
/// [`CoreError::Cancelled`] once `cancel` is set (polled before each cell). Runs the lane
/// kernel on the widest SIMD path of this CPU ([`SimdPath::best`]).
pub fn solve_cells(
    x: &Compressed,
    model: &GeneModel,
    scaling: Option<Scaling>,
    opts: &FastOptions,
    cancel: &Cancel,
) -> Result<(Array2<f64>, Vec<u32>)> {
    solve_cells_on(SimdPath::best(), x, model, scaling, opts, cancel)
}

/// [`solve_cells`] on a given SIMD path (every path gives the same bits); an error when the
/// CPU lacks it.
pub fn solve_cells_on(
    path: SimdPath,
    x: &Compressed,
    model: &GeneModel,
    scaling: Option<Scaling>,
    opts: &FastOptions,
    cancel: &Cancel,
) -> Result<(Array2<f64>, Vec<u32>)> {
    if !path.is_available() {
        return Err(CoreError::InvalidArgument(format!("this CPU has no {path:?} instructions")));
    }
    let prep = prepare(model)?;
    let input = input(x, &prep, scaling)?;
    let (n, k) = (x.n_major, prep.k);
    let mut h = vec![0.0; n * k];
    let mut iters = vec![0u32; n];
    h.par_chunks_mut(CELLS_PER_TASK * k).zip(iters.par_chunks_mut(CELLS_PER_TASK)).enumerate().for_each_init(
        || lanes::LaneWork::new(prep.g, k),
        |w, (task, (hc, itc))| {
            let ctx = lanes::Ctx { prep: &prep, input: &input, opts, cancel };
            lanes::solve_block(path, w, &ctx, task * CELLS_PER_TASK, hc, itc);
        },
    );
    finish(n, k, h, iters, input, cancel)
}

/// The plain per-cell solver over the same input, one cell after another (no lanes): the
/// reference whose objectives the lane kernel's tests match to a tight tolerance.
pub fn solve_cells_reference(
    x: &Compressed,
    model: &GeneModel,
    scaling: Option<Scaling>,
    opts: &FastOptions,
    cancel: &Cancel,
) -> Result<(Array2<f64>, Vec<u32>)> {
    let prep = prepare(model)?;
    let input = input(x, &prep, scaling)?;
    let (n, k) = (x.n_major, prep.k);
    let mut h = vec![0.0; n * k];
    let mut iters = vec![0u32; n];
    h.par_chunks_mut(k).zip(iters.par_iter_mut()).enumerate().with_min_len(64).for_each_init(
        || (Features::new(prep.g, k), reference::Work::new(prep.g, k)),
        |(feat, w), (cell, (hc, itc))| {
            if cancel.is_cancelled() {
                return;
            }
            feat.gather(&prep, &input, cell);
            *itc = reference::solve_one(w, &feat.a, &feat.v, &prep.denom, k, hc, opts, cancel) as u32;
        },
    );
    finish(n, k, h, iters, input, cancel)
}

/// The result of a block, or the cancellation or the first gathering error.
fn finish(
    n: usize,
    k: usize,
    h: Vec<f64>,
    iters: Vec<u32>,
    input: Input,
    cancel: &Cancel,
) -> Result<(Array2<f64>, Vec<u32>)> {
    cancel.check()?;
    if let Some(e) = input.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok((Array2::from_shape_vec((n, k), h).expect("n x k"), iters))
}

/// R's sum-to-one of each cell's scores (rows of `h`, cells x k): divide by the row sum
/// accumulated in order in x87 long double and rounded to double, as R's `colSums` on H.
pub fn sum_to_one_rows(h: ArrayView2<f64>) -> Array2<f64> {
    let (n, k) = h.dim();
    let mut out = h.to_owned();
    if k == 0 {
        return out;
    }
    out.as_slice_mut().expect("owned arrays are contiguous").par_chunks_mut(k).with_min_len(256).for_each(|row| {
        let s = ld_sum(row.iter().copied()).to_f64();
        row.iter_mut().for_each(|v| *v /= s);
    });
    debug_assert_eq!(out.nrows(), n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn fixed_point_residual(a: &Array2<f64>, v: &[f64], d: &[f64], h: &[f64]) -> f64 {
        // KKT: grad_a >= 0, h_a * grad_a = 0.
        let k = d.len();
        let mut g = d.to_vec();
        for (i, row) in a.outer_iter().enumerate() {
            let y: f64 = (0..k).map(|c| row[c] * h[c]).sum();
            for c in 0..k {
                g[c] -= row[c] * v[i] / y;
            }
        }
        (0..k).map(|c| if h[c] > 1e-12 { g[c].abs() } else { (-g[c]).max(0.0) }).fold(0.0, f64::max)
    }

    #[test]
    fn newton_reaches_the_kkt_point() {
        let wpos = array![[1.0, 0.2, 0.1], [0.3, 1.0, 0.2], [0.1, 0.1, 1.0], [0.5, 0.5, 0.5]];
        let wneg = array![[0.2, 0.9, 0.1], [0.8, 0.1, 0.3], [0.4, 0.4, 0.2], [0.1, 0.2, 0.9]];
        let model = GeneModel { wpos: wpos.view(), wneg: wneg.view(), posneg: true };
        // Two cells: dense raw values, no scaling (signed values exercise posneg).
        let dense = array![[2.0, -1.0, 0.5, 0.0], [0.0, 3.0, -2.0, 1.0]];
        let (mut indptr, mut indices, mut data) = (vec![0i64], vec![], vec![]);
        for r in dense.outer_iter() {
            for (j, &v) in r.iter().enumerate() {
                if v != 0.0 {
                    indices.push(j as i64);
                    data.push(v);
                }
            }
            indptr.push(indices.len() as i64);
        }
        let x = Compressed::new(&indptr, &indices, &data, 2, 4).unwrap();
        let (h, it) = solve_cells(&x, &model, None, &FastOptions::default(), &Cancel::new()).unwrap();
        let d: Vec<f64> = (0..3).map(|a| wpos.column(a).sum() + wneg.column(a).sum()).collect();
        for (c, r) in dense.outer_iter().enumerate() {
            let mut rows = vec![];
            let mut v = vec![];
            for (j, &z) in r.iter().enumerate() {
                if z > 0.0 {
                    rows.push(wpos.row(j).to_vec());
                    v.push(z);
                } else if z < 0.0 {
                    rows.push(wneg.row(j).to_vec());
                    v.push(-z);
                }
            }
            let a = Array2::from_shape_vec((rows.len(), 3), rows.concat()).unwrap();
            let res = fixed_point_residual(&a, &v, &d, h.row(c).as_slice().unwrap());
            assert!(res < 1e-8, "cell {c}: KKT residual {res}, iterations {}", it[c]);
            assert!(it[c] < 50);
        }
    }

    #[test]
    fn a_set_cancel_flag_stops_the_solver() {
        let wpos = array![[1.0, 0.2], [0.3, 1.0]];
        let wneg = array![[0.2, 0.9], [0.8, 0.1]];
        let model = GeneModel { wpos: wpos.view(), wneg: wneg.view(), posneg: true };
        let x = Compressed::new(&[0, 2, 3], &[0, 1, 1], &[1.5, -0.5, 2.0], 2, 2).unwrap();
        let cancel = Cancel::new();
        assert!(solve_cells(&x, &model, None, &FastOptions::default(), &cancel).is_ok());
        cancel.cancel();
        assert_eq!(solve_cells(&x, &model, None, &FastOptions::default(), &cancel), Err(CoreError::Cancelled));
    }

    #[test]
    fn sum_to_one_uses_long_double() {
        let h = array![[0.1, 0.2, 0.3], [1.0, 1e-17, 1e-17]];
        let s = sum_to_one_rows(h.view());
        assert_eq!(s[[1, 0]], 1.0); // 1 + 2e-17 rounds to 1 in long double too
        assert!((s.row(0).sum() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let wpos = array![[1.0, 0.2], [0.3, 1.0], [0.1, 0.7]];
        let wneg = array![[0.2, 0.9], [0.8, 0.1], [0.4, 0.4]];
        let model = GeneModel { wpos: wpos.view(), wneg: wneg.view(), posneg: true };
        let n = 500;
        let (mut indptr, mut indices, mut data) = (vec![0i64], vec![], vec![]);
        for c in 0..n {
            for j in 0..3 {
                indices.push(j as i64);
                data.push(((c * 7 + j * 13) % 11) as f64 - 5.0 + 0.5);
            }
            indptr.push(indices.len() as i64);
        }
        let x = Compressed::new(&indptr, &indices, &data, n, 3).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let a = one.install(|| solve_cells(&x, &model, None, &FastOptions::default(), &Cancel::new()).unwrap());
        let b = two.install(|| solve_cells(&x, &model, None, &FastOptions::default(), &Cancel::new()).unwrap());
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
    }
}
