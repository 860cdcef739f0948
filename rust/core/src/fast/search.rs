//! The lane kernel's objective and Armijo line search, across lanes: `W h`, the logarithms
//! ([`super::ln`]) and the sums run for all lanes at once; every lane's value is the one its
//! cell alone would give (padding rows add +0, each lane's trial steps are 1, 1/2, 1/4, ...
//! whatever the other lanes do).

// Index loops over lanes are the clearer form here; `!(x > 0.0)` is meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use super::ln::ln_lanes;
use super::simd::{Lane, Ops, LANES};

/// Armijo's sufficient-decrease constant.
pub(super) const SIGMA: f64 = 1e-4;
/// Backtracking halvings of the step at most.
pub(super) const MAX_TRIALS: usize = 60;

/// f of every lane over the first `pm` feature rows (padding rows have `v = 0`).
#[inline(always)]
pub(super) fn objective_lanes<O: Ops>(d: &[f64], h: &[Lane], v: &[Lane], y: &[Lane], pm: usize) -> Lane {
    let mut f = Lane::ZERO;
    for (&da, ha) in d.iter().zip(h) {
        // SAFETY (here and below): `O`'s CPU features were checked by the caller.
        unsafe { O::add_mul(&mut f, &Lane([da; LANES]), ha) };
    }
    // A used feature with `y <= 0` adds -inf (lsum cannot reach +inf: the other terms are
    // finite), which makes f +inf.
    let mut lsum = Lane::ZERO;
    for (vi, yi) in v[..pm].iter().zip(&y[..pm]) {
        let lg = ln_lanes(yi);
        for l in 0..LANES {
            let term = if yi[l] > 0.0 { vi[l] * lg[l] } else { f64::NEG_INFINITY };
            lsum[l] += if vi[l] > 0.0 { term } else { 0.0 };
        }
    }
    for l in 0..LANES {
        let x = f[l] - lsum[l];
        f[l] = if x.is_nan() { f64::INFINITY } else { x };
    }
    f
}

/// What a line search needs of the lane kernel's state.
pub(super) struct Search<'a> {
    pub(super) k: usize,
    /// Feature rows (`i * k + c`), values, and the rows in use.
    pub(super) a: &'a [Lane],
    pub(super) v: &'a [Lane],
    pub(super) pm: usize,
    pub(super) d: &'a [f64],
    /// Current point, direction, objective and slope `grad . step`.
    pub(super) h: &'a [Lane],
    pub(super) step: &'a [Lane],
    pub(super) f: &'a Lane,
    pub(super) slope: &'a Lane,
}

/// Armijo backtracking of the `searching` lanes from `h` along `step`; a lane stops at its
/// first accepted t, its point kept in `hn`/`yn`, f there in `fnew`, t in `t`. Returns which
/// lanes accepted.
#[inline(always)]
pub(super) fn line_search<O: Ops>(
    s: &Search,
    hn: &mut [Lane],
    yn: &mut [Lane],
    fnew: &mut Lane,
    tacc: &mut Lane,
    mut searching: [bool; LANES],
) -> [bool; LANES] {
    let k = s.k;
    let mut accepted = [false; LANES];
    let mut t = 1.0;
    for _ in 0..MAX_TRIALS {
        if !searching.iter().any(|&x| x) {
            break;
        }
        for ((hna, ha), sa) in hn.iter_mut().zip(s.h).zip(s.step) {
            for l in 0..LANES {
                let x = ha[l] + t * sa[l];
                let x = if x > 0.0 { x } else { 0.0 };
                hna[l] = if searching[l] { x } else { hna[l] };
            }
        }
        for (yi, row) in yn[..s.pm].iter_mut().zip(s.a.chunks_exact(k)) {
            let mut acc = Lane::ZERO;
            for (rc, hc) in row.iter().zip(hn.iter()) {
                unsafe { O::add_mul(&mut acc, rc, hc) };
            }
            *yi = acc;
        }
        let fl = objective_lanes::<O>(s.d, hn, s.v, yn, s.pm);
        for l in 0..LANES {
            if searching[l] && fl[l].is_finite() && fl[l] <= s.f[l] + SIGMA * t * s.slope[l] {
                searching[l] = false;
                accepted[l] = true;
                fnew[l] = fl[l];
                tacc[l] = t;
            }
        }
        t *= 0.5;
    }
    accepted
}
