//! R's default random number generator, draw for draw.
//!
//! `set.seed(s)` with `RNGkind("Mersenne-Twister", "Inversion", "Rejection")` (R >= 3.6):
//! the seed is scrambled by a linear congruential generator into the 624-word Mersenne-Twister
//! state; `unif_rand` is MT19937 scaled to [0, 1) and pushed inside (0, 1); `sample.int`
//! draws indices by rejection from the next power of two, either with a partial Fisher-Yates
//! shuffle or (for `n > 1e7` and `k <= n / 2`) with rejection of repeats on a hash set.
//! State carries across calls exactly as in one R session.

use std::collections::HashSet;

use crate::error::{CoreError, Result};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;
const TEMPERING_MASK_B: u32 = 0x9d2c_5680;
const TEMPERING_MASK_C: u32 = 0xefc6_0000;
/// 1 / (2^32 - 1), R's `i2_32m1`.
const I2_32M1: f64 = 2.328_306_437_080_797e-10;
/// R's MT scale `2.3283064365386963e-10`, which is exactly 2^-32.
const TWO_POW_M32: f64 = 2.328_306_436_538_696_3e-10;
/// Largest `n` for which the Fisher-Yates path allocates its index vector.
const MAX_FISHER_YATES_N: f64 = 2_147_483_647.0;

/// R's Mersenne-Twister generator with R's seeding and sampling.
#[derive(Clone, Debug)]
pub struct RRandom {
    mt: [u32; N],
    mti: usize,
}

impl RRandom {
    /// The state after R's `set.seed(seed)`.
    pub fn new(seed: i32) -> Self {
        let mut s = seed as u32;
        // Initial scrambling.
        for _ in 0..50 {
            s = s.wrapping_mul(69069).wrapping_add(1);
        }
        // The first of R's 625 seed words is `mti`, overwritten by FixupSeeds.
        s = s.wrapping_mul(69069).wrapping_add(1);
        let mut mt = [0u32; N];
        for word in mt.iter_mut() {
            s = s.wrapping_mul(69069).wrapping_add(1);
            *word = s;
        }
        RRandom { mt, mti: N }
    }

