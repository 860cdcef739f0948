//! The branch-free parts of reading a value: [`Quick`], a scan of a row or column that only
//! says whether anything needs naming (a negative, non-finite or -0.0 value), and [`Tr`], the
//! raw-count guard's `log2(x + 1)` with the small whole numbers looked up in a table computed
//! by that same expression (so the same bits).

use std::sync::OnceLock;

use super::Scan;

/// Min, max and count of the values seen; `odd`: a NaN or -0.0 was seen.
#[derive(Clone, Copy, Debug)]
pub(super) struct Quick {
    stored: u64,
    mn: f64,
    mx: f64,
    odd: bool,
}

impl Default for Quick {
    fn default() -> Self {
        Quick { stored: 0, mn: f64::INFINITY, mx: f64::NEG_INFINITY, odd: false }
    }
}

const NEG_ZERO: u64 = 0x8000_0000_0000_0000;

impl Quick {
    /// Sees `x` if `keep` (selects, no branch).
    #[inline(always)]
    pub(super) fn see_if(&mut self, x: f64, keep: bool) {
        self.stored += keep as u64;
        self.mn = if keep & (x < self.mn) { x } else { self.mn };
        self.mx = if keep & (x > self.mx) { x } else { self.mx };
        self.odd |= keep & (x.is_nan() | (x.to_bits() == NEG_ZERO));
    }

    /// Sees `x` if `read`, on the bits (an unread value is made NaN, which the min and max
    /// ignore).
    #[inline(always)]
    pub(super) fn see_masked(&mut self, x: f64, read: bool) {
        let b = x.to_bits();
        let a = f64::from_bits(b | ((!read) as u64).wrapping_neg() & f64::NAN.to_bits());
        self.stored += read as u64;
        self.mn = self.mn.min(a); // minsd + a blend on NaN: faster here than the select
        self.mx = self.mx.max(a);
        self.odd |= read & ((x < 0.0) | x.is_nan() | (b == NEG_ZERO));
    }

    /// No value to name (and min / max are those `Scan::see` would find).
    #[inline]
    pub(super) fn clean(&self) -> bool {
        !self.odd && self.mn >= 0.0 && self.mx < f64::INFINITY
    }

    /// Adds a clean quick scan to `scan`.
    #[inline]
    pub(super) fn add_to(&self, scan: &mut Scan) {
        if self.stored > 0 {
            scan.stored += self.stored;
            scan.min = scan.min.min(self.mn);
            scan.max = scan.max.max(self.mx);
        }
    }
}

/// A [`Quick`] scan of dense values, four at a time, without branches (a branch on `x != 0`
/// mispredicts at any density but the extremes): SSE2 lanes (x86-64's baseline). A zero is
/// made NaN for the min / max (which keep their operand when compared with NaN); a negative
/// value or NaN sets `odd`, and then the min / max are not used.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(super) struct Lanes {
    stored: [std::arch::x86_64::__m128i; 2],
    lo: [std::arch::x86_64::__m128d; 2],
    hi: [std::arch::x86_64::__m128d; 2],
    odd: std::arch::x86_64::__m128d,
}

