//! Random test data shared by `tests/gather.rs` and `examples/gather_kernels.rs`.
#![allow(dead_code)] // each user takes its own subset

use ndarray::Array2;

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unif(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random cells x genes matrix of small integers / fractions, mostly zeros.
pub fn random(rng: &mut Rng, n: usize, p: usize, density: f64, ints: bool) -> Array2<f64> {
    Array2::from_shape_fn((n, p), |_| {
        if rng.unif() >= density {
            0.0
        } else if ints {
            (1 + rng.below(200)) as f64
        } else {
            rng.unif() * 5.0
        }
    })
}

/// CSR arrays (indptr, indices, data) of a dense matrix.
pub fn csr(x: &Array2<f64>) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let (mut p, mut i, mut d) = (vec![0], vec![], vec![]);
    for row in x.rows() {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                i.push(j as i64);
                d.push(v);
            }
        }
        p.push(d.len() as i64);
    }
    (p, i, d)
}
