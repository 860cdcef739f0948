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
//! Cells are independent: they are processed in parallel and each gives the same bits for any
//! thread count. A [`Cancel`] flag is polled before each cell and every 10 Newton iterations.
//!
//! Also here: R's sum-to-one (`t(t(H) / colSums(H))`, colSums accumulating in x87 long
//! double) for cells x k score matrices.

// Index loops are the clearer form for these small dense k x k kernels; `!(x > 0.0)` is
// meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::error::{CoreError, Result};
use crate::longdouble::ld_sum;
use crate::preprocess::scaled;
use crate::sparse::Compressed;
use crate::EPS;

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
    /// Per gene: W rows (k each) or None.
    pos: Vec<Option<Vec<f64>>>,
    neg: Vec<Option<Vec<f64>>>,
    denom: Vec<f64>,
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
    Ok(Prepared { k, g, posneg: model.posneg, pos, neg, denom })
}

/// Per-thread scratch space.
struct Work {
    z: Vec<f64>,
    a: Vec<f64>,
    v: Vec<f64>,
    y: Vec<f64>,
    yn: Vec<f64>,
    grad: Vec<f64>,
    hess: Vec<f64>,
    step: Vec<f64>,
    hn: Vec<f64>,
    qp: QpWork,
}

impl Work {
    fn new(g: usize, k: usize) -> Self {
        Work {
            z: vec![0.0; g],
            a: Vec::with_capacity(g * k),
            v: Vec::with_capacity(g),
            y: vec![0.0; g],
            yn: vec![0.0; g],
            grad: vec![0.0; k],
            hess: vec![0.0; k * k],
            step: vec![0.0; k],
            hn: vec![0.0; k],
            qp: QpWork {
                free: vec![false; k],
                idx: Vec::with_capacity(k),
                rhs: vec![0.0; k],
                sol: vec![0.0; k],
                chol: vec![0.0; k * k],
            },
        }
    }
}

/// `y = A h` for the p rows of A (row-major, k columns).
#[inline]
fn mat_vec(a: &[f64], h: &[f64], k: usize, y: &mut [f64]) {
    for (yi, row) in y.iter_mut().zip(a.chunks_exact(k)) {
        let mut s = 0.0;
        for c in 0..k {
            s += row[c] * h[c];
        }
        *yi = s;
    }
}

/// f(h) given y = A h; +inf when some (W h)_i with v_i > 0 is not positive.
#[inline]
fn objective(d: &[f64], h: &[f64], v: &[f64], y: &[f64]) -> f64 {
    let mut f = 0.0;
    for (da, ha) in d.iter().zip(h) {
        f += da * ha;
    }
    let mut l = 0.0;
    for (vi, yi) in v.iter().zip(y) {
        if *yi <= 0.0 {
            return f64::INFINITY;
        }
        l += vi * yi.ln();
    }
    f - l
}

/// Cholesky of the sub-matrix of `hess` (k x k) on the indices `idx`, with `ridge` added to
/// its diagonal; solves `H_PP s = rhs_P` into `out` (indexed like `idx`). False when not
/// positive definite.
fn chol_solve(
    hess: &[f64],
    chol: &mut [f64],
    idx: &[usize],
    k: usize,
    ridge: f64,
    rhs: &[f64],
    out: &mut [f64],
) -> bool {
    let m = idx.len();
    for i in 0..m {
        for j in 0..=i {
            let mut s = hess[idx[i] * k + idx[j]];
            if i == j {
                s += ridge;
            }
            for l in 0..j {
                s -= chol[i * k + l] * chol[j * k + l];
            }
            if i == j {
                if !(s > 0.0) {
                    return false;
                }
                chol[i * k + i] = s.sqrt();
            } else {
                chol[i * k + j] = s / chol[j * k + j];
            }
        }
    }
    for i in 0..m {
        let mut s = rhs[i];
        for l in 0..i {
            s -= chol[i * k + l] * out[l];
        }
        out[i] = s / chol[i * k + i];
    }
    for i in (0..m).rev() {
        let mut s = out[i];
        for l in i + 1..m {
            s -= chol[l * k + i] * out[l];
        }
        out[i] = s / chol[i * k + i];
    }
    true
}