#[cfg(target_arch = "x86_64")]
impl Default for Lanes {
    fn default() -> Self {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            Lanes {
                stored: [_mm_setzero_si128(); 2],
                lo: [_mm_set1_pd(f64::INFINITY); 2],
                hi: [_mm_set1_pd(f64::NEG_INFINITY); 2],
                odd: _mm_setzero_pd(),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    /// Sees four values; returns them with -0.0 made +0.0 (what a tile holds for a zero).
    #[inline(always)]
    pub(super) fn see(&mut self, xs: [f64; 4]) -> [f64; 4] {
        use std::arch::x86_64::*;
        let mut out = [0.0; 4];
        // SAFETY: SSE2 is part of x86-64; loads and stores are unaligned ones within arrays of 4.
        unsafe {
            let (zero, nan) = (_mm_setzero_pd(), _mm_set1_pd(f64::NAN));
            for h in 0..2 {
                let v = _mm_loadu_pd(xs.as_ptr().add(2 * h));
                let nz = _mm_cmpneq_pd(v, zero);
                self.stored[h] = _mm_sub_epi64(self.stored[h], _mm_castpd_si128(nz));
                let a = _mm_or_pd(v, _mm_andnot_pd(nz, nan));
                self.lo[h] = _mm_min_pd(a, self.lo[h]);
                self.hi[h] = _mm_max_pd(a, self.hi[h]);
                self.odd = _mm_or_pd(self.odd, _mm_cmpnge_pd(v, zero));
                _mm_storeu_pd(out.as_mut_ptr().add(2 * h), _mm_and_pd(v, nz));
            }
        }
        out
    }

    /// Into `q` (`q.odd` when a lane saw a negative value or NaN).
    pub(super) fn add_to(&self, q: &mut Quick) {
        use std::arch::x86_64::*;
        let (mut st, mut lo, mut hi) = ([0u64; 4], [0.0; 4], [0.0; 4]);
        // SAFETY: SSE2 is part of x86-64; unaligned stores within arrays of 4.
        let odd = unsafe {
            for h in 0..2 {
                _mm_storeu_si128(st.as_mut_ptr().add(2 * h).cast(), self.stored[h]);
                _mm_storeu_pd(lo.as_mut_ptr().add(2 * h), self.lo[h]);
                _mm_storeu_pd(hi.as_mut_ptr().add(2 * h), self.hi[h]);
            }
            _mm_movemask_pd(self.odd) != 0
        };
        q.odd |= odd;
        let stored: u64 = st.iter().sum();
        if stored > 0 && !q.odd {
            for l in 0..4 {
                q.mn = if lo[l] < q.mn { lo[l] } else { q.mn };
                q.mx = if hi[l] > q.mx { hi[l] } else { q.mx };
            }
            q.stored += stored;
        }
    }
}

/// The portable [`Lanes`]: a [`Quick`] of its own.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Lanes(Quick);

#[cfg(not(target_arch = "x86_64"))]
impl Lanes {
    #[inline(always)]
    pub(super) fn see(&mut self, xs: [f64; 4]) -> [f64; 4] {
        xs.map(|x| {
            self.0.see_if(x, x != 0.0);
            if x != 0.0 {
                x
            } else {
                0.0
            }
        })
    }

    pub(super) fn add_to(&self, q: &mut Quick) {
        q.odd |= self.0.odd || self.0.mn < 0.0;
        if self.0.stored > 0 && !q.odd {
            q.mn = if self.0.mn < q.mn { self.0.mn } else { q.mn };
            q.mx = if self.0.mx > q.mx { self.0.mx } else { q.mx };
            q.stored += self.0.stored;
        }
    }
}

/// Whole numbers below this are looked up.
const TABLE: usize = 4096;

fn table() -> &'static [f64] {
    static T: OnceLock<Vec<f64>> = OnceLock::new();
    T.get_or_init(|| (0..TABLE).map(|i| (std::hint::black_box(i as f64) + 1.0).log2()).collect())
}

/// The optional `log2(x + 1)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tr(Option<&'static [f64]>);

impl Tr {
    pub(super) fn new(on: bool) -> Self {
        Tr(on.then(table))
    }

    #[inline]
    pub(super) fn on(self) -> bool {
        self.0.is_some()
    }

    #[inline(always)]
    pub(super) fn apply(self, x: f64) -> f64 {
        match self.0 {
            None => x,
            Some(t) => {
                let i = x as usize; // saturating: negatives and NaN give 0, which x does not equal
                if i < TABLE && i as f64 == x {
                    t[i]
                } else {
                    (x + 1.0).log2()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_the_bits_of_the_expression() {
        let tr = Tr::new(true);
        for x in [0.0, -0.0, 1.0, 2.0, 7.0, 4095.0, 4096.0, 1e6, 0.5, 3.25, -0.5, 1e-300] {
            assert_eq!(tr.apply(x).to_bits(), (x + 1.0).log2().to_bits(), "{x}");
        }
        for i in 0..TABLE {
            let x = i as f64;
            assert_eq!(tr.apply(x).to_bits(), (x + 1.0).log2().to_bits());
        }
        assert!(tr.apply(f64::NAN).is_nan());
        assert_eq!(Tr::new(false).apply(-0.0).to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn quick_flags_what_needs_naming() {
        let mut q = Quick::default();
        for x in [1.0, 3.0, 0.5] {
            q.see_if(x, true);
        }
        q.see_if(-1.0, false);
        assert!(q.clean() && (q.stored, q.mn, q.mx) == (3, 0.5, 3.0));
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let mut q = Quick::default();
            q.see_if(bad, true);
            assert!(!q.clean(), "{bad}");
        }
    }
}
