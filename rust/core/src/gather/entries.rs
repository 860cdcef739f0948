//! The scaling passes over CSR input, through its stored entries only. A tile of rows is
//! first checked and scanned row by row in parallel (indices in range, no read column twice,
//! the "fewer than 3 genes" count); then its entries are added straight to the (group, slot)
//! cells, one walk over each row, rows group by group. With sorted indices the read columns
//! can be split in ranges ([`SPLIT`]), one task each, that walks its range of every row (two
//! searches per row): a slot's sum is still taken one value after the other in cell order, so
//! every split and thread count gives the same bits.

use std::ops::Range;

use rayon::prelude::*;

use super::cells::{load1, load2, store1, store2, Cell, Parts};
use super::stats::Moments;
use super::{bad_index, dup, Columns, Index, Quick, Scan, Sparse, Tr, Value, EXPRESSED, MIN_GENES_EXPRESSED, NONE};
use crate::error::{CoreError, Result};

/// Stored entries per tile (indices and values stay in L2 between the two walks).
const ENTRIES: usize = 1 << 14;
/// Whether sorted rows are split in column ranges, one task each. Off: on this 2-core machine
/// two tasks took twice the CPU time of one and no less wall time (the check before, row
/// blocks in parallel, is where the threads help).
const SPLIT: bool = false;
/// Rows per parallel task of the check.
const ROWS: usize = 64;

/// The read columns in column order, in ranges: `slots[p]` the slots of range `p` (columns
/// `bounds[p]..bounds[p + 1]`), `lut[c]` column `c`'s position within its range (`NONE`: not
/// read; `lut[n_cols]` stands for every index out of range).
struct Split {
    slots: Vec<Vec<usize>>,
    bounds: Vec<usize>,
    lut: Vec<u32>,
}

fn split(cols: &Columns, n_cols: usize, n_parts: usize) -> Split {
    let mut order: Vec<(usize, usize)> = cols.cols.iter().enumerate().map(|(s, &c)| (c, s)).collect();
    order.sort_unstable();
    let per = order.len().div_ceil(n_parts.max(1)).max(1);
    let (mut lut, mut slots, mut bounds) = (vec![NONE; n_cols + 1], Vec::new(), vec![0]);
    for (p, ch) in order.chunks(per).enumerate() {
        if p > 0 {
            bounds.push(ch[0].0);
        }
        for (j, &(c, _)) in ch.iter().enumerate() {
            lut[c] = j as u32;
        }
        slots.push(ch.iter().map(|&(_, s)| s).collect());
    }
    if slots.is_empty() {
        slots.push(Vec::new());
    }
    bounds.push(usize::MAX);
    Split { slots, bounds, lut }
}

fn unsorted_row(r: usize) -> CoreError {
    CoreError::InvalidArgument(format!("the columns of row {r} are not sorted although the matrix says so"))
}

/// The positions of the rows with a group (`eff >= 0`), group by group, ascending within one.
fn by_group(eff: &[i64]) -> Vec<u32> {
    let g_n = eff.iter().max().map_or(0, |&g| (g + 1).max(0) as usize);
    let mut start = vec![0usize; g_n + 1];
    for &g in eff.iter().filter(|&&g| g >= 0) {
        start[g as usize + 1] += 1;
    }
    for g in 0..g_n {
        start[g + 1] += start[g];
    }
    let mut out = vec![0u32; start[g_n]];
    for (i, &g) in eff.iter().enumerate().filter(|(_, &g)| g >= 0) {
        out[start[g as usize]] = i as u32;
        start[g as usize] += 1;
    }
    out
}

/// What every row of a pass needs.
struct Csr<'a, T, I> {
    sp: &'a Sparse<'a, T, I>,
    n_cols: usize,
    cols: &'a Columns,
    tr: Tr,
}

