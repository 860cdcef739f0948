//! The scaling passes over CSC input, column by column in parallel: each read column's
//! entries within the row range (two searches when its rows are sorted) are walked in row
//! order, so a slot's sums are taken in cell order whatever the split. Pass 1 first sweeps the
//! columns for the checks, the scan and the per-cell "fewer than 3 genes" counts (per-task
//! counters, added up), then adds the entries to the (group, slot) cells.

use std::ops::Range;

use rayon::prelude::*;

use super::cells::{load1, load2, store1, store2, Cell, Parts};
use super::stats::Moments;
use super::{bad_index, dup, unsorted, Columns, Index, Quick, Scan, Sparse, Tr, Value, EXPRESSED, MIN_GENES_EXPRESSED};
use crate::error::Result;

/// What every column of a pass needs.
struct Csc<'a, T, I> {
    sp: &'a Sparse<'a, T, I>,
    n_rows: usize,
    rows: Range<usize>,
    cols: &'a Columns,
    tr: Tr,
}

/// Contiguous slot chunks, a few per thread.
fn chunks(k: usize) -> Vec<Vec<usize>> {
    let n = (4 * rayon::current_num_threads()).clamp(1, k.max(1));
    let w = k.div_ceil(n).max(1);
    (0..k).step_by(w).map(|s0| (s0..(s0 + w).min(k)).collect()).collect()
}

impl<T: Value, I: Index> Csc<'_, T, I> {
    /// Calls `f(row - rows.start, raw value)` for the entries of column `c` within the rows, in
    /// order; checks the indices (in range, each row once: `stamp` marked with `tag` when the
    /// rows are not sorted, else ascending).
    #[inline]
    fn walk(&self, c: usize, stamp: &mut [u32], tag: u32, mut f: impl FnMut(usize, f64)) -> Result<()> {
        let (r0, n) = (self.rows.start, self.rows.len());
        let key = |i: &I| i.to_index().unwrap_or(usize::MAX);
        let mut span = self.sp.range(c);
        if self.sp.sorted {
            let idx = &self.sp.indices[span.clone()];
            let a = idx.partition_point(|i| key(i) < r0);
            let b = a + idx[a..].partition_point(|i| key(i) < self.rows.end);
            span = span.start + a..span.start + b;
        }
        let mut prev = 0;
        for p in span {
            let r = key(&self.sp.indices[p]);
            if r >= self.n_rows {
                return Err(bad_index(p, self.n_rows));
            }
            let i = r.wrapping_sub(r0);
            if self.sp.sorted {
                if (r < prev) | (i >= n) {
                    return Err(if r + 1 == prev { dup(r, c) } else { unsorted(c) });
                }
                prev = r + 1;
            } else {
                if i >= n {
                    continue;
                }
                if stamp[i] == tag {
                    return Err(dup(r, c));
                }
                stamp[i] = tag;
            }
            f(i, self.sp.data[p].to_f64());
        }
        Ok(())
    }

    fn stamps(&self) -> Vec<u32> {
        vec![0; if self.sp.sorted { 0 } else { self.rows.len() }]
    }

    /// Checks and scans every read column; with `count`, how many slots each row expresses.
    fn sweep(&self, count: bool) -> Result<(Scan, Vec<u32>)> {
        let (n, k, tr) = (self.rows.len(), self.cols.len(), self.tr);
        let fresh = || (Scan::default(), vec![0u32; if count { n } else { 0 }], self.stamps());
        let (scan, counts, _) = (0..k)
            .into_par_iter()
            .with_min_len(16)
            .try_fold(fresh, |(mut scan, mut counts, mut stamp), s| {
                let (c, mut q) = (self.cols.cols[s], Quick::default());
                self.walk(c, &mut stamp, s as u32 + 1, |i, x| {
                    q.see_if(x, true);
                    if count {
                        counts[i] += (tr.apply(x) > EXPRESSED) as u32;
                    }
                })?;
                if q.clean() {
                    q.add_to(&mut scan);
                } else {
                    let tag = (k + s) as u32 + 1;
                    self.walk(c, &mut stamp, tag, |i, x| scan.see(self.rows.start + i, s, x))?;
                }
                Ok((scan, counts, stamp))
            })
            .try_reduce(fresh, |(a, mut ca, sa), (b, cb, _)| {
                ca.iter_mut().zip(&cb).for_each(|(x, y)| *x += y);
                Ok((a.merge(b), ca, sa))
            })?;
        Ok((scan, counts))
    }

    /// Adds the entries of the rows with a group (`eff`; `g_n`: none) to `parts`.
    fn add<C: Cell>(&self, eff: &[u32], parts: &mut Parts<C>) -> Result<()> {
        let tr = self.tr;
        parts.cells.par_iter_mut().zip(&parts.slots).try_for_each(|(cells, sl)| {
            let (stride, mut stamp) = (sl.len() + 1, self.stamps());
            for (j, &s) in sl.iter().enumerate() {
                self.walk(self.cols.cols[s], &mut stamp, s as u32 + 1, |i, x| {
                    cells[eff[i] as usize * stride + j].add(tr.apply(x))
                })?;
            }
            Ok(())
        })
    }
}

fn effective(groups: &[i64], omitted: &[bool], g_n: usize) -> Vec<u32> {
    groups.iter().zip(omitted).map(|(&g, &o)| if o || g < 0 { g_n as u32 } else { g as u32 }).collect()
}

/// Pass 1 over the rows `rows` of a CSC matrix (see [`super::pass1`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn csc_pass1<T: Value, I: Index>(
    sp: &Sparse<T, I>,
    n_rows: usize,
    rows: Range<usize>,
    cols: &Columns,
    (groups, g_n): (&[i64], usize),
    scale: bool,
    transform: bool,
    acc: &mut Moments,
    omitted: &mut [bool],
) -> Result<Scan> {
    let k = cols.len();
    let ctx = Csc { sp, n_rows, rows: rows.clone(), cols, tr: Tr::new(transform) };
    let (scan, counts) = ctx.sweep(scale)?;
    for (i, (o, &g)) in omitted.iter_mut().zip(groups).enumerate() {
        *o = scale && g >= 0 && (counts[i] as usize) < MIN_GENES_EXPRESSED;
    }
    let mut parts = load1(chunks(k), g_n, k, acc);
    ctx.add(&effective(groups, omitted, g_n), &mut parts)?;
    store1(&parts, k, acc);
    Ok(Scan { cells: (rows.len() * k) as u64, ..scan })
}

/// Pass 2 over the rows `rows` of a CSC matrix (see [`super::pass2`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn csc_pass2<T: Value, I: Index>(
    sp: &Sparse<T, I>,
    n_rows: usize,
    rows: Range<usize>,
    cols: &Columns,
    (groups, g_n): (&[i64], usize),
    mean: &[f64],
    transform: bool,
    sq: &mut [f64],
) -> Result<()> {
    let k = cols.len();
    let ctx = Csc { sp, n_rows, rows: rows.clone(), cols, tr: Tr::new(transform) };
    let mut parts = load2(chunks(k), g_n, k, sq, mean);
    ctx.add(&effective(groups, &vec![false; rows.len()], g_n), &mut parts)?;
    store2(&parts, k, sq);
    Ok(())
}
