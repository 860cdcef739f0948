//! The k-variable non-negative quadratic program of each Newton step of the lane kernel,
//! `min_u 1/2 u'Hu + q'u, u >= 0`, by block principal pivoting (Júdice and Pires; Kim and
//! Park's NNLS form): guess the free set, solve on it, and exchange every variable that
//! breaks the optimality conditions at once (one at a time, the highest index, when the
//! number of breaking variables stops falling, which makes the method finite). Warm-started
//! from the support of the current iterate, it usually needs one Cholesky solve near the
//! solution and two or three from a fresh start. Plain scalar code (no FMA), so every SIMD
//! path gives the same bits.

// Index loops are the clearer form for these small dense k x k kernels; `!(x > 0.0)` is
// meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

/// Exchanges of the whole breaking set allowed without progress before the single-variable
/// rule takes over.
const GRACE: u32 = 3;

/// Scratch space of [`nnqp`] (k entries each; `chol` k x k).
pub(super) struct PivotWork {
    free: Vec<bool>,
    flip: Vec<bool>,
    idx: Vec<usize>,
    sol: Vec<f64>,
    inv: Vec<f64>,
    chol: Vec<f64>,
}

impl PivotWork {
    pub(super) fn new(k: usize) -> Self {
        PivotWork {
            free: vec![false; k],
            flip: vec![false; k],
            idx: Vec::with_capacity(k),
            sol: vec![0.0; k],
            inv: vec![0.0; k],
            chol: vec![0.0; k * k],
        }
    }
}

/// Solve `(H_FF + ridge I) x = -q_F` on the free indices `w.idx` into `w.sol` by Cholesky
/// (`h`: the full k x k matrix, row-major); false when the block is not positive definite.
fn chol_solve(h: &[f64], q: &[f64], k: usize, ridge: f64, w: &mut PivotWork) -> bool {
    let (idx, c, inv, x) = (&w.idx[..], &mut w.chol[..], &mut w.inv[..], &mut w.sol[..]);
    let m = idx.len();
    for (i, &ri) in idx.iter().enumerate() {
        let hi = &h[ri * k..(ri + 1) * k];
        let (done, rest) = c.split_at_mut(i * k);
        let ci = &mut rest[..=i];
        for (j, &rj) in idx[..i].iter().enumerate() {
            let cj = &done[j * k..j * k + j];
            let s = ci[..j].iter().zip(cj).fold(hi[rj], |s, (a, b)| s - a * b);
            ci[j] = s * inv[j];
        }
        let s = ci[..i].iter().fold(hi[ri], |s, a| s - a * a) + ridge;
        if !(s > 0.0) {
            return false;
        }
        let d = s.sqrt();
        ci[i] = d;
        inv[i] = 1.0 / d;
    }
    for i in 0..m {
        let ci = &c[i * k..i * k + i];
        x[i] = ci.iter().zip(&x[..i]).fold(-q[idx[i]], |s, (a, b)| s - a * b) * inv[i];
    }
    for i in (0..m).rev() {
        let mut s = x[i];
        for l in i + 1..m {
            s -= c[l * k + i] * x[l];
        }
        x[i] = s * inv[i];
    }
    true
}

/// Mark in `w.flip` the variables breaking the optimality conditions of the current solve
/// (free and negative, or bound with a gradient below `-tol`); returns how many and the
/// highest such index.
fn breaking(h: &[f64], q: &[f64], k: usize, tol: f64, w: &mut PivotWork) -> (usize, usize) {
    let (mut count, mut last) = (0, 0);
    w.flip.iter_mut().for_each(|f| *f = false);
    for (t, &a) in w.idx.iter().enumerate() {
        if w.sol[t] < 0.0 {
            w.flip[a] = true;
        }
    }
    for a in 0..k {
        if !w.free[a] {
            let ha = &h[a * k..(a + 1) * k];
            let gr = w.idx.iter().zip(&w.sol).fold(q[a], |g, (&b, s)| g + ha[b] * s);
            w.flip[a] = -gr > tol;
        }
        if w.flip[a] {
            count += 1;
            last = a;
        }
    }
    (count, last)
}

/// Solve the QP with H given in full (`h`, k x k, row-major), starting from the support of
/// the feasible `u` (its positive entries are the first free set); `u` receives the solution
/// (or, should the method fail, stays as given).
pub(super) fn nnqp(h: &[f64], q: &[f64], k: usize, u: &mut [f64], w: &mut PivotWork) {
    let diag_max = (0..k).map(|a| h[a * k + a]).fold(0.0, f64::max);
    let ridge0 = if diag_max > 0.0 { diag_max * 1e-13 } else { 1e-300 };
    let tol = 1e-13 * q.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    for a in 0..k {
        w.free[a] = u[a] > 0.0;
    }
    let (mut fewest, mut grace) = (usize::MAX, GRACE);
    for _ in 0..4 * k + 20 {
        w.idx.clear();
        w.idx.extend((0..k).filter(|&a| w.free[a]));
        let mut ridge = 0.0;
        while !chol_solve(h, q, k, ridge, w) {
            ridge = if ridge == 0.0 { ridge0 } else { ridge * 100.0 };
            if ridge > diag_max.max(1.0) * 1e6 {
                return; // hopeless: keep u
            }
        }
        let (count, last) = breaking(h, q, k, tol, w);
        if count == 0 {
            u.iter_mut().for_each(|x| *x = 0.0);
            for (t, &a) in w.idx.iter().enumerate() {
                u[a] = w.sol[t];
            }
            return;
        }
        if count < fewest || grace > 0 {
            if count < fewest {
                (fewest, grace) = (count, GRACE);
            } else {
                grace -= 1;
            }
            for a in 0..k {
                w.free[a] ^= w.flip[a];
            }
        } else {
            w.free[last] ^= true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KKT residual of `u` for the QP.
    fn kkt(h: &[f64], q: &[f64], k: usize, u: &[f64]) -> f64 {
        (0..k)
            .map(|a| {
                let g = q[a] + (0..k).map(|b| h[a * k + b] * u[b]).sum::<f64>();
                if u[a] > 0.0 {
                    g.abs()
                } else {
                    (-g).max(0.0)
                }
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn solves_random_problems_from_any_start() {
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for k in 1..12 {
            for _ in 0..200 {
                // H = B'B + small ridge with B (k+2) x k; q of either sign.
                let b: Vec<f64> = (0..(k + 2) * k).map(|_| next() - 0.3).collect();
                let mut hp = vec![0.0; k * k];
                for a in 0..k {
                    for c in 0..k {
                        hp[a * k + c] = (0..k + 2).map(|r| b[r * k + a] * b[r * k + c]).sum::<f64>();
                    }
                }
                let q: Vec<f64> = (0..k).map(|_| 2.0 * next() - 1.0).collect();
                let mut u: Vec<f64> = (0..k).map(|_| if next() < 0.5 { 0.0 } else { next() }).collect();
                let mut w = PivotWork::new(k);
                nnqp(&hp, &q, k, &mut u, &mut w);
                assert!(u.iter().all(|&x| x >= 0.0));
                assert!(kkt(&hp, &q, k, &u) < 1e-9, "k = {k}: KKT residual {}", kkt(&hp, &q, k, &u));
            }
        }
    }
}