impl<T: Value, I: Index> Csr<'_, T, I> {
    #[inline]
    fn key(i: &I) -> usize {
        i.to_index().unwrap_or(usize::MAX)
    }

    /// The error of row `r`, known to be broken: an index out of range, a read column twice,
    /// or (sorted) a column before the one it follows.
    fn row_error(&self, r: usize) -> CoreError {
        let mut seen = vec![false; self.cols.len()];
        let (mut prev, span) = (None, self.sp.range(r));
        for p in span {
            let c = Self::key(&self.sp.indices[p]);
            if c >= self.n_cols {
                return bad_index(p, self.n_cols);
            }
            if self.sp.sorted && prev.is_some_and(|q| c < q) {
                return unsorted_row(r);
            }
            prev = Some(c);
            let s = self.cols.slot[c];
            if s != NONE && std::mem::replace(&mut seen[s as usize], true) {
                return dup(r, c);
            }
        }
        unsorted_row(r)
    }

    /// Checks row `r` (see [`Self::row_error`]), scans its read values into `scan`; returns
    /// how many slots it expresses when `count`. `lut`: a one-range split's; `seen`: the last
    /// row that read each position.
    #[inline]
    fn check_row(&self, r: usize, lut: &[u32], seen: &mut [usize], scan: &mut Scan, count: bool) -> Result<usize> {
        let (k, span) = (self.cols.len(), self.sp.range(r));
        let (idx, data) = (&self.sp.indices[span.clone()], &self.sp.data[span]);
        let (mut q, mut expressed, mut prev, mut prev_read, mut bad) = (Quick::default(), 0, 0, 0, false);
        for (&i, &d) in idx.iter().zip(data) {
            let c = Self::key(&i).min(self.n_cols);
            let s = lut[c];
            let read = s != NONE;
            bad |= c == self.n_cols;
            if self.sp.sorted {
                bad |= (c < prev) | (read & (c < prev_read));
                prev = c;
                prev_read = if read { c + 1 } else { prev_read };
            } else {
                let s = (s as usize).min(k);
                bad |= read & (seen[s] == r);
                seen[s] = r;
            }
            let x = d.to_f64();
            q.see_masked(x, read);
            if count {
                expressed += (read & (self.tr.apply(x) > EXPRESSED)) as usize;
            }
        }
        if bad {
            return Err(self.row_error(r));
        }
        if q.clean() {
            q.add_to(scan);
        } else {
            for (&i, &d) in idx.iter().zip(data) {
                let s = self.cols.slot[Self::key(&i)];
                if s != NONE {
                    scan.see(r, s as usize, d.to_f64());
                }
            }
        }
        Ok(expressed)
    }

    /// Checks and scans the rows from `r0` (`groups`, `omitted` theirs) in parallel; with
    /// `scale`, marks the scored cells expressing fewer than 3 slots.
    fn check(&self, r0: usize, groups: &[i64], omitted: &mut [bool], scale: bool, lut: &[u32]) -> Result<Scan> {
        let k = self.cols.len();
        groups
            .par_chunks(ROWS)
            .zip(omitted.par_chunks_mut(ROWS))
            .enumerate()
            .try_fold(
                || (Scan::default(), Vec::new()),
                |(mut scan, mut seen), (b, (grp, om))| {
                    if !self.sp.sorted {
                        seen.resize(k + 1, usize::MAX);
                    }
                    for (i, (&g, o)) in grp.iter().zip(om).enumerate() {
                        let count = scale && g >= 0;
                        let e = self.check_row(r0 + b * ROWS + i, lut, &mut seen, &mut scan, count)?;
                        *o = count && e < MIN_GENES_EXPRESSED;
                    }
                    Ok((scan, seen))
                },
            )
            .map(|s| s.map(|(s, _)| s))
            .try_reduce(Scan::default, |a, b| Ok(a.merge(b)))
    }

    /// Adds the entries of columns `lo..hi` of the rows `r0 + i` for `i` in `order` (rows with
    /// a group, `eff`) to `cells` (`len` slots, positions from `lut`), one walk per row.
    #[allow(clippy::too_many_arguments)]
    fn add_part<C: Cell>(
        &self,
        (r0, order): (usize, &[u32]),
        eff: &[i64],
        (lo, hi): (usize, usize),
        lut: &[u32],
        cells: &mut [C],
        len: usize,
    ) -> Result<()> {
        let stride = len + 1;
        let mut stamp = if self.sp.sorted { Vec::new() } else { vec![usize::MAX; stride] };
        for &i in order {
            let (r, g) = (r0 + i as usize, eff[i as usize]);
            let span = self.sp.range(r);
            let (idx, data) = (&self.sp.indices[span.clone()], &self.sp.data[span]);
            let a = if lo > 0 { idx.partition_point(|i| Self::key(i) < lo) } else { 0 };
            let b = if hi < usize::MAX { idx.partition_point(|i| Self::key(i) < hi) } else { idx.len() };
            let cells = &mut cells[g as usize * stride..(g as usize + 1) * stride];
            let (mut prev, mut bad) = (0, a > b);
            for (&i, &d) in idx[a..b.max(a)].iter().zip(&data[a..b.max(a)]) {
                let c = Self::key(&i).min(self.n_cols);
                let j = lut[c];
                let jj = (j as usize).min(len);
                bad |= (c == self.n_cols) | (c < lo) | (c >= hi);
                if self.sp.sorted {
                    bad |= (j != NONE) & (c < prev);
                    prev = if j != NONE { c + 1 } else { prev };
                } else {
                    bad |= (j != NONE) & (stamp[jj] == r);
                    stamp[jj] = r;
                }
                cells[jj].add(self.tr.apply(d.to_f64()));
            }
            if bad {
                return Err(self.row_error(r));
            }
        }
        Ok(())
    }

    /// Adds the rows from `r0` with a group (`eff`) to `parts`, one task per column range; the
    /// rows go group by group (in cell order within a group, which is all a sum sees), so one
    /// group's cells stay in cache.
    fn add<C: Cell>(&self, r0: usize, eff: &[i64], s: &Split, parts: &mut Parts<C>) -> Result<()> {
        let (lut, order) = (&s.lut, by_group(eff));
        parts.cells.par_iter_mut().zip(&parts.slots).enumerate().try_for_each(|(p, (cells, sl))| {
            self.add_part((r0, &order), eff, (s.bounds[p], s.bounds[p + 1]), lut, cells, sl.len())
        })
    }

    fn split(&self) -> Split {
        let parts = if SPLIT && self.sp.sorted { rayon::current_num_threads() } else { 1 };
        split(self.cols, self.n_cols, parts.clamp(1, self.cols.len().max(1)))
    }
}