    /// Regenerate the 624-word block (MT19937's twist), as R's `MT_genrand` does when `mti >= N`.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        #[inline(always)]
        fn twist(a: u32, b: u32, c: u32) -> u32 {
            let y = (a & UPPER_MASK) | (b & LOWER_MASK);
            c ^ (y >> 1) ^ ((y & 1).wrapping_neg() & MATRIX_A)
        }
        let mt = &mut self.mt;
        for kk in 0..N - M {
            mt[kk] = twist(mt[kk], mt[kk + 1], mt[kk + M]);
        }
        for kk in N - M..N - 1 {
            mt[kk] = twist(mt[kk], mt[kk + 1], mt[kk + M - N]);
        }
        mt[N - 1] = twist(mt[N - 1], mt[0], mt[M - 1]);
        self.mti = 0;
    }

    /// The next tempered 32-bit MT19937 output.
    #[inline(always)]
    fn next_u32(&mut self) -> u32 {
        if self.mti >= N {
            self.refill();
        }
        let mut y = self.mt[self.mti];
        self.mti += 1;
        y ^= y >> 11;
        y ^= (y << 7) & TEMPERING_MASK_B;
        y ^= (y << 15) & TEMPERING_MASK_C;
        y ^ (y >> 18)
    }

    /// R's `MT_genrand`: the next output scaled to [0, 1) by 2^-32 (exact).
    fn genrand(&mut self) -> f64 {
        f64::from(self.next_u32()) * TWO_POW_M32
    }

    /// R's `unif_rand()`: one uniform in the open interval (0, 1).
    pub fn unif_rand(&mut self) -> f64 {
        let x = self.genrand();
        if x <= 0.0 {
            0.5 * I2_32M1
        } else if 1.0 - x <= 0.0 {
            1.0 - 0.5 * I2_32M1
        } else {
            x
        }
    }

    /// R's `runif(n, min, max)`.
    pub fn runif(&mut self, n: usize, min: f64, max: f64) -> Result<Vec<f64>> {
        if !min.is_finite() || !max.is_finite() || max < min {
            return Err(CoreError::InvalidArgument(format!("runif needs finite min <= max, got min={min}, max={max}")));
        }
        if min == max {
            return Ok(vec![min; n]);
        }
        Ok((0..n)
            .map(|_| {
                let mut u = self.unif_rand();
                while u <= 0.0 || u >= 1.0 {
                    u = self.unif_rand();
                }
                min + (max - min) * u
            })
            .collect())
    }

    fn rbits(&mut self, bits: u32) -> f64 {
        let mut v: i64 = 0;
        let mut n = 0;
        while n <= bits {
            let v1 = (self.unif_rand() * 65536.0).floor() as i64;
            v = 65536 * v + v1;
            n += 16;
        }
        (v & ((1i64 << bits) - 1)) as f64
    }

    /// R's `R_unif_index(dn)` with "Rejection" sampling: uniform on 0..dn-1.
    pub fn unif_index(&mut self, dn: f64) -> f64 {
        if dn <= 0.0 {
            return 0.0;
        }
        let bits = dn.log2().ceil() as u32;
        loop {
            let dv = self.rbits(bits);
            if dn > dv {
                return dv;
            }
        }
    }

    /// [`Self::unif_index`] for `n` below 2^32, computed on the generator's integers: the same
    /// value from the same draws, several times faster.
    ///
    /// R draws `bits = ceil(log2(n))` bits 16 at a time, each chunk `floor(65536 * unif_rand())`,
    /// and rejects values `>= n`. `unif_rand()` is `u / 2^32` for the 32-bit output `u` (exact in
    /// a double; `u = 0` becomes `2^-33`-ish by R's fixup, whose chunk is 0 all the same), so a
    /// chunk is `u >> 16`; and `ceil(log2(n))` of a whole number is `32 - lzcnt(n - 1)`.
    #[inline]
    pub fn unif_index_u32(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let bits = 32 - (n - 1).leading_zeros();
        let mask = (1u64 << bits) - 1;
        loop {
            let mut v = u64::from(self.next_u32() >> 16);
            for _ in 0..bits / 16 {
                v = (v << 16) | u64::from(self.next_u32() >> 16);
            }
            let v = v & mask;
            if v < u64::from(n) {
                return v as u32;
            }
        }
    }

    /// R's `sample.int(n, k)` without replacement: `k` distinct values in 1..=n, 1-based, in
    /// drawn order. Uses R's hash-set algorithm when `n > 1e7` and `k <= n / 2`, otherwise
    /// the partial Fisher-Yates shuffle, as R does by default.
    pub fn sample_int(&mut self, n: f64, k: usize) -> Result<Vec<f64>> {
        if !n.is_finite() || n < 0.0 || n.fract() != 0.0 {
            return Err(CoreError::InvalidArgument(format!(
                "sample_int: n must be a non-negative whole number, got {n}"
            )));
        }
        if (k as f64) > n {
            return Err(CoreError::InvalidArgument(format!(
                "sample_int: cannot take a sample (k={k}) larger than the population (n={n}) \
                 without replacement"
            )));
        }
        let use_hash = n > 1e7 && (k as f64) <= n / 2.0;
        if use_hash {
            let mut seen: HashSet<u64> = HashSet::with_capacity(k);
            let mut out = Vec::with_capacity(k);
            for _ in 0..k {
                let mut v = 0.0;
                for _ in 0..100 {
                    v = self.unif_index(n) + 1.0;
                    if !seen.contains(&(v as u64)) {
                        break;
                    }
                }
                seen.insert(v as u64);
                out.push(v);
            }
            return Ok(out);
        }
        if n > MAX_FISHER_YATES_N {
            return Err(CoreError::InvalidArgument(format!(
                "sample_int: n={n} with k={k} > n/2 would need an index vector of n entries"
            )));
        }
        let mut left = n as usize;
        let mut x: Vec<u32> = (0..left as u32).collect();
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let j = self.unif_index(left as f64) as usize;
            out.push(f64::from(x[j]) + 1.0);
            left -= 1;
            x[j] = x[left];
        }
        Ok(out)
    }

    /// R's `sample.int(n, k, replace = TRUE)`: `k` values in 1..=n (1-based), each one
    /// `R_unif_index(n) + 1`.
    pub fn sample_int_replace(&mut self, n: f64, k: usize) -> Result<Vec<f64>> {
        if !n.is_finite() || n < 1.0 || n.fract() != 0.0 {
            return Err(CoreError::InvalidArgument(format!(
                "sample_int_replace: n must be a positive whole number, got {n}"
            )));
        }
        Ok((0..k).map(|_| self.unif_index(n) + 1.0).collect())
    }

    /// R's `norm_rand()` with `normal.kind = "Inversion"`: `qnorm` of a uniform built from two
    /// draws, `((int)(2^27 u1) + u2) / 2^27`.
    pub fn norm_rand(&mut self) -> f64 {
        const BIG: f64 = 134_217_728.0;
        let u = self.unif_rand();
        let u = (BIG * u).trunc() + self.unif_rand();
        qnorm(u / BIG, 0.0, 1.0)
    }

    /// R's `rnorm(n, mean, sd)`: `mean + sd * norm_rand()` (no draws when `sd == 0` or `mean`
    /// is infinite, as in R).
    pub fn rnorm(&mut self, n: usize, mean: f64, sd: f64) -> Result<Vec<f64>> {
        if mean.is_nan() || !sd.is_finite() || sd < 0.0 {
            return Err(CoreError::InvalidArgument(format!(
                "rnorm needs a mean and a finite sd >= 0, got mean={mean}, sd={sd}"
            )));
        }
        if sd == 0.0 || !mean.is_finite() {
            return Ok(vec![mean; n]);
        }
        Ok((0..n).map(|_| mean + sd * self.norm_rand()).collect())
    }

    /// R's `sample(x, k)` for a vector of length > 1: `x[sample.int(length(x), k)]`.
    pub fn sample<T: Clone>(&mut self, x: &[T], k: usize) -> Result<Vec<T>> {
        let idx = self.sample_int(x.len() as f64, k)?;
        Ok(idx.iter().map(|&i| x[i as usize - 1].clone()).collect())
    }
}

