//! The lock-step lane kernel of the KL multiplicative updates, and its choice of instruction set.
//!
//! One Rust kernel ([`block_steps`]) is compiled for the baseline target (scalar and SSE2).
//! The AVX2 and AVX-512F copies are the same computation written over whole 8-lane vectors
//! ([`vector::block_steps`]: two `ymm` or one `zmm` register per row of lanes), with the
//! features blocked so that the factor and the sums stay in registers. Rust never
//! contracts `a * b + c` into a fused multiply-add and every lane runs the operations of a lone
//! unit in the same order, so all copies give the same bits; they differ only in vector width.
//! [`KernelPath::detect`] picks the widest copy the CPU runs; tests and benches can force any
//! available one.

use super::{vector, Nonzeros};

/// Units (cells in the H-step, features in the W-step) processed together in lock-step lanes.
/// Each lane performs exactly the operations of a lone unit, in the same order, so results
/// are bit-identical to a unit-by-unit loop; the lanes only let the CPU overlap the
/// otherwise latency-bound sums (and use SIMD across units).
pub(super) const LANES: usize = 8;

/// The non-zeros of a block of up to `LANES` units, padded to a common length with zero entries
/// (a zero of V contributes an exact +0 to every sum, so padding changes no bit).
pub(super) struct Block {
    /// The units in the lanes (`units.len() <= LANES`; the other lanes are padding).
    pub(super) units: Vec<usize>,
    pub(super) idx: Vec<[u32; LANES]>,
    pub(super) val: Vec<[f64; LANES]>,
}

/// Splits `n_units` units into blocks of `LANES`, grouping units with similar numbers of
/// non-zeros (ordered by that number, then by index) so that the blocks need little padding.
/// Lanes are independent, so which units share a block changes no bit.
pub(super) fn blocks(nz: &Nonzeros, n_units: usize) -> Vec<Block> {
    let mut order: Vec<usize> = (0..n_units).collect();
    order.sort_by_key(|&j| nz.get(j).0.len()); // stable: ties keep index order
    order
        .chunks(LANES)
        .map(|units| {
            let len = units.iter().map(|&j| nz.get(j).0.len()).max().unwrap_or(0);
            let mut idx = vec![[0u32; LANES]; len];
            let mut val = vec![[0.0f64; LANES]; len];
            for (l, &j) in units.iter().enumerate() {
                let (ii, vv) = nz.get(j);
                for (t, (&i, &v)) in ii.iter().zip(vv).enumerate() {
                    idx[t][l] = i;
                    val[t][l] = v;
                }
            }
            Block { units: units.to_vec(), idx, val }
        })
        .collect()
}

/// Gathers the fixed factor's rows lane-wise once for all the steps of a call:
/// `wt[t * k + a][l]` is `F[idx[t][l], a]`, so the block then streams from cache without index
/// arithmetic. Returns `wt` and `k` rows for the sums, both carved out of `scratch`.
#[inline(always)]
pub(super) fn gather<'s>(
    b: &Block,
    f: &[f64],
    k: usize,
    scratch: &'s mut Vec<[f64; LANES]>,
) -> (&'s mut [[f64; LANES]], &'s mut [[f64; LANES]]) {
    let (wt, acc) = scratch_rows(b.idx.len(), k, scratch);
    gather_rows(wt, &b.idx, f, k);
    (wt, acc)
}

/// `len * k` rows for the gathered factor and `k` rows for the sums, carved out of `scratch`
/// (left as they are: the gather overwrites every row of the first, the kernel zeroes the
/// second).
#[inline(always)]
pub(super) fn scratch_rows(
    len: usize,
    k: usize,
    scratch: &mut Vec<[f64; LANES]>,
) -> (&mut [[f64; LANES]], &mut [[f64; LANES]]) {
    if scratch.len() < len * k + k {
        scratch.resize(len * k + k, [0.0; LANES]);
    }
    scratch[..len * k + k].split_at_mut(len * k)
}

/// Fills `wt` (`idx.len() * k` rows) with `wt[t * k + a][l] = f[idx[t][l] * k + a]`.
#[inline(always)]
pub(super) fn gather_rows(wt: &mut [[f64; LANES]], idx: &[[u32; LANES]], f: &[f64], k: usize) {
    for (rows, idx) in wt.chunks_exact_mut(k).zip(idx) {
        for (l, &i) in idx.iter().enumerate() {
            let i = i as usize * k;
            for (row, &v) in rows.iter_mut().zip(&f[i..i + k]) {
                row[l] = v;
            }
        }
    }
}