/// Pass 1 over the CSR rows `rows` (see [`super::pass1`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn csr_pass1<T: Value, I: Index>(
    sp: &Sparse<T, I>,
    n_cols: usize,
    rows: Range<usize>,
    cols: &Columns,
    (groups, g_n): (&[i64], usize),
    scale: bool,
    transform: bool,
    acc: &mut Moments,
    omitted: &mut [bool],
) -> Result<Scan> {
    let (ctx, k) = (Csr { sp, n_cols, cols, tr: Tr::new(transform) }, cols.len());
    let (s, lut) = (ctx.split(), split(cols, n_cols, 1).lut);
    let mut parts = load1(s.slots.clone(), g_n, k, acc);
    let mut eff = vec![-1i64; rows.len()];
    let mut scan = Scan::default();
    let start = |r: usize| sp.indptr[r].to_index().unwrap_or(0);
    let mut t0 = rows.start;
    while t0 < rows.end {
        let limit = start(t0) + ENTRIES;
        let t1 = (t0 + 1 + (t0 + 1..rows.end).take_while(|&r| start(r) < limit).count()).min(rows.end);
        let (off, end) = (t0 - rows.start, t1 - rows.start);
        scan = scan.merge(ctx.check(t0, &groups[off..end], &mut omitted[off..end], scale, &lut)?);
        for ((e, &g), &o) in eff[off..end].iter_mut().zip(&groups[off..end]).zip(&omitted[off..end]) {
            *e = if o { -1 } else { g };
        }
        ctx.add(t0, &eff[off..end], &s, &mut parts)?;
        t0 = t1;
    }
    store1(&parts, k, acc);
    Ok(Scan { cells: (rows.len() * k) as u64, ..scan })
}

/// Pass 2 over the CSR rows `rows` (see [`super::pass2`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn csr_pass2<T: Value, I: Index>(
    sp: &Sparse<T, I>,
    n_cols: usize,
    rows: Range<usize>,
    cols: &Columns,
    (groups, g_n): (&[i64], usize),
    mean: &[f64],
    transform: bool,
    sq: &mut [f64],
) -> Result<()> {
    let (ctx, k) = (Csr { sp, n_cols, cols, tr: Tr::new(transform) }, cols.len());
    let s = ctx.split();
    let mut parts = load2(s.slots.clone(), g_n, k, sq, mean);
    ctx.add(rows.start, groups, &s, &mut parts)?;
    store2(&parts, k, sq);
    Ok(())
}