/// Solve the non-negative quadratic program `min_u 1/2 u'Hu + q'u, u >= 0` by a primal
/// active-set method (Lawson-Hanson style), starting from the feasible `u` (its support is
/// the initial free set). `u` is updated in place.
fn nnqp(hess: &[f64], q: &[f64], k: usize, u: &mut [f64], w: &mut QpWork) {
    let diag_max = (0..k).map(|a| hess[a * k + a]).fold(0.0, f64::max);
    let ridge0 = if diag_max > 0.0 { diag_max * 1e-13 } else { 1e-300 };
    for a in 0..k {
        w.free[a] = u[a] > 0.0;
        if !w.free[a] {
            u[a] = 0.0;
        }
    }
    let mut pivots = 0;
    let max_pivots = 4 * k + 20;
    loop {
        // Inner loop: unconstrained minimum on the free set, keeping u feasible.
        loop {
            pivots += 1;
            w.idx.clear();
            w.idx.extend((0..k).filter(|&a| w.free[a]));
            let m = w.idx.len();
            for (t, &a) in w.idx.iter().enumerate() {
                w.rhs[t] = -q[a];
            }
            let mut ridge = 0.0;
            while !chol_solve(hess, &mut w.chol, &w.idx, k, ridge, &w.rhs[..m], &mut w.sol[..m]) {
                ridge = if ridge == 0.0 { ridge0 } else { ridge * 100.0 };
                if ridge > diag_max.max(1.0) * 1e6 {
                    return; // hopeless: keep u
                }
            }
            if w.sol[..m].iter().all(|&x| x > 0.0) || pivots > max_pivots {
                for a in 0..k {
                    u[a] = 0.0;
                }
                for (t, &a) in w.idx.iter().enumerate() {
                    u[a] = w.sol[t].max(0.0);
                }
                break;
            }
            // Step from u towards the solution until the first free variable hits 0.
            let mut alpha = 1.0;
            let mut hit = usize::MAX;
            for (t, &a) in w.idx.iter().enumerate() {
                if w.sol[t] <= 0.0 {
                    let r = u[a] / (u[a] - w.sol[t]);
                    if r < alpha || hit == usize::MAX {
                        alpha = r.min(alpha);
                        hit = a;
                    }
                }
            }
            for (t, &a) in w.idx.iter().enumerate() {
                u[a] += alpha * (w.sol[t] - u[a]);
                if u[a] <= 0.0 || a == hit {
                    u[a] = 0.0;
                    w.free[a] = false;
                }
            }
        }
        if pivots > max_pivots {
            return;
        }
        // Optimality on the bound: the most negative gradient component enters.
        let qmax = q.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut best = usize::MAX;
        let mut best_val = 1e-13 * qmax.max(1e-300);
        for a in 0..k {
            if w.free[a] {
                continue;
            }
            let mut gr = q[a];
            for b in 0..k {
                gr += hess[a * k + b] * u[b];
            }
            if -gr > best_val {
                best_val = -gr;
                best = a;
            }
        }
        if best == usize::MAX {
            return;
        }
        w.free[best] = true;
        // Entering at 0: give the inner solve a feasible start on the new free set.
    }
}

struct QpWork {
    free: Vec<bool>,
    idx: Vec<usize>,
    rhs: Vec<f64>,
    sol: Vec<f64>,
    chol: Vec<f64>,
}

