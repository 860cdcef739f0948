//! The k-variable non-negative quadratic program of each Newton step of the per-cell reference
//! solver (a primal active-set method with Cholesky factorisations of the free block); the
//! lane kernel has its own ([`super::pivot`]).

// Index loops are the clearer form for these small dense k x k kernels; `!(x > 0.0)` is
// meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

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
pub(super) fn nnqp(hess: &[f64], q: &[f64], k: usize, u: &mut [f64], w: &mut QpWork) {
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
            step_to_bound(u, w);
        }
        if pivots > max_pivots {
            return;
        }
        match entering(hess, q, k, u, w) {
            // Entering at 0: u stays a feasible start for the inner solve on the new free set.
            Some(best) => w.free[best] = true,
            None => return,
        }
    }
}

/// Step from u towards the free-set solution until the first free variable hits 0, and bind it.
fn step_to_bound(u: &mut [f64], w: &mut QpWork) {
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

/// Optimality on the bound: the bound variable with the most negative gradient component
/// (beyond a tolerance), which enters the free set; None at the optimum.
fn entering(hess: &[f64], q: &[f64], k: usize, u: &[f64], w: &QpWork) -> Option<usize> {
    let qmax = q.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut best = None;
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
            best = Some(a);
        }
    }
    best
}

/// Scratch space of [`nnqp`] (k entries each; `chol` k x k).
pub(super) struct QpWork {
    free: Vec<bool>,
    idx: Vec<usize>,
    rhs: Vec<f64>,
    sol: Vec<f64>,
    chol: Vec<f64>,
}

impl QpWork {
    pub(super) fn new(k: usize) -> Self {
        QpWork {
            free: vec![false; k],
            idx: Vec::with_capacity(k),
            rhs: vec![0.0; k],
            sol: vec![0.0; k],
            chol: vec![0.0; k * k],
        }
    }
}