/// `iters` multiplicative steps of one block: for every lane,
/// `x_a <- x_a * (sum_t F_ta * (v_t / (F x)_t)) / denom_a` over its non-zeros `v_t`, with
/// `(F x)_t` summed over `a` in order and a term with `(F x)_t = 0` contributing 0.
/// `f` is row-major (t x k); `x` holds the block's factor columns lane-wise (`x[a][lane]`).
#[inline(always)]
pub(super) fn block_steps(
    b: &Block,
    f: &[f64],
    k: usize,
    denom: &[f64],
    x: &mut [[f64; LANES]],
    iters: usize,
    scratch: &mut Vec<[f64; LANES]>,
) {
    let (wt, acc) = gather(b, f, k, scratch);
    for _ in 0..iters {
        acc.iter_mut().for_each(|r| *r = [0.0; LANES]);
        for (t, val) in b.val.iter().enumerate() {
            let w = &wt[t * k..t * k + k];
            let mut wh = [0.0f64; LANES];
            for a in 0..k {
                for l in 0..LANES {
                    wh[l] += w[a][l] * x[a][l];
                }
            }
            let mut r = [0.0f64; LANES];
            for l in 0..LANES {
                r[l] = if val[l] != 0.0 && wh[l] != 0.0 { val[l] / wh[l] } else { 0.0 };
            }
            for a in 0..k {
                for l in 0..LANES {
                    acc[a][l] += w[a][l] * r[l];
                }
            }
        }
        for a in 0..k {
            for l in 0..LANES {
                x[a][l] = x[a][l] * acc[a][l] / denom[a];
            }
        }
    }
}

/// The arguments of one call of the kernel.
pub(super) struct Steps<'a> {
    pub(super) f: &'a [f64],
    pub(super) k: usize,
    pub(super) denom: &'a [f64],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_steps_avx2(
    s: &Steps,
    b: &Block,
    x: &mut [[f64; LANES]],
    iters: usize,
    scratch: &mut Vec<[f64; LANES]>,
) {
    // SAFETY: the caller runs this only on a CPU with AVX2 (no FMA: a fused multiply-add
    // would change the bits).
    unsafe { vector::block_steps::<vector::Avx2>(b, s.f, s.k, s.denom, x, iters, scratch) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_steps_avx512(
    s: &Steps,
    b: &Block,
    x: &mut [[f64; LANES]],
    iters: usize,
    scratch: &mut Vec<[f64; LANES]>,
) {
    // SAFETY: the caller runs this only on a CPU with AVX-512F.
    unsafe { vector::block_steps::<vector::Avx512>(b, s.f, s.k, s.denom, x, iters, scratch) }
}

/// Which compiled copy of the lane kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// The baseline target's code (SSE2 on x86-64): runs everywhere.
    Scalar,
    /// AVX2 without FMA (x86-64 only).
    Avx2,
    /// AVX-512F without FMA (x86-64 only).
    Avx512,
}

impl KernelPath {
    /// Every path, narrowest first.
    pub const ALL: [KernelPath; 3] = [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512];

    /// The widest path this CPU runs; what [`super::update_h`] and [`super::update_w`] use.
    pub fn detect() -> Self {
        Self::ALL.into_iter().rev().find(|p| p.is_available()).unwrap_or(KernelPath::Scalar)
    }

    /// True when this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            KernelPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this CPU runs, narrowest first.
    pub fn available() -> Vec<KernelPath> {
        Self::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// The instruction set the path uses: "avx512", "avx2", "sse2" (baseline x86-64) or
    /// "scalar" (other architectures).
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Scalar if cfg!(target_arch = "x86_64") => "sse2",
            KernelPath::Scalar => "scalar",
        }
    }

    /// Runs `iters` steps of block `b` with this path. The caller has checked
    /// [`KernelPath::is_available`] (an unavailable path falls back to the baseline code).
    #[inline]
    pub(super) fn steps(
        self,
        s: &Steps,
        b: &Block,
        x: &mut [[f64; LANES]],
        iters: usize,
        scratch: &mut Vec<[f64; LANES]>,
    ) {
        #[cfg(target_arch = "x86_64")]
        match self {
            // SAFETY: the CPU supports AVX2 (run-time check; `is_available` caches it).
            KernelPath::Avx2 if self.is_available() => return unsafe { block_steps_avx2(s, b, x, iters, scratch) },
            // SAFETY: the CPU supports AVX-512F (run-time check, as above).
            KernelPath::Avx512 if self.is_available() => return unsafe { block_steps_avx512(s, b, x, iters, scratch) },
            _ => {}
        }
        block_steps(b, s.f, s.k, s.denom, x, iters, scratch)
    }
}
