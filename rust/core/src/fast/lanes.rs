//! The lane kernel: [`LANES`] cells solved in lock-step, one cell per lane, each lane running
//! the projected Newton method of [`super::reference::solve_one`] (same objective, same
//! stopping rule) with its own QP ([`super::pivot`]) and logarithm ([`super::ln`]).
//!
//! A lane's features are its cell's used features in gene order, padded with zero rows (value
//! 0) up to the longest lane; the padding is masked out of every sum (its terms are +0, which
//! leaves a sum's bits unchanged), so a cell's result does not depend on the other cells of
//! its lanes. The gradient, the Hessian, `W h`, the logarithms and the steps run across lanes
//! (arrays of `LANES` doubles that LLVM vectorises; the AVX2 copy is chosen at run time; no
//! FMA, and all per-lane code is plain arithmetic, so every path gives the same bits); the
//! k-variable QP and the stopping tests run per lane. A lane whose cell has converged is
//! refilled with the next cell of the block at the next Newton iteration, so lanes are not
//! held back by their slowest cell. Nothing is allocated after [`LaneWork::new`].
//!
//! Where the time goes (the `fast_solver` example, k = 11, ~75 features per cell): the
//! Hessian (register tiles of `Ops::tile` over groups of `ROWS` feature rows) and the
//! per-lane QP take about a fifth each, the line search (`W h` and the logarithms) an eighth,
//! loading a cell (gathering its features, copying them into its lane) about as much. A new
//! cell's `W h` and f at the start value come from its W rows' sums and their logarithms,
//! computed once per call, so a cell costs one logarithm before its first step.

// Index loops over lanes and the small k x k blocks are the clearer form here; `!(x > 0.0)`
// is meant to be true for NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use super::ln::ln;
use super::pivot::{nnqp, PivotWork};
use super::reference::{converged, start_value};
use super::search::{line_search, Search};
#[cfg(target_arch = "x86_64")]
use super::simd::Avx2;
use super::simd::{Lane, Ops, Plain, TILE};
pub use super::simd::{SimdPath, LANES};
use super::{FastOptions, Features, Input, Prepared};
use crate::cancel::Cancel;
use crate::EPS;

/// Feature rows taken together in the Hessian (their `q_i a_i` and rows stay in L1 while the
/// tiles of the Hessian sweep them).
const ROWS: usize = 16;

/// What every block of a call shares.
pub(super) struct Ctx<'a> {
    pub(super) prep: &'a Prepared,
    pub(super) input: &'a Input<'a>,
    pub(super) opts: &'a FastOptions,
    pub(super) cancel: &'a Cancel,
}

/// Per-thread workspace: the lanes' features and iterates (lane-minor) and one lane's QP.
pub(super) struct LaneWork {
    k: usize,
    feat: Features,
    /// Feature rows: row i, column c at `i * k + c`.
    a: Vec<Lane>,
    v: Vec<Lane>,
    y: Vec<Lane>,
    yn: Vec<Lane>,
    h: Vec<Lane>,
    hn: Vec<Lane>,
    step: Vec<Lane>,
    grad: Vec<Lane>,
    /// `q_i a_i` of the current group of rows (ROWS x k).
    qa: Vec<Lane>,
    /// Lower triangle of the Hessian, packed by rows (`a (a + 1) / 2 + b`, b <= a).
    hess: Vec<Lane>,
    slot: Slots,
    /// One lane's Hessian (in full), QP linear term and solution.
    hc: Vec<f64>,
    qc: Vec<f64>,
    uc: Vec<f64>,
    qp: PivotWork,
}

/// Per-lane state.
#[derive(Default)]
struct Slots {
    /// The lane's cell in the block, or None when the lane is idle.
    cell: [Option<usize>; LANES],
    /// Used features of the lane's cell, and the rows holding non-zero data (to clear).
    p: [usize; LANES],
    dirty: [usize; LANES],
    it: [u32; LANES],
    f: Lane,
    slope: Lane,
    fnew: Lane,
    t: Lane,
}

