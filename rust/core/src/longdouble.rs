//! Just enough x87 80-bit extended precision ("long double" on x86-64 Linux) to reproduce R's
//! long-double sums and means bit for bit: R's `rowMeans` and matrixStats' `rowMeans2`
//! accumulate doubles in long double, divide by the count in long double, then round to
//! double. A double-double or exact sum is *more* precise and gives other bits (a constant
//! gene's mean of 0.7 over 150 cells is not exactly 0.7 in R).
//!
//! Values are sign, a 64-bit significand with explicit leading bit, and a binary exponent;
//! every operation rounds to nearest, ties to even, as the x87 FPU does in extended mode.

/// An x87 extended-precision value: `(-1)^neg * mant * 2^exp`, `mant` normalised (top bit
/// set) unless the value is zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F80 {
    neg: bool,
    exp: i32,
    mant: u64,
}

impl F80 {
    pub const ZERO: F80 = F80 { neg: false, exp: 0, mant: 0 };

    /// Exact conversion of a finite double.
    pub fn from_f64(x: f64) -> F80 {
        if x == 0.0 {
            return F80::ZERO;
        }
        let bits = x.to_bits();
        let neg = bits >> 63 == 1;
        let e = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        let (m, e2) = if e == 0 { (frac, -1074) } else { (frac | (1u64 << 52), e - 1075) };
        let lz = m.leading_zeros() as i32;
        F80 { neg, exp: e2 - lz, mant: m << lz }
    }

    /// Round a (value = m * 2^exp, with `sticky` meaning non-zero bits below m) to 64 bits.
    fn normalise(neg: bool, m: u128, exp: i32, sticky: bool) -> F80 {
        if m == 0 {
            return F80::ZERO;
        }
        let bitlen = 128 - m.leading_zeros() as i32;
        if bitlen <= 64 {
            let sh = 64 - bitlen;
            return F80 { neg, exp: exp - sh, mant: (m << sh) as u64 };
        }
        let sh = bitlen - 64;
        let kept = (m >> sh) as u64;
        let rem = m & ((1u128 << sh) - 1);
        let half = 1u128 << (sh - 1);
        let round_up = rem > half || (rem == half && (sticky || kept & 1 == 1));
        let (mut mant, mut e) = (kept, exp + sh);
        if round_up {
            let (v, overflow) = mant.overflowing_add(1);
            if overflow {
                mant = 1u64 << 63;
                e += 1;
            } else {
                mant = v;
            }
        }
        F80 { neg, exp: e, mant }
    }

    /// `self + other`, rounded to extended precision.
    fn sum(self, other: F80) -> F80 {
        if other.mant == 0 {
            return self;
        }
        if self.mant == 0 {
            return other;
        }
        let (a, b) = if self.exp >= other.exp { (self, other) } else { (other, self) };
        // Work with 64 guard bits below the larger operand's significand.
        let am = (a.mant as u128) << 63;
        let d = (a.exp - b.exp) as u32;
        let (bm, sticky) = if d >= 127 {
            (0u128, true)
        } else {
            let full = (b.mant as u128) << 63;
            let shifted = full >> d;
            (shifted, shifted << d != full)
        };
        let exp = a.exp - 63;
        if a.neg == b.neg {
            F80::normalise(a.neg, am + bm, exp, sticky)
        } else if am > bm || (am == bm && sticky) {
            // A sticky remainder on the subtrahend lowers the result by less than one unit
            // of the last guard bit: subtract one guard unit and keep the sticky flag.
            let diff = am - bm - u128::from(sticky);
            F80::normalise(a.neg, diff, exp, sticky)
        } else if am == bm {
            F80::ZERO
        } else {
            F80::normalise(b.neg, bm - am, exp, sticky)
        }
    }

    /// `self / n` for a positive whole `n`, rounded to extended precision.
    pub fn div_u64(self, n: u64) -> F80 {
        if self.mant == 0 {
            return F80::ZERO;
        }
        let num = (self.mant as u128) << 64;
        let q = num / n as u128;
        let r = num % n as u128;
        F80::normalise(self.neg, q, self.exp - 64, r != 0)
    }

    /// Round to the nearest double (ties to even).
    pub fn to_f64(self) -> f64 {
        if self.mant == 0 {
            return 0.0;
        }
        // Value = mant * 2^exp with mant in [2^63, 2^64): round to 53 significant bits.
        let kept = self.mant >> 11;
        let rem = self.mant & 0x7ff;
        let mut m = kept;
        if rem > 0x400 || (rem == 0x400 && kept & 1 == 1) {
            m += 1;
        }
        let mut e = self.exp + 11;
        if m == 1u64 << 53 {
            m >>= 1;
            e += 1;
        }
        let biased = e + 52 + 1023;
        let v = if biased >= 2047 {
            f64::INFINITY
        } else if biased >= 1 {
            f64::from_bits(((biased as u64) << 52) | (m & ((1u64 << 52) - 1)))
        } else {
            // Subnormal result: scale in two exact steps (may round twice; R never gets here
            // for expression data).
            (m as f64) * 2f64.powi(e + 600) * 2f64.powi(-600)
        };
        if self.neg {
            -v
        } else {
            v
        }
    }
}

impl std::ops::Add for F80 {
    type Output = F80;

    /// Extended-precision addition, rounded to nearest (ties to even) as the x87 FPU does.
    fn add(self, other: F80) -> F80 {
        self.sum(other)
    }
}

/// Sum doubles in order in extended precision (R's `LDOUBLE` accumulators, e.g. `colSums`).
pub fn ld_sum<I: IntoIterator<Item = f64>>(values: I) -> F80 {
    values.into_iter().fold(F80::ZERO, |acc, v| acc + F80::from_f64(v))
}

/// R's long-double mean: sum the values in order in extended precision, divide by their
/// count in extended precision, round to double.
pub fn ld_mean<I: IntoIterator<Item = f64>>(values: I, n: usize) -> f64 {
    ld_sum(values).div_u64(n as u64).to_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_doubles() {
        for &x in &[1.0, -2.5, 0.7, 1e-300, 2.2250738585072014e-308, 1.7976931348623157e308, 1.0 / 3.0] {
            assert_eq!(F80::from_f64(x).to_f64(), x);
        }
    }

    #[test]
    fn small_sums_are_exact_like_the_fpu() {
        let s = F80::from_f64(0.1) + F80::from_f64(0.2);
        // In extended precision 0.1 + 0.2 rounds to the double 0.30000000000000004 only
        // after the final rounding; the exact sum of the two doubles fits in 64 bits.
        assert_eq!(s.to_f64(), 0.30000000000000004);
        assert_eq!((F80::from_f64(1.0) + F80::from_f64(-1.0)).to_f64(), 0.0);
        assert_eq!(F80::from_f64(3.0).div_u64(3).to_f64(), 1.0);
    }

    #[test]
    fn cancellation_keeps_small_terms() {
        let s = F80::from_f64(1e18) + F80::from_f64(1.0) + F80::from_f64(-1e18);
        assert_eq!(s.to_f64(), 1.0);
        // ... but 64 bits are not enough to hold 1e20 + 1: the FPU rounds the 1 away.
        let s = F80::from_f64(1e20) + F80::from_f64(1.0) + F80::from_f64(-1e20);
        assert_eq!(s.to_f64(), 0.0);
    }

    #[test]
    fn mean_of_integers() {
        assert_eq!(ld_mean([1.0, 2.0, 3.0, 4.0], 4), 2.5);
    }
}
