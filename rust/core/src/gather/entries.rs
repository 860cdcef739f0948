//! The scaling passes over CSR input through its stored entries only. Rows are read in tiles
//! of a bounded number of entries, each tile in a few row blocks in parallel: a block checks
//! its entries (indices in range, no slot twice in a row), scans them, transforms them and
//! sorts the non-zeros of the scored cells into one bucket per slot chunk, as (accumulator
//! index, value) in cell order; then each chunk adds its buckets, block after block. A cell
//! omitted by the "fewer than 3 genes" rule takes its entries back out of the buckets.

use std::ops::Range;

use rayon::prelude::*;

use super::stats::Acc;
use super::{bad_index, dup, Columns, Index, Quick, Scan, Sparse, Tr, Value, EXPRESSED, MIN_GENES_EXPRESSED, NONE};
use crate::error::Result;

/// Stored entries per tile.
const ENTRIES: usize = 1 << 16;

/// A row block's state, kept from tile to tile.
#[derive(Default)]
struct Block {
    idx: Vec<Vec<u32>>,
    val: Vec<Vec<f64>>,
    seen: Vec<usize>,
    scan: Scan,
}

/// Where a slot's values go: (chunk, index within the chunk's group row).
fn parts<A: Acc>(k: usize, acc: &[A]) -> Vec<(u32, u32)> {
    let mut out = vec![(0, 0); k + 1]; // + the dummy slot of unread columns
    for (c, a) in acc.iter().enumerate() {
        let (s0, len) = a.span();
        for (j, o) in out[s0..s0 + len].iter_mut().enumerate() {
            *o = (c as u32, j as u32);
        }
    }
    out
}

/// What every row of a pass needs.
struct Ctx<'a, T, I> {
    sp: &'a Sparse<'a, T, I>,
    n_cols: usize,
    cols: &'a Columns,
    part: Vec<(u32, u32)>,
    w: usize,
    tr: Tr,
}

impl<T: Value, I: Index> Ctx<'_, T, I> {
    /// Reads row `r` into `b`'s buckets at the cursors `cur` (if `g >= 0`), without a branch
    /// on the data: an unread column goes to the dummy slot k and moves no cursor. Returns
    /// how many slots the row expresses.
    #[inline]
    fn row(&self, r: usize, g: i64, b: &mut Block, cur: &mut [usize]) -> Result<usize> {
        let (k, span) = (self.cols.len(), self.sp.range(r));
        let (mut q, mut expressed) = (Quick::default(), 0);
        let (add, base) = (g >= 0, if g >= 0 { g as usize * self.w } else { 0 });
        let (idx, data) = (&self.sp.indices[span.clone()], &self.sp.data[span.clone()]);
        for (p, (&i, &d)) in span.clone().zip(idx.iter().zip(data)) {
            let c = i.to_index().filter(|&c| c < self.n_cols).ok_or_else(|| bad_index(p, self.n_cols))?;
            let s = (self.cols.slot[c] as usize).min(k);
            let read = s < k;
            if read & (b.seen[s] == r) {
                return Err(dup(r, c));
            }
            b.seen[s] = r;
            let x = d.to_f64();
            q.see_masked(x, read);
            let t = self.tr.apply(x);
            expressed += (read & (t > EXPRESSED)) as usize;
            let (ch, j) = (self.part[s].0 as usize, self.part[s].1 as usize);
            let at = cur[ch];
            b.idx[ch][at] = (base + j) as u32;
            b.val[ch][at] = t;
            cur[ch] += (add & read & (t != 0.0)) as usize;
        }
        if q.clean() {
            q.add_to(&mut b.scan);
        } else {
            for (&i, &d) in idx.iter().zip(data) {
                let s = self.cols.slot[i.to_index().unwrap_or(0)];
                if s != NONE {
                    b.scan.see(r, s as usize, d.to_f64());
                }
            }
        }
        Ok(expressed)
    }

    /// Rows `rows` (`groups`, `omitted` theirs) into `b`; with `scale`, omits cells of a group
    /// expressing fewer than 3 slots.
    fn block(
        &self,
        rows: Range<usize>,
        groups: &[i64],
        omitted: &mut [bool],
        scale: bool,
        b: &mut Block,
    ) -> Result<()> {
        let n = self.sp.range(rows.start).start;
        let n = rows.clone().last().map_or(0, |r| self.sp.range(r).end - n);
        for (i, v) in b.idx.iter_mut().zip(&mut b.val) {
            i.clear();
            i.resize(n + 1, 0);
            v.clear();
            v.resize(n + 1, 0.0);
        }
        let mut cur = vec![0usize; b.idx.len()];
        let mut marks = cur.clone();
        for ((r, &g), o) in rows.zip(groups).zip(omitted) {
            let check = scale && g >= 0;
            marks.copy_from_slice(&cur);
            let expressed = self.row(r, g, b, &mut cur)?;
            *o = check && expressed < MIN_GENES_EXPRESSED;
            if *o {
                cur.copy_from_slice(&marks);
            }
        }
        for ((i, v), &c) in b.idx.iter_mut().zip(&mut b.val).zip(&cur) {
            i.truncate(c);
            v.truncate(c);
        }
        Ok(())
    }
}