/// R's `qnorm(p, mu, sigma)` (lower tail, `p` not on the log scale): Wichura's algorithm AS 241
/// (PPND16) as in R's nmath, accurate to about 1e-16 relative. The coefficients are written as
/// published (more digits than a double holds) so that they round to the same doubles.
#[allow(clippy::excessive_precision)]
pub fn qnorm(p: f64, mu: f64, sigma: f64) -> f64 {
    if p.is_nan() || mu.is_nan() || sigma.is_nan() || !(0.0..=1.0).contains(&p) || sigma < 0.0 {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if sigma == 0.0 {
        return mu;
    }
    let q = p - 0.5;
    let val = if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        q * (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
            + 45921.953931549871457)
            * r
            + 13731.693765509461125)
            * r
            + 1971.5909503065514427)
            * r
            + 133.14166789178437745)
            * r
            + 3.387132872796366608)
            / (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                + 21213.794301586595867)
                * r
                + 5394.1960214247511077)
                * r
                + 687.1870074920579083)
                * r
                + 42.313330701600911252)
                * r
                + 1.)
    } else {
        let r = if q < 0.0 { p } else { 1.0 - p };
        let mut r = (-r.ln()).sqrt();
        let v = if r <= 5.0 {
            r += -1.6;
            (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r
                + 1.27045825245236838258)
                * r
                + 3.64784832476320460504)
                * r
                + 5.7694972214606914055)
                * r
                + 4.6303378461565452959)
                * r
                + 1.42343711074968357734)
                / (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966)
                    * r
                    + 0.14810397642748007459)
                    * r
                    + 0.68976733498510000455)
                    * r
                    + 1.6763848301838038494)
                    * r
                    + 2.05319162663775882187)
                    * r
                    + 1.)
        } else {
            r += -5.;
            (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r
                + 0.026532189526576123093)
                * r
                + 0.29656057182850489123)
                * r
                + 1.7848265399172913358)
                * r
                + 5.4637849111641143699)
                * r
                + 6.6579046435011037772)
                / (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5)
                    * r
                    + 7.868691311456132591e-4)
                    * r
                    + 0.0148753612908506148525)
                    * r
                    + 0.13692988092273580531)
                    * r
                    + 0.59983220655588793769)
                    * r
                    + 1.)
        };
        if q < 0.0 {
            -v
        } else {
            v
        }
    };
    mu + sigma * val
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unif_is_inside_open_interval() {
        let mut r = RRandom::new(1);
        for _ in 0..10_000 {
            let u = r.unif_rand();
            assert!(u > 0.0 && u < 1.0);
        }
    }

    #[test]
    fn sample_int_is_a_permutation_prefix() {
        let mut r = RRandom::new(2024);
        let s = r.sample_int(50.0, 50).unwrap();
        let mut sorted: Vec<u64> = s.iter().map(|&v| v as u64).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=50).collect::<Vec<u64>>());
    }

    #[test]
    fn rnorm_matches_r() {
        // R 4.2: set.seed(1); print(rnorm(5), digits = 17)
        let mut r = RRandom::new(1);
        let got = r.rnorm(5, 0.0, 1.0).unwrap();
        let want =
            [-0.6264538107423324, 0.18364332422208224, -0.8356286124100472, 1.5952808021377916, 0.3295077718153605];
        // printed with 17 digits by R; these are the same doubles
        assert_eq!(got, want);
    }

    #[test]
    fn qnorm_tails_and_boundaries() {
        assert_eq!(qnorm(0.5, 0.0, 1.0), 0.0);
        assert!((qnorm(0.975, 0.0, 1.0) - 1.959963984540054).abs() < 1e-15);
        assert!((qnorm(0.025, 2.0, 1.0) - (2.0 - 1.959963984540054)).abs() < 1e-15);
        assert!((qnorm(1e-20, 0.0, 1.0) + 9.262340089798408).abs() < 1e-13);
        assert!((qnorm(1e-5, 0.0, 1.0) + 4.264890793922825).abs() < 1e-14);
        assert_eq!(qnorm(0.0, 0.0, 1.0), f64::NEG_INFINITY);
        assert_eq!(qnorm(1.0, 0.0, 1.0), f64::INFINITY);
        assert!(qnorm(1.5, 0.0, 1.0).is_nan());
    }

    #[test]
    fn sample_with_replacement_uses_unif_index() {
        let mut a = RRandom::new(7);
        let mut b = RRandom::new(7);
        let s = a.sample_int_replace(13.0, 200).unwrap();
        for &v in &s {
            assert_eq!(v, b.unif_index(13.0) + 1.0);
        }
        assert!(s.iter().all(|&v| (1.0..=13.0).contains(&v)));
        assert!(a.sample_int_replace(0.0, 1).is_err());
    }

    #[test]
    fn mt_scale_is_two_to_minus_32() {
        assert_eq!(TWO_POW_M32, 2f64.powi(-32));
    }

    #[test]
    fn unif_index_u32_equals_unif_index() {
        // Every n up to 70,000 (both one- and two-chunk draws, every power-of-two boundary
        // below 2^17), then values around each power of two up to 2^32 - 1; the two
        // generators must give the same values and stay in step.
        let mut ns: Vec<u32> = (0..70_000).collect();
        for b in 17..=32u64 {
            for d in [-3i64, -2, -1, 0, 1, 2, 3] {
                let n = (1i64 << b) + d;
                if (0..=i64::from(u32::MAX)).contains(&n) {
                    ns.push(n as u32);
                }
            }
        }
        ns.extend([1_000_000, 111_111, 123_456_789, 2_147_483_647, u32::MAX]);
        let mut a = RRandom::new(42);
        let mut b = RRandom::new(42);
        for &n in &ns {
            for _ in 0..3 {
                assert_eq!(f64::from(a.unif_index_u32(n)), b.unif_index(f64::from(n)), "n = {n}");
            }
        }
        assert_eq!(a.unif_rand(), b.unif_rand());
    }

    #[test]
    fn k_larger_than_n_is_an_error() {
        let mut r = RRandom::new(1);
        assert!(r.sample_int(3.0, 4).is_err());
        assert!(r.sample_int(-1.0, 0).is_err());
        assert!(r.sample_int(2.5, 1).is_err());
    }
}
