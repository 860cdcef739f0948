//! The lane type of the fast kernel ([`LANES`] doubles, one per cell, cache-line aligned) and
//! its few vector operations, written once portably and once with AVX2 intrinsics (LLVM does
//! not reliably vectorise the Hessian's triangular loops across lanes by itself). No FMA:
//! every operation rounds like the scalar `a + b * c`, so both give the same bits.

use std::ops::{Deref, DerefMut};

/// An instruction set the lane kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    /// The baseline target (SSE2 on x86-64).
    Scalar,
    /// AVX2 (x86-64), chosen at run time.
    Avx2,
}

impl SimdPath {
    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            SimdPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            SimdPath::Avx2 => false,
        }
    }

    /// The paths this CPU can run.
    pub fn available() -> Vec<SimdPath> {
        [SimdPath::Scalar, SimdPath::Avx2].into_iter().filter(|p| p.is_available()).collect()
    }

    /// The widest path of this CPU.
    pub fn best() -> SimdPath {
        if SimdPath::Avx2.is_available() {
            SimdPath::Avx2
        } else {
            SimdPath::Scalar
        }
    }
}

/// Cells solved together.
pub const LANES: usize = 8;

/// One value per lane.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub(super) struct Lane(pub(super) [f64; LANES]);

impl Lane {
    pub(super) const ZERO: Lane = Lane([0.0; LANES]);
}

impl Deref for Lane {
    type Target = [f64; LANES];
    #[inline(always)]
    fn deref(&self) -> &[f64; LANES] {
        &self.0
    }
}

impl DerefMut for Lane {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [f64; LANES] {
        &mut self.0
    }
}

/// Lane-by-lane operations of one instruction set.
///
/// # Safety
/// An implementation may need CPU features: call its functions only where they are present.
pub(super) unsafe trait Ops {
    /// `acc += x * y`.
    unsafe fn add_mul(acc: &mut Lane, x: &Lane, y: &Lane);
    /// `acc -= x * y`.
    unsafe fn sub_mul(acc: &mut Lane, x: &Lane, y: &Lane);
    /// `out = x * y`.
    unsafe fn mul(out: &mut Lane, x: &Lane, y: &Lane);
    /// `r = v / y` and `q = r / y` as `v * (1 / y)` and `r * (1 / y)`, +0 where `!(v > 0)`.
    unsafe fn ratios(r: &mut Lane, q: &mut Lane, v: &Lane, y: &Lane);
    /// `acc[j] += x[t * k] * y[t * k + j]` for t = 0, 1, .., m - 1 in turn (each entry sums
    /// its terms in row order), j < `acc.len()` <= [`TILE`]; `x` and `y` hold at least
    /// `(m - 1) * k + acc.len()` lanes.
    unsafe fn tile(acc: &mut [Lane], x: &[Lane], y: &[Lane], k: usize, m: usize);
}

/// Hessian entries accumulated together by [`Ops::tile`].
pub(super) const TILE: usize = 8;

/// Plain loops (the baseline target; LLVM vectorises what it can).
pub(super) struct Plain;

// SAFETY: needs no CPU feature.
unsafe impl Ops for Plain {
    #[inline(always)]
    unsafe fn add_mul(acc: &mut Lane, x: &Lane, y: &Lane) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    #[inline(always)]
    unsafe fn sub_mul(acc: &mut Lane, x: &Lane, y: &Lane) {
        for l in 0..LANES {
            acc[l] -= x[l] * y[l];
        }
    }
    #[inline(always)]
    unsafe fn mul(out: &mut Lane, x: &Lane, y: &Lane) {
        for l in 0..LANES {
            out[l] = x[l] * y[l];
        }
    }
    #[inline(always)]
    unsafe fn ratios(r: &mut Lane, q: &mut Lane, v: &Lane, y: &Lane) {
        for l in 0..LANES {
            let inv = 1.0 / y[l];
            let rl = v[l] * inv;
            let ql = rl * inv;
            r[l] = if v[l] > 0.0 { rl } else { 0.0 };
            q[l] = if v[l] > 0.0 { ql } else { 0.0 };
        }
    }
    #[inline(always)]
    unsafe fn tile(acc: &mut [Lane], x: &[Lane], y: &[Lane], k: usize, m: usize) {
        for (j, aj) in acc.iter_mut().enumerate() {
            for l in 0..LANES {
                let mut s = aj[l];
                for t in 0..m {
                    s += x[t * k][l] * y[t * k + j][l];
                }
                aj[l] = s;
            }
        }
    }
}

