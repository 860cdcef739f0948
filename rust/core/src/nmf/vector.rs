//! The lane kernel written over whole vectors of [`LANES`] lanes (AVX-512F: one `zmm` is 8
//! f64; AVX2: two `ymm`), with the features blocked so its operands stay in registers.
//!
//! [`block_steps`] is generic over [`Lanes`]: the AVX-512 path instantiates it with [`Avx512`],
//! the AVX2 path with [`Avx2`], and the tests with [`Portable`] (plain arrays), where it must
//! give the bits of [`super::lanes`]' scalar kernel. Each [`Lanes`] operation is one IEEE
//! operation per lane (no FMA), so the instantiations compute the same thing and only the
//! mapping of each operation to an instruction is specific to the instruction set.

use super::lanes::{gather_rows, scratch_rows, Block, LANES};

/// A vector of `LANES` f64, one per lane.
///
/// # Safety
/// An implementation may need CPU features: its methods may be called only on a CPU that has
/// them (checked at run time by [`super::KernelPath::is_available`]).
pub(super) unsafe trait Lanes: Copy {
    /// All lanes +0.
    unsafe fn zero() -> Self;
    /// All lanes `v`.
    unsafe fn splat(v: f64) -> Self;
    unsafe fn load(p: &[f64; LANES]) -> Self;
    unsafe fn store(self, p: &mut [f64; LANES]);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// Per lane `v / d` where `v != 0 && d != 0` (Rust's `!=`: true for NaN), else +0.
    unsafe fn ratio(v: Self, d: Self) -> Self;
    /// [`gather_rows`]: `wt[t * k + a][l] = f[idx[t][l] * k + a]` (a copy: any way of moving
    /// the values gives the same bits).
    #[inline(always)]
    unsafe fn gather(wt: &mut [[f64; LANES]], idx: &[[u32; LANES]], f: &[f64], k: usize) {
        gather_rows(wt, idx, f, k)
    }
}

/// Plain arrays: what every CPU runs (used to test the loop nest of [`block_steps`]).
#[cfg(test)]
#[derive(Clone, Copy)]
pub(super) struct Portable([f64; LANES]);