/// Minimise f over h >= 0 for one cell whose used features are the rows of `w.a` with values
/// `w.v` (all > 0), by sequential quadratic programming: at each iterate the exact
/// non-negative minimiser of f's second-order model (a k-variable QP, solved by an active
/// set method) gives the direction, followed by an Armijo backtracking search (full steps
/// near the solution: quadratic convergence once the support is found, typically 3-6
/// iterations). Returns the iterations run; gives up early (the caller then discards `h`)
/// once `cancel` is set.
fn solve_one(w: &mut Work, d: &[f64], k: usize, h: &mut [f64], opts: &FastOptions, cancel: &Cancel) -> usize {
    let p = w.v.len();
    if p == 0 {
        // No signal: the minimiser is h = 0; the multiplicative updates end at the floor.
        h.iter_mut().for_each(|x| *x = EPS);
        return 0;
    }
    let sv: f64 = w.v.iter().sum();
    let sd: f64 = d.iter().sum();
    let c = if sd > 0.0 { sv / sd } else { 1.0 };
    h.iter_mut().for_each(|x| *x = c);
    let (y, yn) = (&mut w.y[..p], &mut w.yn[..p]);
    mat_vec(&w.a, h, k, y);
    let mut f = objective(d, h, &w.v, y);
    let sigma = 1e-4;
    let mut it = 0;
    while it < opts.max_iter {
        if it % 10 == 9 && cancel.is_cancelled() {
            break;
        }
        it += 1;
        // Gradient and Hessian of f at h.
        w.grad.copy_from_slice(d);
        w.hess.iter_mut().for_each(|x| *x = 0.0);
        for ((row, &vi), &yi) in w.a.chunks_exact(k).zip(&w.v).zip(y.iter()) {
            let r = vi / yi;
            let q = r / yi;
            for a in 0..k {
                w.grad[a] -= row[a] * r;
                let qa = q * row[a];
                for b in 0..=a {
                    w.hess[a * k + b] += qa * row[b];
                }
            }
        }
        for a in 0..k {
            for b in 0..a {
                w.hess[b * k + a] = w.hess[a * k + b];
            }
        }
        // QP: min_u 1/2 u'Hu + (g - Hh)'u, u >= 0; direction u - h.
        for a in 0..k {
            let mut hh = 0.0;
            for b in 0..k {
                hh += w.hess[a * k + b] * h[b];
            }
            w.step[a] = w.grad[a] - hh; // q
            w.hn[a] = h[a];
        }
        nnqp(&w.hess, &w.step, k, &mut w.hn, &mut w.qp);
        let mut slope = 0.0;
        for a in 0..k {
            w.step[a] = w.hn[a] - h[a];
            slope += w.grad[a] * w.step[a];
        }
        if !(slope < 0.0) {
            break; // no descent direction left: converged
        }
        let mut t = 1.0;
        let mut accepted = false;
        let mut fnew = f;
        for _ in 0..60 {
            for a in 0..k {
                w.hn[a] = (h[a] + t * w.step[a]).max(0.0);
            }
            mat_vec(&w.a, &w.hn, k, yn);
            fnew = objective(d, &w.hn, &w.v, yn);
            if fnew.is_finite() && fnew <= f + sigma * t * slope {
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            break; // no decrease at machine precision: converged
        }
        let hmax = w.hn.iter().copied().fold(0.0, f64::max);
        let mut change = 0.0f64;
        for a in 0..k {
            change = change.max((w.hn[a] - h[a]).abs());
        }
        h.copy_from_slice(&w.hn);
        y.copy_from_slice(yn);
        f = fnew;
        // A full Newton step of relative size s leaves an error of order s^2.
        if change <= opts.tol * hmax || (t == 1.0 && change <= opts.tol.sqrt() * hmax) {
            break;
        }
    }
    it
}

/// Fast recovery of the cells of a CSR block (cells x model genes, raw values): scales each
/// value with `scaling` (if given), builds the cell's posneg features, and solves its KL
/// problem. Returns H (cells x k) and the Newton iterations per cell, or
/// [`CoreError::Cancelled`] once `cancel` is set (polled before each cell).
pub fn solve_cells(
    x: &Compressed,
    model: &GeneModel,
    scaling: Option<Scaling>,
    opts: &FastOptions,
    cancel: &Cancel,
) -> Result<(Array2<f64>, Vec<u32>)> {
    let prep = prepare(model)?;
    let (k, g) = (prep.k, prep.g);
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
    let n = x.n_major;
    // The value of a gene where the cell has no entry.
    let z0: Vec<f64> = match &scaling {
        Some(s) => (0..g).map(|j| scaled(0.0, s.mean[j], s.sd[j], s.scale_max)).collect(),
        None => vec![0.0; g],
    };
    let mut h = vec![0.0; n * k];
    let mut iters = vec![0u32; n];
    let failed = std::sync::Mutex::new(None::<CoreError>);
    h.par_chunks_mut(k)
        .zip(iters.par_iter_mut())
        .enumerate()
        .with_min_len(64)
        .for_each_init(
            || Work::new(g, k),
            |w, (cell, (hc, itc))| {
                if cancel.is_cancelled() {
                    return;
                }
                w.z.copy_from_slice(&z0);
                let (lo, hi) = (x.indptr[cell] as usize, x.indptr[cell + 1] as usize);
                for (&j, &val) in x.indices[lo..hi].iter().zip(&x.data[lo..hi]) {
                    let j = j as usize;
                    w.z[j] = match &scaling {
                        Some(s) => scaled(val, s.mean[j], s.sd[j], s.scale_max),
                        None => val,
                    };
                }
                w.a.clear();
                w.v.clear();
                for j in 0..g {
                    let zj = w.z[j];
                    let (row, val) = if zj > 0.0 {
                        (&prep.pos[j], zj)
                    } else if zj < 0.0 {
                        if !prep.posneg {
                            if prep.pos[j].is_some() {
                                let mut e = failed.lock().unwrap();
                                if e.is_none() {
                                    *e = Some(CoreError::Negative(format!(
                                        "feature value {zj} of gene {j}: a model without posneg features needs non-negative data"
                                    )));
                                }
                            }
                            continue;
                        }
                        (&prep.neg[j], -zj)
                    } else {
                        continue;
                    };
                    if let Some(r) = row {
                        if r.iter().any(|&c| c > 0.0) {
                            w.a.extend_from_slice(r);
                            w.v.push(val);
                        }
                    }
                }
                *itc = solve_one(w, &prep.denom, k, hc, opts, cancel) as u32;
            },
        );
    cancel.check()?;
    if let Some(e) = failed.into_inner().unwrap() {
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
