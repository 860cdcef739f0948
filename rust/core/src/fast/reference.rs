//! The plain per-cell solver: one cell's KL problem by sequential quadratic programming (the
//! C library's log, an active-set QP). The lane kernel ([`super::lanes`]) runs the same method
//! with its own log and QP; this is the reference its tests compare objectives against.

// Index loops are the clearer form for these small dense k x k kernels; `!(x > 0.0)` is
// meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use super::qp::{nnqp, QpWork};
use super::search::{MAX_TRIALS, SIGMA};
use super::FastOptions;
use crate::cancel::Cancel;
use crate::EPS;

/// Per-thread scratch space of [`solve_one`] (the cell's features are given apart).
pub(super) struct Work {
    y: Vec<f64>,
    yn: Vec<f64>,
    grad: Vec<f64>,
    hess: Vec<f64>,
    step: Vec<f64>,
    hn: Vec<f64>,
    qp: QpWork,
}

impl Work {
    pub(super) fn new(g: usize, k: usize) -> Self {
        Work {
            y: vec![0.0; g],
            yn: vec![0.0; g],
            grad: vec![0.0; k],
            hess: vec![0.0; k * k],
            step: vec![0.0; k],
            hn: vec![0.0; k],
            qp: QpWork::new(k),
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

/// The starting point of every cell: all scores equal, matching the total of `v` (`d` sums to
/// `sd`).
#[inline]
pub(super) fn start_value(v: &[f64], sd: f64) -> f64 {
    let sv: f64 = v.iter().sum();
    if sd > 0.0 {
        sv / sd
    } else {
        1.0
    }
}

/// Minimise f over h >= 0 for one cell whose used features are the rows of `rows` (p x k) with
/// values `v` (all > 0), by sequential quadratic programming: at each iterate the exact
/// non-negative minimiser of f's second-order model (a k-variable QP, solved by an active
/// set method) gives the direction, followed by an Armijo backtracking search (full steps
/// near the solution: quadratic convergence once the support is found, typically 3-6
/// iterations). Returns the iterations run; gives up early (the caller then discards `h`)
/// once `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_one(
    w: &mut Work,
    rows: &[f64],
    v: &[f64],
    d: &[f64],
    k: usize,
    h: &mut [f64],
    opts: &FastOptions,
    cancel: &Cancel,
) -> usize {
    let p = v.len();
    if p == 0 {
        // No signal: the minimiser is h = 0; the multiplicative updates end at the floor.
        h.iter_mut().for_each(|x| *x = EPS);
        return 0;
    }
    let c = start_value(v, d.iter().sum());
    h.iter_mut().for_each(|x| *x = c);
    let (y, yn) = (&mut w.y[..p], &mut w.yn[..p]);
    mat_vec(rows, h, k, y);
    let mut f = objective(d, h, v, y);
    let mut it = 0;
    while it < opts.max_iter {
        if it % 10 == 9 && cancel.is_cancelled() {
            break;
        }
        it += 1;
        grad_hess(&mut w.grad, &mut w.hess, rows, v, y, d, k);
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
        let Some((t, fnew)) = line_search(&mut w.hn, yn, h, &w.step, rows, v, d, f, slope) else {
            break; // no decrease at machine precision: converged
        };
        let hmax = w.hn.iter().copied().fold(0.0, f64::max);
        let mut change = 0.0f64;
        for a in 0..k {
            change = change.max((w.hn[a] - h[a]).abs());
        }
        h.copy_from_slice(&w.hn);
        y.copy_from_slice(yn);
        f = fnew;
        if converged(change, hmax, t, opts) {
            break;
        }
    }
    it
}

/// Gradient and (full, symmetric) Hessian of f at h given `y = A h`.
fn grad_hess(grad: &mut [f64], hess: &mut [f64], rows: &[f64], v: &[f64], y: &[f64], d: &[f64], k: usize) {
    grad.copy_from_slice(d);
    hess.iter_mut().for_each(|x| *x = 0.0);
    for ((row, &vi), &yi) in rows.chunks_exact(k).zip(v).zip(y.iter()) {
        let r = vi / yi;
        let q = r / yi;
        for a in 0..k {
            grad[a] -= row[a] * r;
            let qa = q * row[a];
            for b in 0..=a {
                hess[a * k + b] += qa * row[b];
            }
        }
    }
    for a in 0..k {
        for b in 0..a {
            hess[b * k + a] = hess[a * k + b];
        }
    }
}

/// Armijo backtracking from h along `step` (t = 1, 1/2, ...): the accepted t and f there (the
/// point in `hn`, `A hn` in `yn`), or None.
#[allow(clippy::too_many_arguments)]
fn line_search(
    hn: &mut [f64],
    yn: &mut [f64],
    h: &[f64],
    step: &[f64],
    rows: &[f64],
    v: &[f64],
    d: &[f64],
    f: f64,
    slope: f64,
) -> Option<(f64, f64)> {
    let k = h.len();
    let mut t = 1.0;
    for _ in 0..MAX_TRIALS {
        for a in 0..k {
            hn[a] = (h[a] + t * step[a]).max(0.0);
        }
        mat_vec(rows, hn, k, yn);
        let fnew = objective(d, hn, v, yn);
        if fnew.is_finite() && fnew <= f + SIGMA * t * slope {
            return Some((t, fnew));
        }
        t *= 0.5;
    }
    None
}

/// The stopping rule after an accepted step: no score moved by more than `tol` times the
/// largest, or a full Newton step of relative size s (which leaves an error of order s^2)
/// below `sqrt(tol)`.
#[inline]
pub(super) fn converged(change: f64, hmax: f64, t: f64, opts: &FastOptions) -> bool {
    change <= opts.tol * hmax || (t == 1.0 && change <= opts.tol.sqrt() * hmax)
}