impl LaneWork {
    pub(super) fn new(g: usize, k: usize) -> Self {
        let z = || vec![Lane::ZERO; g];
        let zk = || vec![Lane::ZERO; k];
        LaneWork {
            k,
            feat: Features::new(g, k),
            a: vec![Lane::ZERO; g * k],
            v: z(),
            y: z(),
            yn: z(),
            h: zk(),
            hn: zk(),
            step: zk(),
            grad: zk(),
            qa: vec![Lane::ZERO; ROWS * k],
            hess: vec![Lane::ZERO; k * (k + 1) / 2],
            slot: Slots::default(),
            hc: vec![0.0; k * k],
            qc: vec![0.0; k],
            uc: vec![0.0; k],
            qp: PivotWork::new(k),
        }
    }
}

/// Solve the cells `first..first + its.len()` of the block into `h` (their rows, k each) and
/// `its`; returns early, leaving them partly written, once `ctx.cancel` is set.
pub(super) fn solve_block(path: SimdPath, w: &mut LaneWork, ctx: &Ctx, first: usize, h: &mut [f64], its: &mut [u32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 if path.is_available() => {
            // SAFETY: the CPU supports AVX2 (checked at run time).
            unsafe { solve_block_avx2(w, ctx, first, h, its) }
        }
        _ => run::<Plain>(w, ctx, first, h, its),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn solve_block_avx2(w: &mut LaneWork, ctx: &Ctx, first: usize, h: &mut [f64], its: &mut [u32]) {
    // Same code compiled for AVX2 (no FMA: a fused multiply-add would change the bits).
    run::<Avx2>(w, ctx, first, h, its)
}

#[inline(always)]
fn run<O: Ops>(w: &mut LaneWork, ctx: &Ctx, first: usize, h: &mut [f64], its: &mut [u32]) {
    let mut next = 0;
    w.slot.cell = [None; LANES];
    loop {
        for l in 0..LANES {
            if w.slot.cell[l].is_none() {
                next = refill(w, ctx, l, first, next, h, its);
            }
        }
        if w.slot.cell.iter().all(Option::is_none) || ctx.cancel.is_cancelled() {
            return;
        }
        newton_step::<O>(w, ctx, h, its);
    }
}

/// Load the next cell that needs Newton steps into lane `l`, finishing on the way the cells
/// that need none; returns the next cell to load.
#[inline(always)]
fn refill(
    w: &mut LaneWork,
    ctx: &Ctx,
    l: usize,
    first: usize,
    mut next: usize,
    h: &mut [f64],
    its: &mut [u32],
) -> usize {
    let (k, d) = (w.k, &ctx.prep.denom[..]);
    while next < its.len() {
        let cell = next;
        next += 1;
        if ctx.cancel.is_cancelled() {
            return its.len();
        }
        w.feat.gather(ctx.prep, ctx.input, first + cell);
        let (fa, fv) = (&w.feat.a, &w.feat.v);
        let p = fv.len();
        let out = &mut h[cell * k..(cell + 1) * k];
        its[cell] = 0;
        if p == 0 {
            // No signal: the minimiser is h = 0; the multiplicative updates end at the floor.
            out.iter_mut().for_each(|x| *x = EPS);
            continue;
        }
        let c = start_value(fv, ctx.prep.denom_sum);
        if ctx.opts.max_iter == 0 {
            out.iter_mut().for_each(|x| *x = c);
            continue;
        }
        for i in 0..p {
            for col in 0..k {
                w.a[i * k + col][l] = fa[i * k + col];
            }
            w.v[i][l] = fv[i];
        }
        for i in p..w.slot.dirty[l] {
            for col in 0..k {
                w.a[i * k + col][l] = 0.0;
            }
            w.v[i][l] = 0.0;
        }
        w.slot.dirty[l] = p;
        w.slot.p[l] = p;
        w.h.iter_mut().for_each(|x| x[l] = c);
        w.slot.f[l] = start_objective(w, l, d, c);
        w.slot.cell[l] = Some(cell);
        w.slot.it[l] = 0;
        return next;
    }
    next
}

/// `W h` (into `y`) and f at the start value `h = c` of the cell just loaded into lane `l`,
/// from its rows' sums `s_i` and their logarithms: `y_i = c s_i` and
/// `f = sum_a d_a c - sum_i v_i (ln c + ln s_i)` (no logarithm per cell but one).
#[inline(always)]
fn start_objective(w: &mut LaneWork, l: usize, d: &[f64], c: f64) -> f64 {
    let lc = ln(c);
    let mut f = 0.0;
    for da in d {
        f += da * c;
    }
    let (mut lsum, mut positive) = (0.0, true);
    for (i, (&vi, &(si, lsi))) in w.feat.v.iter().zip(&w.feat.s).enumerate() {
        let yi = c * si;
        w.y[i][l] = yi;
        positive &= yi > 0.0;
        lsum += vi * (lc + lsi);
    }
    if positive {
        f - lsum
    } else {
        f64::INFINITY
    }
}

/// The longest feature list of the busy lanes.
#[inline(always)]
fn rows_in_use(s: &Slots) -> usize {
    (0..LANES).filter(|&l| s.cell[l].is_some()).map(|l| s.p[l]).max().unwrap_or(0)
}

/// Gradient and packed lower Hessian of f at h, across lanes, over the first `pm` rows.
#[inline(always)]
fn grad_hess<O: Ops>(w: &mut LaneWork, d: &[f64], pm: usize) {
    let k = w.k;
    for (g, &da) in w.grad.iter_mut().zip(d) {
        *g = Lane([da; LANES]);
    }
    w.hess.iter_mut().for_each(|x| *x = Lane::ZERO);
    // Rows in groups of ROWS: each Hessian entry takes the group's terms one after another in
    // row order (the reference's order) while held in a register, TILE entries at a time.
    let mut i = 0;
    while i < pm {
        let m = ROWS.min(pm - i);
        for t in 0..m {
            let (vi, yi) = (&w.v[i + t], &w.y[i + t]);
            let (mut r, mut q) = (Lane::ZERO, Lane::ZERO);
            // SAFETY (here and below): `O`'s CPU features were checked by the caller.
            // Padding rows (value 0) contribute nothing.
            unsafe { O::ratios(&mut r, &mut q, vi, yi) };
            let row = &w.a[(i + t) * k..(i + t + 1) * k];
            for ((ga, qa), ra) in w.grad.iter_mut().zip(w.qa[t * k..(t + 1) * k].iter_mut()).zip(row) {
                unsafe {
                    O::sub_mul(ga, ra, &r);
                    O::mul(qa, &q, ra);
                }
            }
        }
        let rows = &w.a[i * k..(i + m) * k];
        for a in 0..k {
            let base = a * (a + 1) / 2;
            let mut b0 = 0;
            while b0 <= a {
                let nb = (a + 1 - b0).min(TILE);
                unsafe { O::tile(&mut w.hess[base + b0..base + b0 + nb], &w.qa[a..], &rows[b0..], k, m) };
                b0 += nb;
            }
        }
        i += m;
    }
}

/// One Newton iteration of every busy lane: direction from the QP, Armijo search, update,
/// and the stopping tests (a lane whose cell stops is written out and left idle).
#[inline(always)]
fn newton_step<O: Ops>(w: &mut LaneWork, ctx: &Ctx, h: &mut [f64], its: &mut [u32]) {
    let (k, d, opts) = (w.k, &ctx.prep.denom[..], ctx.opts);
    let pm = rows_in_use(&w.slot);
    grad_hess::<O>(w, d, pm);
    // QP linear term q = g - H h (into step), per lane.
    for a in 0..k {
        let mut hh = Lane::ZERO;
        for b in 0..k {
            let hab = &w.hess[if b <= a { a * (a + 1) / 2 + b } else { b * (b + 1) / 2 + a }];
            unsafe { O::add_mul(&mut hh, hab, &w.h[b]) };
        }
        for l in 0..LANES {
            w.step[a][l] = w.grad[a][l] - hh[l];
        }
    }
    for l in 0..LANES {
        if w.slot.cell[l].is_none() {
            continue;
        }
        w.slot.it[l] += 1;
        for a in 0..k {
            let row = &w.hess[a * (a + 1) / 2..=a * (a + 1) / 2 + a];
            for (b, hab) in row.iter().enumerate() {
                w.hc[a * k + b] = hab[l];
                w.hc[b * k + a] = hab[l];
            }
            w.qc[a] = w.step[a][l];
            w.uc[a] = w.h[a][l];
        }
        nnqp(&w.hc, &w.qc, k, &mut w.uc, &mut w.qp);
        for a in 0..k {
            w.hn[a][l] = w.uc[a];
        }
    }
    let mut slope = Lane::ZERO;
    for a in 0..k {
        for l in 0..LANES {
            w.step[a][l] = w.hn[a][l] - w.h[a][l];
            slope[l] += w.grad[a][l] * w.step[a][l];
        }
    }
    w.slot.slope = slope;
    let mut searching = [false; LANES];
    for l in 0..LANES {
        if w.slot.cell[l].is_some() {
            if !(slope[l] < 0.0) {
                finish(w, l, k, h, its); // no descent direction left: converged
            } else {
                searching[l] = true;
            }
        }
    }
    let s = Search { k, a: &w.a, v: &w.v, pm, d, h: &w.h, step: &w.step, f: &w.slot.f, slope: &w.slot.slope };
    let accepted = line_search::<O>(&s, &mut w.hn, &mut w.yn, &mut w.slot.fnew, &mut w.slot.t, searching);
    take_y(w, pm, searching, accepted);
    for l in 0..LANES {
        if !searching[l] {
            continue;
        }
        if !accepted[l] {
            finish(w, l, k, h, its); // no decrease at machine precision: converged
            continue;
        }
        let mut hmax = 0.0f64;
        let mut change = 0.0f64;
        for a in 0..k {
            hmax = hmax.max(w.hn[a][l]);
            change = change.max((w.hn[a][l] - w.h[a][l]).abs());
            w.h[a][l] = w.hn[a][l];
        }
        w.slot.f[l] = w.slot.fnew[l];
        if converged(change, hmax, w.slot.t[l], opts) || w.slot.it[l] as usize >= opts.max_iter {
            finish(w, l, k, h, its);
        }
    }
}

/// `W h` at the accepted points into `y`, across lanes (rows past a lane's features are
/// padding, whatever they hold).
#[inline(always)]
fn take_y(w: &mut LaneWork, pm: usize, searching: [bool; LANES], accepted: [bool; LANES]) {
    let mut take = [0u64; LANES];
    for l in 0..LANES {
        take[l] = if searching[l] && accepted[l] { !0 } else { 0 };
    }
    for (y, yn) in w.y[..pm].iter_mut().zip(&w.yn[..pm]) {
        for l in 0..LANES {
            y[l] = f64::from_bits((yn[l].to_bits() & take[l]) | (y[l].to_bits() & !take[l]));
        }
    }
}

/// Write lane `l`'s cell out and leave the lane idle.
#[inline(always)]
fn finish(w: &mut LaneWork, l: usize, k: usize, h: &mut [f64], its: &mut [u32]) {
    if let Some(cell) = w.slot.cell[l].take() {
        for a in 0..k {
            h[cell * k + a] = w.h[a][l];
        }
        its[cell] = w.slot.it[l];
    }
}
