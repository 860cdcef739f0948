//! Training's per-SE statistics of the posneg features, without building posneg.
//!
//! With a 0/1 membership H, R's W-steps converge to the per-SE means of the posneg features
//! (METHOD.md 1.3), and the zero-variance filter is decided by each gene's range over the cells
//! (posneg is monotone). [`column_ranges`] gives the ranges and [`posneg_group_sums`] the sums
//! of `max(z, 0)` and `max(-z, 0)` per group of cells, reading only the rows they are given.
//!
//! The sums are added as `numpy.add.reduceat` adds the rows of a C-order matrix (the first
//! row, plus numpy's pairwise sum of the others: blocks of at most 128 terms summed in 8
//! interleaved partial sums), so their bits are those of the earlier numpy implementation
//! (and of the closed form the tests check against R).

use ndarray::{Array2, ArrayView2};

use crate::error::{CoreError, Result};

/// numpy's pairwise-summation block (`PW_BLOCKSIZE`).
const BLOCK: usize = 128;

/// Minimum and maximum of every column over `rows` (NaN counted as 0). Empty `rows`: zeros.
pub fn column_ranges(z: ArrayView2<f64>, rows: &[usize]) -> Result<(Vec<f64>, Vec<f64>)> {
    check_rows(z, rows)?;
    let g = z.ncols();
    let Some(&first) = rows.first() else { return Ok((vec![0.0; g], vec![0.0; g])) };
    let z = z.as_standard_layout();
    let row = |r: usize| &z.as_slice().expect("standard layout")[r * g..(r + 1) * g];
    let (mut lo, mut hi): (Vec<f64>, Vec<f64>) = row(first).iter().map(|&v| (no_nan(v), no_nan(v))).unzip();
    for &r in &rows[1..] {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row(r)) {
            let v = no_nan(v);
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    Ok((lo, hi))
}

/// Per-group sums over the rows of `z`: group `a` is `rows[starts[a]..starts[a + 1]]` (the last
/// one runs to the end). Returns `(pos, neg)`, groups x columns: the sums of `max(z, 0)` and of
/// `max(-z, 0)` (NaN counted as 0), each added as `numpy.add.reduceat` adds rows. Every row is
/// read once, whole (rows come in any order; a column-wise walk would miss the cache).
pub fn posneg_group_sums(z: ArrayView2<f64>, rows: &[usize], starts: &[usize]) -> Result<(Array2<f64>, Array2<f64>)> {
    check_rows(z, rows)?;
    if starts.windows(2).any(|w| w[0] >= w[1]) || starts.last().is_some_and(|&s| s >= rows.len()) {
        return Err(CoreError::InvalidArgument("group starts must increase and stay below the number of rows".into()));
    }
    let (k, g) = (starts.len(), z.ncols());
    let z = z.as_standard_layout();
    let z = z.as_slice().expect("standard layout");
    // Serial: training runs many of these at once, one per thread.
    let sums: Vec<Vec<f64>> = (0..k)
        .map(|a| {
            let group = &rows[starts[a]..starts.get(a + 1).copied().unwrap_or(rows.len())];
            let mut s = Sums::new(z, g);
            let mut out = vec![0.0; 2 * g];
            s.row(group[0], &mut out); // numpy's reduce: the first row ...
            let rest = s.pairwise(&group[1..], 0);
            out.iter_mut().zip(&s.levels[rest]).for_each(|(o, r)| *o += r); // ... plus the others
            out
        })
        .collect();
    let (mut pos, mut neg) = (Array2::zeros((k, g)), Array2::zeros((k, g)));
    for (a, s) in sums.iter().enumerate() {
        pos.row_mut(a).iter_mut().zip(&s[..g]).for_each(|(o, &v)| *o = v);
        neg.row_mut(a).iter_mut().zip(&s[g..]).for_each(|(o, &v)| *o = v);
    }
    Ok((pos, neg))
}

fn check_rows(z: ArrayView2<f64>, rows: &[usize]) -> Result<()> {
    match rows.iter().find(|&&r| r >= z.nrows()) {
        Some(r) => Err(CoreError::Shape(format!("row {r} out of range for {} rows", z.nrows()))),
        None => Ok(()),
    }
}

/// `(max(v, 0), max(-v, 0))`, +0.0 for zeros of either sign and NaN (two selects, which
/// vectorise).
#[inline(always)]
fn split(v: f64) -> (f64, f64) {
    (if v > 0.0 { v } else { 0.0 }, if v < 0.0 { -v } else { 0.0 })
}

#[inline(always)]
fn no_nan(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// numpy's pairwise sums of whole rows of `[max(z, 0) | max(-z, 0)]` (2g columns).
struct Sums<'a> {
    /// `z` in C order.
    z: &'a [f64],
    g: usize,
    /// One 2g-row per level of the recursion (the result of a call at depth d is `levels[d]`).
    levels: Vec<Vec<f64>>,
    /// The 8 partial sums of a block.
    part: Vec<f64>,
}

impl<'a> Sums<'a> {
    fn new(z: &'a [f64], g: usize) -> Self {
        Sums { z, g, levels: Vec::new(), part: vec![0.0; 16 * g] }
    }

    /// `[max(z_r, 0) | max(-z_r, 0)]` into `out` (+0.0 for zeros and NaN).
    #[inline]
    fn row(&self, r: usize, out: &mut [f64]) {
        let (pos, neg) = out.split_at_mut(self.g);
        for ((p, q), &v) in pos.iter_mut().zip(neg.iter_mut()).zip(&self.z[r * self.g..(r + 1) * self.g]) {
            (*p, *q) = split(v);
        }
    }

    /// Adds `[max(z_r, 0) | max(-z_r, 0)]` to `acc` (the terms of [`Sums::row`], added as such).
    #[inline]
    fn add_row(&self, r: usize, acc: &mut [f64]) {
        let (pos, neg) = acc.split_at_mut(self.g);
        for ((p, q), &v) in pos.iter_mut().zip(neg.iter_mut()).zip(&self.z[r * self.g..(r + 1) * self.g]) {
            let (a, b) = split(v);
            *p += a;
            *q += b;
        }
    }

    /// numpy's `pairwise_sum` (loops.c.src) of the rows `rows`, every column at once; the
    /// result is left in `levels[depth]`, whose index is returned.
    fn pairwise(&mut self, rows: &[usize], depth: usize) -> usize {
        let w = 2 * self.g;
        while self.levels.len() <= depth {
            self.levels.push(vec![0.0; w]);
        }
        let n = rows.len();
        if n > BLOCK {
            let half = n / 2 - (n / 2) % 8;
            self.pairwise(&rows[..half], depth + 1);
            let left = std::mem::replace(&mut self.levels[depth + 1], vec![0.0; w]);
            self.pairwise(&rows[half..], depth + 1);
            let (upper, lower) = self.levels.split_at_mut(depth + 1);
            let (out, right) = (&mut upper[depth], &lower[0]);
            out.iter_mut().zip(left.iter().zip(right)).for_each(|(o, (l, r))| *o = l + r);
            return depth;
        }
        let mut out = std::mem::take(&mut self.levels[depth]);
        out.iter_mut().for_each(|o| *o = 0.0);
        if n < 8 {
            rows.iter().for_each(|&r| self.add_row(r, &mut out));
        } else {
            let mut part = std::mem::take(&mut self.part);
            let whole = n - n % 8;
            for (i, &r) in rows[..whole].iter().enumerate() {
                let acc = &mut part[(i % 8) * w..(i % 8 + 1) * w];
                if i < 8 {
                    self.row(r, acc);
                } else {
                    self.add_row(r, acc);
                }
            }
            let p = |j: usize, c: usize| part[j * w + c];
            for (c, o) in out.iter_mut().enumerate() {
                *o = ((p(0, c) + p(1, c)) + (p(2, c) + p(3, c))) + ((p(4, c) + p(5, c)) + (p(6, c) + p(7, c)));
            }
            rows[whole..].iter().for_each(|&r| self.add_row(r, &mut out));
            self.part = part;
        }
        self.levels[depth] = out;
        depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ranges_count_nan_as_zero_and_read_only_the_rows_given() {
        let z = array![[1.0, f64::NAN], [-2.0, 3.0], [100.0, -100.0]];
        let (lo, hi) = column_ranges(z.view(), &[1, 0]).unwrap();
        assert_eq!((lo, hi), (vec![-2.0, 0.0], vec![1.0, 3.0]));
        assert!(column_ranges(z.view(), &[3]).is_err());
    }

    #[test]
    fn small_groups_are_plain_sums_of_the_two_halves() {
        let z = array![[1.0, -0.5], [-2.0, 0.25], [4.0, f64::NAN]];
        let (pos, neg) = posneg_group_sums(z.view(), &[2, 0, 1], &[0, 2]).unwrap();
        assert_eq!(pos, array![[5.0, 0.0], [0.0, 0.25]]);
        assert_eq!(neg, array![[0.0, 0.5], [2.0, 0.0]]);
        assert!(posneg_group_sums(z.view(), &[0, 1], &[1, 1]).is_err());
        assert!(posneg_group_sums(z.view(), &[0, 1], &[0, 2]).is_err());
    }

    #[test]
    fn long_groups_follow_the_pairwise_order() {
        // Terms whose sum depends on the order: 1 + 300 tiny values.
        let n = 301;
        let z = Array2::from_shape_fn((n, 1), |(i, _)| if i == 0 { 1.0 } else { 1e-16 * (1 + i % 3) as f64 });
        let rows: Vec<usize> = (0..n).collect();
        let (pos, _) = posneg_group_sums(z.view(), &rows, &[0]).unwrap();
        let col: Vec<f64> = z.column(0).to_vec();
        assert_eq!(pos[[0, 0]].to_bits(), (col[0] + numpy_pairwise(&col[1..])).to_bits());
        let sequential = col.iter().fold(0.0, |s, v| s + v);
        assert_ne!(pos[[0, 0]].to_bits(), sequential.to_bits());
    }

    #[test]
    fn every_group_size_matches_numpy_column_by_column() {
        // Groups of 1..=300 rows in a shuffled row order, both signs, a NaN: each column of each
        // group is the first term plus numpy's pairwise sum of the others.
        let sizes: Vec<usize> = (1..=300).step_by(7).chain([128, 129, 136, 257, 300]).collect();
        let n: usize = sizes.iter().sum();
        let mut unit = crate::testing::uniform(0x9E37_79B9_7F4A_7C15);
        let mut z = Array2::from_shape_fn((n, 5), |_| (unit() - 0.4) * 10f64.powi((unit() * 6.0) as i32));
        z[[3, 2]] = f64::NAN;
        let mut rows: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            rows.swap(i, (unit() * (i + 1) as f64) as usize % (i + 1));
        }
        let starts: Vec<usize> = sizes.iter().scan(0, |acc, &m| Some(std::mem::replace(acc, *acc + m))).collect();
        let (pos, neg) = posneg_group_sums(z.view(), &rows, &starts).unwrap();
        for (a, (&s0, &m)) in starts.iter().zip(&sizes).enumerate() {
            for c in 0..5 {
                let vals: Vec<f64> = rows[s0..s0 + m].iter().map(|&r| z[[r, c]]).collect();
                let half = |f: fn(f64) -> f64| -> Vec<f64> {
                    vals.iter().map(|&v| if v.is_nan() { 0.0 } else { f(v) }).collect()
                };
                for (got, terms) in [(pos[[a, c]], half(|v| v.max(0.0))), (neg[[a, c]], half(|v| (-v).max(0.0)))] {
                    assert_eq!(
                        got.to_bits(),
                        (terms[0] + numpy_pairwise(&terms[1..])).to_bits(),
                        "group {a} ({m} rows), column {c}"
                    );
                }
            }
        }
    }

    /// numpy's pairwise sum written as in its C source, one column.
    fn numpy_pairwise(x: &[f64]) -> f64 {
        let n = x.len();
        if n < 8 {
            return x.iter().fold(0.0, |s, v| s + v);
        }
        if n > BLOCK {
            let n2 = n / 2 - (n / 2) % 8;
            return numpy_pairwise(&x[..n2]) + numpy_pairwise(&x[n2..]);
        }
        let mut r: [f64; 8] = x[..8].try_into().unwrap();
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += x[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &x[i..] {
            res += v;
        }
        res
    }
}