/// AVX2 intrinsics, two 4-double registers per lane vector.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
// SAFETY: the functions need AVX2; `Avx2` is only used after a run-time check.
unsafe impl Ops for Avx2 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn add_mul(acc: &mut Lane, x: &Lane, y: &Lane) {
        use std::arch::x86_64::*;
        let (a, x, y) = (acc.0.as_mut_ptr(), x.0.as_ptr(), y.0.as_ptr());
        for o in [0, 4] {
            let p = _mm256_mul_pd(_mm256_load_pd(x.add(o)), _mm256_load_pd(y.add(o)));
            _mm256_store_pd(a.add(o), _mm256_add_pd(_mm256_load_pd(a.add(o)), p));
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sub_mul(acc: &mut Lane, x: &Lane, y: &Lane) {
        use std::arch::x86_64::*;
        let (a, x, y) = (acc.0.as_mut_ptr(), x.0.as_ptr(), y.0.as_ptr());
        for o in [0, 4] {
            let p = _mm256_mul_pd(_mm256_load_pd(x.add(o)), _mm256_load_pd(y.add(o)));
            _mm256_store_pd(a.add(o), _mm256_sub_pd(_mm256_load_pd(a.add(o)), p));
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn mul(out: &mut Lane, x: &Lane, y: &Lane) {
        use std::arch::x86_64::*;
        let (a, x, y) = (out.0.as_mut_ptr(), x.0.as_ptr(), y.0.as_ptr());
        for o in [0, 4] {
            _mm256_store_pd(a.add(o), _mm256_mul_pd(_mm256_load_pd(x.add(o)), _mm256_load_pd(y.add(o))));
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn ratios(r: &mut Lane, q: &mut Lane, v: &Lane, y: &Lane) {
        use std::arch::x86_64::*;
        for o in [0, 4] {
            let vv = _mm256_load_pd(v.0.as_ptr().add(o));
            let inv = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_load_pd(y.0.as_ptr().add(o)));
            let rl = _mm256_mul_pd(vv, inv);
            let ql = _mm256_mul_pd(rl, inv);
            let used = _mm256_cmp_pd::<_CMP_GT_OQ>(vv, _mm256_setzero_pd());
            _mm256_store_pd(r.0.as_mut_ptr().add(o), _mm256_and_pd(used, rl));
            _mm256_store_pd(q.0.as_mut_ptr().add(o), _mm256_and_pd(used, ql));
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tile(acc: &mut [Lane], x: &[Lane], y: &[Lane], k: usize, m: usize) {
        assert!(acc.len() <= TILE && (m == 0 || (x.len() > (m - 1) * k && y.len() >= (m - 1) * k + acc.len())));
        match acc.len() {
            1 => tile_avx2_both::<1>(acc, x, y, k, m),
            2 => tile_avx2_both::<2>(acc, x, y, k, m),
            3 => tile_avx2_both::<3>(acc, x, y, k, m),
            4 => tile_avx2_both::<4>(acc, x, y, k, m),
            5 => tile_avx2::<5>(acc, x, y, k, m),
            6 => tile_avx2::<6>(acc, x, y, k, m),
            7 => tile_avx2::<7>(acc, x, y, k, m),
            _ => tile_avx2::<8>(acc, x, y, k, m),
        }
    }
}

/// [`Ops::tile`] for N <= 4 entries: both halves of the lanes at once (2N sums in registers,
/// enough independent additions to hide their latency).
///
/// # Safety
/// As [`tile_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2_both<const N: usize>(acc: &mut [Lane], x: &[Lane], y: &[Lane], k: usize, m: usize) {
    use std::arch::x86_64::*;
    let (a, x, y) = (acc.as_mut_ptr(), x.as_ptr(), y.as_ptr());
    let mut s = [[_mm256_setzero_pd(); 2]; N];
    for (j, sj) in s.iter_mut().enumerate() {
        let p = (*a.add(j)).0.as_ptr();
        *sj = [_mm256_load_pd(p), _mm256_load_pd(p.add(4))];
    }
    for t in 0..m {
        let xp = (*x.add(t * k)).0.as_ptr();
        let xv = [_mm256_load_pd(xp), _mm256_load_pd(xp.add(4))];
        let yr = y.add(t * k);
        for (j, sj) in s.iter_mut().enumerate() {
            let yp = (*yr.add(j)).0.as_ptr();
            sj[0] = _mm256_add_pd(sj[0], _mm256_mul_pd(xv[0], _mm256_load_pd(yp)));
            sj[1] = _mm256_add_pd(sj[1], _mm256_mul_pd(xv[1], _mm256_load_pd(yp.add(4))));
        }
    }
    for (j, sj) in s.iter().enumerate() {
        let p = (*a.add(j)).0.as_mut_ptr();
        _mm256_store_pd(p, sj[0]);
        _mm256_store_pd(p.add(4), sj[1]);
    }
}

/// [`Ops::tile`] for N entries: per half of the lanes, the N sums stay in registers.
///
/// # Safety
/// Needs AVX2; `acc` holds N lanes, `x` and `y` `(m - 1) * k + 1` and `(m - 1) * k + N`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const N: usize>(acc: &mut [Lane], x: &[Lane], y: &[Lane], k: usize, m: usize) {
    use std::arch::x86_64::*;
    let (a, x, y) = (acc.as_mut_ptr(), x.as_ptr(), y.as_ptr());
    for o in [0, 4] {
        let mut s = [_mm256_setzero_pd(); N];
        for (j, sj) in s.iter_mut().enumerate() {
            *sj = _mm256_load_pd((*a.add(j)).0.as_ptr().add(o));
        }
        for t in 0..m {
            let xv = _mm256_load_pd((*x.add(t * k)).0.as_ptr().add(o));
            let yr = y.add(t * k);
            for (j, sj) in s.iter_mut().enumerate() {
                *sj = _mm256_add_pd(*sj, _mm256_mul_pd(xv, _mm256_load_pd((*yr.add(j)).0.as_ptr().add(o))));
            }
        }
        for (j, sj) in s.iter().enumerate() {
            _mm256_store_pd((*a.add(j)).0.as_mut_ptr().add(o), *sj);
        }
    }
}
