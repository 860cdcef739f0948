//! The accumulators of the sparse scaling passes: one cell per (group, slot) holding all a
//! pass adds to (pass 1: sum, min, max, count; pass 2: squared deviations and the mean), so an
//! added value touches one cache line, and [`Parts`], the cells of a few slot sets, one per
//! task, group-major with a dummy slot (and a dummy group) that takes what is not read.

use super::stats::Moments;

/// A (group, slot) accumulator; `add` takes a transformed value and skips zeros.
pub(super) trait Cell: Copy + Default + Send + Sync {
    fn add(&mut self, v: f64);
}

/// Pass 1: the sum in cell order, min, max and count of the non-zeros.
#[derive(Clone, Copy, Debug)]
#[repr(align(32))]
pub(super) struct M1 {
    sum: f64,
    lo: f64,
    hi: f64,
    nnz: i64,
}

impl Default for M1 {
    fn default() -> Self {
        M1 { sum: 0.0, lo: f64::INFINITY, hi: f64::NEG_INFINITY, nnz: 0 }
    }
}

impl Cell for M1 {
    #[inline(always)]
    fn add(&mut self, v: f64) {
        if v != 0.0 {
            self.sum += v;
            self.nnz += 1;
            if v < self.lo {
                self.lo = v;
            }
            if v > self.hi {
                self.hi = v;
            }
        }
    }
}

/// Pass 2: the squared deviations of the non-zeros from `mu`, in cell order.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(16))]
pub(super) struct M2 {
    sq: f64,
    mu: f64,
}

impl Cell for M2 {
    #[inline(always)]
    fn add(&mut self, v: f64) {
        if v != 0.0 {
            let d = v - self.mu;
            self.sq += d * d;
        }
    }
}

/// The cells of slot sets: part `p` holds `(g_n + 1) x (slots[p].len() + 1)` cells, index
/// `g * stride + j` for its `j`-th slot; the last group and the last slot are dummies.
pub(super) struct Parts<C> {
    pub slots: Vec<Vec<usize>>,
    pub cells: Vec<Vec<C>>,
    g_n: usize,
}

impl<C: Cell> Parts<C> {
    /// Cells loaded with `load(group, slot)`.
    pub fn new(slots: Vec<Vec<usize>>, g_n: usize, load: impl Fn(usize, usize) -> C) -> Self {
        let cells = slots
            .iter()
            .map(|sl| {
                let stride = sl.len() + 1;
                let mut c = vec![C::default(); (g_n + 1) * stride];
                for g in 0..g_n {
                    for (j, &s) in sl.iter().enumerate() {
                        c[g * stride + j] = load(g, s);
                    }
                }
                c
            })
            .collect();
        Parts { slots, cells, g_n }
    }

    /// Hands every real cell to `put(group, slot, cell)`.
    pub fn store(&self, mut put: impl FnMut(usize, usize, &C)) {
        for (sl, c) in self.slots.iter().zip(&self.cells) {
            let stride = sl.len() + 1;
            for g in 0..self.g_n {
                for (j, &s) in sl.iter().enumerate() {
                    put(g, s, &c[g * stride + j]);
                }
            }
        }
    }
}

/// Pass-1 parts loaded from the caller's accumulators (`k` slots).
pub(super) fn load1(slots: Vec<Vec<usize>>, g_n: usize, k: usize, acc: &Moments) -> Parts<M1> {
    Parts::new(slots, g_n, |g, s| {
        let a = g * k + s;
        M1 { sum: acc.sum[a], lo: acc.lo[a], hi: acc.hi[a], nnz: acc.nnz[a] }
    })
}

/// Pass-1 parts back into the caller's accumulators.
pub(super) fn store1(parts: &Parts<M1>, k: usize, acc: &mut Moments) {
    parts.store(|g, s, c| {
        let a = g * k + s;
        (acc.sum[a], acc.lo[a], acc.hi[a], acc.nnz[a]) = (c.sum, c.lo, c.hi, c.nnz);
    });
}

/// Pass-2 parts from the caller's squares and means.
pub(super) fn load2(slots: Vec<Vec<usize>>, g_n: usize, k: usize, sq: &[f64], mean: &[f64]) -> Parts<M2> {
    Parts::new(slots, g_n, |g, s| M2 { sq: sq[g * k + s], mu: mean[g * k + s] })
}

/// Pass-2 parts back into the caller's squares.
pub(super) fn store2(parts: &Parts<M2>, k: usize, sq: &mut [f64]) {
    parts.store(|g, s, c| sq[g * k + s] = c.sq);
}
