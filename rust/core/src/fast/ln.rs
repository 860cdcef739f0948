//! The natural logarithm of fast mode's line search, as plain branch-free arithmetic (fdlibm's
//! reduction and polynomial, error below 1 ulp) so that LLVM vectorises it across lanes and
//! every SIMD path, and every CPU, gives the same bits (a C library's `log` may differ between
//! machines and is called one value at a time).

// fdlibm's constants, as printed there.
#![allow(clippy::excessive_precision)]

use super::simd::{Lane, LANES};

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01; // 0x3fe62e42 fee00000
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10; // 0x3dea39ef 35793c76
const LG1: f64 = 6.666_666_666_666_735_130e-01;
const LG2: f64 = 3.999_999_999_940_941_908e-01;
const LG3: f64 = 2.857_142_874_366_239_149e-01;
const LG4: f64 = 2.222_219_843_214_978_396e-01;
const LG5: f64 = 1.818_357_216_161_805_012e-01;
const LG6: f64 = 1.531_383_769_920_937_332e-01;
const LG7: f64 = 1.479_819_860_511_658_591e-01;
/// 2^54, to bring subnormal inputs into the normal range.
const TWO54: f64 = 1.801_439_850_948_198_4e16;
/// 2^52 + 1023: turns the biased exponent placed in a mantissa into its value.
const EXP_MAGIC: f64 = 4_503_599_627_371_519.0;

/// `ln x` for finite `x > 0` (other inputs give a meaningless finite value or NaN: callers
/// mask them). Branch-free: both sides of every choice are computed and one is selected.
#[inline(always)]
pub(super) fn ln(x: f64) -> f64 {
    let small = x < f64::MIN_POSITIVE;
    let xs = if small { x * TWO54 } else { x };
    let bits = xs.to_bits();
    // Exponent (exactly, without an integer-to-float conversion) and mantissa m in [1, 2).
    let e = f64::from_bits(0x4330_0000_0000_0000 | ((bits >> 52) & 0x7ff)) - EXP_MAGIC;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // m in [sqrt(1/2), sqrt(2)).
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { m * 0.5 } else { m };
    let dk = e + if high { 1.0 } else { 0.0 } - if small { 54.0 } else { 0.0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
}

/// [`ln`] of every lane.
#[inline(always)]
pub(super) fn ln_lanes(x: &Lane) -> Lane {
    let mut out = Lane::ZERO;
    for l in 0..LANES {
        out[l] = ln(x[l]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ln;

    #[test]
    fn within_one_ulp_of_the_library_log() {
        let mut worst = 0u64;
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut check = |x: f64| {
            let (a, b) = (ln(x), x.ln());
            let ulps = (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
            assert!(ulps <= 1 || (a - b).abs() <= 1e-300, "ln({x:e}) = {a:e}, library {b:e}");
            worst = worst.max(ulps);
        };
        for x in
            [1.0, 2.0, 0.5, std::f64::consts::E, f64::MIN_POSITIVE, 5e-324, 1e-310, f64::MAX, 1.0 + 1e-15, 1.0 - 1e-16]
        {
            check(x);
        }
        for _ in 0..200_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Positive finite doubles over the whole range, and values near 1.
            let x = f64::from_bits((state >> 1) % 0x7fef_ffff_ffff_ffff + 1);
            check(x);
            check(1.0 + (x.fract() - 0.5) * 1e-3);
        }
        assert_eq!(ln(1.0), 0.0);
    }
}