// SAFETY: needs no CPU feature.
#[cfg(test)]
unsafe impl Lanes for Portable {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; LANES])
    }
    #[inline(always)]
    unsafe fn splat(v: f64) -> Self {
        Portable([v; LANES])
    }
    #[inline(always)]
    unsafe fn load(p: &[f64; LANES]) -> Self {
        Portable(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: &mut [f64; LANES]) {
        *p = self.0;
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + o.0[l]))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * o.0[l]))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] / o.0[l]))
    }
    #[inline(always)]
    unsafe fn ratio(v: Self, d: Self) -> Self {
        Portable(std::array::from_fn(|l| if v.0[l] != 0.0 && d.0[l] != 0.0 { v.0[l] / d.0[l] } else { 0.0 }))
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx2::Avx2;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Lanes, LANES};

    /// Two `ymm` registers (AVX; the AVX2 path runs it): lanes 0-3 and 4-7.
    #[derive(Clone, Copy)]
    pub(in crate::nmf) struct Avx2(__m256d, __m256d);

    // SAFETY: every method runs AVX instructions; the trait's contract makes the caller check
    // that the CPU has them (AVX2 implies AVX).
    unsafe impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Avx2(_mm256_setzero_pd(), _mm256_setzero_pd()) }
        }
        #[inline(always)]
        unsafe fn splat(v: f64) -> Self {
            unsafe { Avx2(_mm256_set1_pd(v), _mm256_set1_pd(v)) }
        }
        #[inline(always)]
        unsafe fn load(p: &[f64; LANES]) -> Self {
            unsafe { Avx2(_mm256_loadu_pd(p.as_ptr()), _mm256_loadu_pd(p.as_ptr().add(4))) }
        }
        #[inline(always)]
        unsafe fn store(self, p: &mut [f64; LANES]) {
            unsafe {
                _mm256_storeu_pd(p.as_mut_ptr(), self.0);
                _mm256_storeu_pd(p.as_mut_ptr().add(4), self.1);
            }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_add_pd(self.0, o.0), _mm256_add_pd(self.1, o.1)) }
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_mul_pd(self.0, o.0), _mm256_mul_pd(self.1, o.1)) }
        }
        #[inline(always)]
        unsafe fn div(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_div_pd(self.0, o.0), _mm256_div_pd(self.1, o.1)) }
        }
        #[inline(always)]
        unsafe fn ratio(v: Self, d: Self) -> Self {
            // NEQ_UQ is Rust's `!=` (true when unordered); the mask zeroes (+0) the other lanes.
            #[inline(always)]
            unsafe fn half(v: __m256d, d: __m256d) -> __m256d {
                unsafe {
                    let z = _mm256_setzero_pd();
                    let m = _mm256_and_pd(_mm256_cmp_pd::<_CMP_NEQ_UQ>(v, z), _mm256_cmp_pd::<_CMP_NEQ_UQ>(d, z));
                    _mm256_and_pd(m, _mm256_div_pd(v, d))
                }
            }
            unsafe { Avx2(half(v.0, d.0), half(v.1, d.1)) }
        }
        /// Transposes 4 x 4 tiles (4 lanes' rows, 4 consecutive `a`) in registers; the
        /// `k % 4` last values of each row one by one.
        #[inline(always)]
        unsafe fn gather(wt: &mut [[f64; LANES]], idx: &[[u32; LANES]], f: &[f64], k: usize) {
            let k4 = k / 4 * 4;
            for (rows, idx) in wt.chunks_exact_mut(k).zip(idx) {
                let r: [&[f64]; LANES] = std::array::from_fn(|l| &f[idx[l] as usize * k..][..k]);
                for o in [0, 4] {
                    for a in (0..k4).step_by(4) {
                        // SAFETY: `a + 4 <= k`, the length of every `r[l]`; `rows` has `k` rows
                        // of `LANES = o + 4` values.
                        unsafe {
                            let p: [__m256d; 4] = std::array::from_fn(|j| _mm256_loadu_pd(r[o + j].as_ptr().add(a)));
                            let (t0, t1) = (_mm256_unpacklo_pd(p[0], p[1]), _mm256_unpackhi_pd(p[0], p[1]));
                            let (t2, t3) = (_mm256_unpacklo_pd(p[2], p[3]), _mm256_unpackhi_pd(p[2], p[3]));
                            let cols = [
                                _mm256_permute2f128_pd::<0x20>(t0, t2),
                                _mm256_permute2f128_pd::<0x20>(t1, t3),
                                _mm256_permute2f128_pd::<0x31>(t0, t2),
                                _mm256_permute2f128_pd::<0x31>(t1, t3),
                            ];
                            for (j, c) in cols.into_iter().enumerate() {
                                _mm256_storeu_pd(rows[a + j][o..].as_mut_ptr(), c);
                            }
                        }
                    }
                    for a in k4..k {
                        for l in o..o + 4 {
                            rows[a][l] = r[l][a];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx512::Avx512;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Lanes, LANES};

    /// One `zmm` register (AVX-512F).
    #[derive(Clone, Copy)]
    pub(in crate::nmf) struct Avx512(__m512d);

    // SAFETY: every method runs AVX-512F instructions; the trait's contract makes the caller
    // check that the CPU has them.
    unsafe impl Lanes for Avx512 {
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Avx512(_mm512_setzero_pd()) }
        }
        #[inline(always)]
        unsafe fn splat(v: f64) -> Self {
            unsafe { Avx512(_mm512_set1_pd(v)) }
        }
        #[inline(always)]
        unsafe fn load(p: &[f64; LANES]) -> Self {
            unsafe { Avx512(_mm512_loadu_pd(p.as_ptr())) }
        }
        #[inline(always)]
        unsafe fn store(self, p: &mut [f64; LANES]) {
            unsafe { _mm512_storeu_pd(p.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_add_pd(self.0, o.0)) }
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_mul_pd(self.0, o.0)) }
        }
        #[inline(always)]
        unsafe fn div(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_div_pd(self.0, o.0)) }
        }
        #[inline(always)]
        unsafe fn ratio(v: Self, d: Self) -> Self {
            unsafe {
                let z = _mm512_setzero_pd();
                // NEQ_UQ is Rust's `!=` (true when unordered); masked-off lanes are +0.
                let m = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v.0, z) & _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(d.0, z);
                Avx512(_mm512_maskz_div_pd(m, v.0, d.0))
            }
        }
    }
}

/// Features (H-step; cells in the W-step) that [`block_steps`] processes together: `x_a` is
/// loaded once per `FEATURES` features and each sum over `t` is loaded and stored once per
/// `FEATURES` features, so the loop nest keeps its operands in registers instead of memory
/// (16 `ymm` registers on AVX2 cannot hold `x` and the sums for k ~ 11 SEs).
pub(super) const FEATURES: usize = 4;