/// One pass over the CSR rows `rows` into `acc` (chunks of `Acc1` or `Acc2`); `omit`: pass 1's
/// (scale, omitted), else `groups` are final. Returns the scan of the raw values.
#[allow(clippy::too_many_arguments)]
pub(super) fn csr_pass<T: Value, I: Index, A: Acc>(
    sp: &Sparse<T, I>,
    n_cols: usize,
    rows: Range<usize>,
    cols: &Columns,
    groups: &[i64],
    transform: bool,
    acc: &mut [A],
    omit: Option<(bool, &mut [bool])>,
) -> Result<Scan> {
    let (k, n_chunks) = (cols.len(), acc.len());
    let w = acc.first().map_or(1, |a| a.span().1);
    let ctx = Ctx { sp, n_cols, cols, part: parts(k, acc), w, tr: Tr::new(transform) };
    let threads = rayon::current_num_threads();
    let n_blocks = if threads > 1 { 4 * threads } else { 1 };
    let mut blocks: Vec<Block> = (0..n_blocks)
        .map(|_| Block {
            idx: vec![Vec::new(); n_chunks],
            val: vec![Vec::new(); n_chunks],
            seen: vec![usize::MAX; k + 1],
            scan: Scan::default(),
        })
        .collect();
    let (scale, mut scratch);
    let omitted: &mut [bool] = match omit {
        Some((s, o)) => {
            scale = s;
            o
        }
        None => {
            scale = false;
            scratch = vec![false; rows.len()];
            &mut scratch
        }
    };
    let start = |r: usize| sp.indptr[r].to_index().unwrap_or(0);
    let mut t0 = rows.start;
    while t0 < rows.end {
        let limit = start(t0) + ENTRIES;
        let t1 = (t0 + 1 + (t0 + 1..rows.end).take_while(|&r| start(r) < limit).count()).min(rows.end);
        let per = (t1 - t0).div_ceil(n_blocks);
        let (off, end) = (t0 - rows.start, t1 - rows.start);
        for b in &mut blocks {
            b.idx.iter_mut().for_each(Vec::clear);
            b.val.iter_mut().for_each(Vec::clear);
        }
        blocks
            .par_iter_mut()
            .zip(omitted[off..end].par_chunks_mut(per))
            .zip(groups[off..end].par_chunks(per))
            .enumerate()
            .try_for_each(|(i, ((b, o), g))| {
                let r0 = t0 + i * per;
                ctx.block(r0..r0 + g.len(), g, o, scale, b)
            })?;
        acc.par_iter_mut().enumerate().for_each(|(c, a)| {
            for b in &blocks {
                for (&i, &v) in b.idx[c].iter().zip(&b.val[c]) {
                    a.entry(i as usize, v);
                }
            }
        });
        t0 = t1;
    }
    let scan = blocks.iter().fold(Scan::default(), |s, b| s.merge(b.scan));
    Ok(Scan { cells: (omitted.len() * k) as u64, ..scan })
}
