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
    /// `acc = (((acc + x0 y0) + x1 y1) + x2 y2) + x3 y3`.
    unsafe fn add_mul4(acc: &mut Lane, x: [&Lane; 4], y: [&Lane; 4]);
    /// `out = x * y`.
    unsafe fn mul(out: &mut Lane, x: &Lane, y: &Lane);
}

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
    unsafe fn add_mul4(acc: &mut Lane, x: [&Lane; 4], y: [&Lane; 4]) {
        for l in 0..LANES {
            let mut s = acc[l];
            for t in 0..4 {
                s += x[t][l] * y[t][l];
            }
            acc[l] = s;
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
    unsafe fn add_mul4(acc: &mut Lane, x: [&Lane; 4], y: [&Lane; 4]) {
        use std::arch::x86_64::*;
        let a = acc.0.as_mut_ptr();
        for o in [0, 4] {
            let mut s = _mm256_load_pd(a.add(o));
            for t in 0..4 {
                s = _mm256_add_pd(
                    s,
                    _mm256_mul_pd(_mm256_load_pd(x[t].0.as_ptr().add(o)), _mm256_load_pd(y[t].0.as_ptr().add(o))),
                );
            }
            _mm256_store_pd(a.add(o), s);
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
}