/// [`super::lanes`]' kernel over whole vectors: the same operations per lane, in the same order
/// (`(F x)_t` summed over `a` from +0, the ratio, the sums over `t` from +0, then
/// `x_a * acc_a / denom_a`). Blocking the features changes no bit: each `(F x)_t` is still
/// summed over `a` in order and each sum over `t` still receives its terms in `t` order.
///
/// # Safety
/// The CPU must have the features `V` needs.
#[inline(always)]
pub(super) unsafe fn block_steps<V: Lanes>(
    b: &Block,
    f: &[f64],
    k: usize,
    denom: &[f64],
    x: &mut [[f64; LANES]],
    iters: usize,
    scratch: &mut Vec<[f64; LANES]>,
) {
    let (wt, acc) = scratch_rows(b.idx.len(), k, scratch);
    unsafe { V::gather(wt, &b.idx, f, k) };
    let whole = b.val.len() / FEATURES * FEATURES;
    let (wt_whole, wt_rest) = wt.split_at(whole * k);
    let (val_whole, val_rest) = b.val.split_at(whole);
    unsafe {
        for _ in 0..iters {
            acc.iter_mut().for_each(|r| *r = [0.0; LANES]);
            for (w, val) in wt_whole.chunks_exact(FEATURES * k).zip(val_whole.chunks_exact(FEATURES)) {
                features::<V, FEATURES>(w, val, x, acc);
            }
            for (w, val) in wt_rest.chunks_exact(k).zip(val_rest.chunks_exact(1)) {
                features::<V, 1>(w, val, x, acc);
            }
            for ((xa, sa), &d) in x.iter_mut().zip(acc.iter()).zip(denom) {
                V::load(xa).mul(V::load(sa)).div(V::splat(d)).store(xa);
            }
        }
    }
}

/// Adds the terms of `T` consecutive features to the sums `acc`: `w` holds their gathered rows
/// (`w[t * k + a]`), `val` their values of V, `x` the block's factor (`k` rows).
///
/// # Safety
/// The CPU must have the features `V` needs.
#[inline(always)]
unsafe fn features<V: Lanes, const T: usize>(
    w: &[[f64; LANES]],
    val: &[[f64; LANES]],
    x: &[[f64; LANES]],
    acc: &mut [[f64; LANES]],
) {
    let k = x.len();
    assert!(w.len() == T * k && val.len() == T && acc.len() == k);
    // SAFETY (indexing): `a < k` and `t < T`, so `t * k + a < T * k = w.len()`, and
    // `x`, `acc` have `k` rows (asserted above).
    unsafe {
        let mut wh = [V::zero(); T];
        for a in 0..k {
            let xa = V::load(x.get_unchecked(a));
            for (t, s) in wh.iter_mut().enumerate() {
                *s = s.add(V::load(w.get_unchecked(t * k + a)).mul(xa));
            }
        }
        let mut r = [V::zero(); T];
        for t in 0..T {
            r[t] = V::ratio(V::load(&val[t]), wh[t]);
        }
        for a in 0..k {
            let sa = acc.get_unchecked_mut(a);
            let mut s = V::load(sa);
            for (t, &rt) in r.iter().enumerate() {
                s = s.add(V::load(w.get_unchecked(t * k + a)).mul(rt));
            }
            s.store(sa);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::super::lanes::{self, blocks};
    use super::super::Nonzeros;
    use super::*;

    /// The whole-vector loop nest gives the bits of the lane-by-lane kernel.
    #[test]
    fn the_vector_loop_nest_matches_the_lane_kernel() {
        let mut unit = crate::testing::uniform(0x9E37_79B9_7F4A_7C15);
        for (m, n, k) in [(1, 1, 1), (7, 13, 3), (40, 29, 11), (25, 8, 16), (9, 40, 5), (6, 24, 2)] {
            let v = Array2::from_shape_fn((m, n), |_| if unit() < 0.4 { 0.0 } else { (unit() * 30.0 - 15.0).exp2() });
            let f: Vec<f64> =
                (0..m * k).map(|_| if unit() < 0.05 { 0.0 } else { (unit() * 30.0 - 15.0).exp2() }).collect();
            let denom: Vec<f64> = (0..k).map(|a| (0..m).map(|i| f[i * k + a]).sum::<f64>() + 1.0).collect();
            let nz = Nonzeros::by_columns(&v.view());
            for b in blocks(&nz, n) {
                let x0: Vec<[f64; LANES]> = (0..k).map(|_| std::array::from_fn(|_| unit() * 4.0)).collect();
                let (mut want, mut got) = (x0.clone(), x0);
                let (mut s1, mut s2) = (Vec::new(), Vec::new());
                lanes::block_steps(&b, &f, k, &denom, &mut want, 7, &mut s1);
                // SAFETY: `Portable` needs no CPU feature.
                unsafe { block_steps::<Portable>(&b, &f, k, &denom, &mut got, 7, &mut s2) };
                let bits = |x: &[[f64; LANES]]| x.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "m {m} n {n} k {k} block {:?}", b.units);
            }
        }
    }
}
