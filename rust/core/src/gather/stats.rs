//! The scaling passes: pass 1 (omissions, per (group, slot) sums, counts, min and max of the
//! non-zeros) and pass 2 (squared deviations from the mean). The slots are split in a few
//! chunks, one task each, with its own group-major accumulators (`g * w + j`): every sum is
//! taken one value after the other in cell order whatever the split, so every thread count
//! gives the same bits. Dense inputs go through dense tiles, whose rows are added to the
//! accumulators branch-free (lanes over slots); sparse inputs only through their stored
//! entries ([`super::entries`] for CSR, [`super::csc`] for CSC).

use std::ops::Range;

use rayon::prelude::*;

use super::csc::{csc_pass1, csc_pass2};
use super::entries::{csr_pass1, csr_pass2};
use super::{check_len, check_rows, fill_tile, tile_rows, Columns, Index, Matrix, Scan, Value, EXPRESSED};
use super::{CoreError, MIN_GENES_EXPRESSED};
use crate::error::Result;

/// Pass-1 accumulators, `n_groups x slots` row-major (index `group * slots + slot`), carried
/// from one call to the next (the sums continue where they stopped).
pub struct Moments<'a> {
    pub sum: &'a mut [f64],
    pub nnz: &'a mut [i64],
    pub lo: &'a mut [f64],
    pub hi: &'a mut [f64],
}

/// Accumulators of the slots `s0..s0 + len`, group-major with stride `w`.
pub(super) trait Acc: Send {
    /// (first slot, slots).
    fn span(&self) -> (usize, usize);
    /// Adds a tile row's values `v` (the chunk's slots) of a cell of group `g`; zeros skipped.
    fn row(&mut self, g: usize, v: &[f64]);
}

/// Pass 1 of one chunk.
pub(super) struct Acc1 {
    s0: usize,
    len: usize,
    w: usize,
    sum: Vec<f64>,
    nnz: Vec<i64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Acc for Acc1 {
    fn span(&self) -> (usize, usize) {
        (self.s0, self.len)
    }

    #[inline]
    fn row(&mut self, g: usize, v: &[f64]) {
        let r = g * self.w..g * self.w + self.len;
        let (s, z) = (&mut self.sum[r.clone()], &mut self.nnz[r.clone()]);
        let (l, h) = (&mut self.lo[r.clone()], &mut self.hi[r]);
        for ((((&x, s), z), l), h) in v.iter().zip(s).zip(z).zip(l).zip(h) {
            let nz = x != 0.0;
            let t = *s + x;
            *s = if nz { t } else { *s };
            *z += nz as i64;
            *l = if nz & (x < *l) { x } else { *l };
            *h = if nz & (x > *h) { x } else { *h };
        }
    }
}

/// Pass 2 of one chunk.
pub(super) struct Acc2 {
    s0: usize,
    len: usize,
    w: usize,
    sq: Vec<f64>,
    mu: Vec<f64>,
}

impl Acc for Acc2 {
    fn span(&self) -> (usize, usize) {
        (self.s0, self.len)
    }

    #[inline]
    fn row(&mut self, g: usize, v: &[f64]) {
        let r = g * self.w..g * self.w + self.len;
        for ((&x, q), &m) in v.iter().zip(&mut self.sq[r.clone()]).zip(&self.mu[r]) {
            let d = x - m;
            let t = *q + d * d;
            *q = if x != 0.0 { t } else { *q };
        }
    }
}

/// The chunks of `k` slots: (first slot, slots) and the common stride.
fn chunks(k: usize) -> (Vec<(usize, usize)>, usize) {
    let n = rayon::current_num_threads().clamp(1, k.max(1));
    let w = k.div_ceil(n).max(1);
    ((0..k).step_by(w).map(|s0| (s0, w.min(k - s0))).collect(), w)
}

/// Chunk `(s0, len)` of `a` (`g_n x k`), group-major with stride `w`.
fn take<T: Copy + Default>(a: &[T], g_n: usize, k: usize, (s0, len): (usize, usize), w: usize) -> Vec<T> {
    let mut out = vec![T::default(); g_n * w];
    for g in 0..g_n {
        out[g * w..g * w + len].copy_from_slice(&a[g * k + s0..g * k + s0 + len]);
    }
    out
}

fn give<T: Copy>(dst: &mut [T], src: &[T], g_n: usize, k: usize, (s0, len): (usize, usize), w: usize) {
    for g in 0..g_n {
        dst[g * k + s0..g * k + s0 + len].copy_from_slice(&src[g * w..g * w + len]);
    }
}

fn check_groups(groups: &[i64], g_n: usize) -> Result<()> {
    match groups.iter().find(|&&g| g < -1 || g >= g_n as i64) {
        Some(g) => Err(CoreError::InvalidArgument(format!("group id {g} outside -1..{g_n}"))),
        None => Ok(()),
    }
}

/// The dense-tile path: `omit(tile row, row offset)` gives the group a row is added to
/// (negative: none).
fn tile_pass<T: Value, I: Index, A: Acc>(
    m: &Matrix<T, I>,
    rows: Range<usize>,
    cols: &Columns,
    transform: bool,
    acc: &mut [A],
    mut group_of: impl FnMut(&[f64], usize, &mut [i64]) + Send,
) -> Result<Scan> {
    let (k, nt) = (cols.len(), tile_rows(cols.len(), m));
    let mut tile = vec![0.0; nt.min(rows.len()) * k];
    let mut eff = vec![-1i64; nt.min(rows.len())];
    let mut scan = Scan::default();
    for t0 in rows.clone().step_by(nt) {
        let idx: Vec<usize> = (t0..(t0 + nt).min(rows.end)).collect();
        let (tl, eff) = (&mut tile[..idx.len() * k], &mut eff[..idx.len()]);
        scan = scan.merge(fill_tile(m, &idx, cols, transform, tl)?);
        group_of(tl, t0 - rows.start, eff);
        let tl = &*tl;
        acc.par_iter_mut().for_each(|a| {
            let (s0, len) = a.span();
            for (i, &g) in eff.iter().enumerate() {
                if g >= 0 {
                    a.row(g as usize, &tl[i * k + s0..i * k + s0 + len]);
                }
            }
        });
    }
    Ok(scan)
}

/// Pass 1 over `rows`: the raw values' [`Scan`]; with `scale`, the cells of a scored group
/// (`groups`, one per row, -1: not scored) expressing fewer than 3 slots (> 1e-16, after the
/// transform) are marked in `omitted` and left out; the non-zeros of the other scored cells go
/// into `acc` (sums in cell order, counts, min, max). `transform`: log2(x + 1) first.
#[allow(clippy::too_many_arguments)]
pub fn pass1<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: Range<usize>,
    cols: &Columns,
    groups: &[i64],
    n_groups: usize,
    scale: bool,
    transform: bool,
    mut acc: Moments,
    omitted: &mut [bool],
) -> Result<Scan> {
    let (g_n, k) = (n_groups, cols.len());
    check_rows(&rows, m.shape().0, groups.len())?;
    check_groups(groups, g_n)?;
    check_len("omitted", omitted.len(), rows.len())?;
    for (name, n) in [("sum", acc.sum.len()), ("nnz", acc.nnz.len()), ("lo", acc.lo.len()), ("hi", acc.hi.len())] {
        check_len(name, n, g_n * k)?;
    }
    let gr = (groups, g_n);
    match m {
        Matrix::Csr(sp, n) => return csr_pass1(sp, *n, rows, cols, gr, scale, transform, &mut acc, omitted),
        Matrix::Csc(sp, n) => return csc_pass1(sp, *n, rows, cols, gr, scale, transform, &mut acc, omitted),
        Matrix::Dense(_) => {}
    }
    let (spans, w) = chunks(k);
    let mut parts: Vec<Acc1> = spans
        .iter()
        .map(|&sp| Acc1 {
            s0: sp.0,
            len: sp.1,
            w,
            sum: take(acc.sum, g_n, k, sp, w),
            nnz: take(acc.nnz, g_n, k, sp, w),
            lo: take(acc.lo, g_n, k, sp, w),
            hi: take(acc.hi, g_n, k, sp, w),
        })
        .collect();
    let scan = tile_pass(m, rows, cols, transform, &mut parts, |tl, off, eff| {
        let om = &mut omitted[off..off + eff.len()];
        let grp = &groups[off..off + eff.len()];
        eff.par_iter_mut().zip(om.par_iter_mut()).zip(grp).enumerate().with_min_len(8).for_each(|(i, ((e, o), &g))| {
            let row = &tl[i * k..(i + 1) * k];
            *o = scale && g >= 0 && row.iter().map(|&v| (v > EXPRESSED) as usize).sum::<usize>() < MIN_GENES_EXPRESSED;
            *e = if *o { -1 } else { g };
        });
    })?;
    for (p, &sp) in parts.iter().zip(&spans) {
        give(acc.sum, &p.sum, g_n, k, sp, w);
        give(acc.nnz, &p.nnz, g_n, k, sp, w);
        give(acc.lo, &p.lo, g_n, k, sp, w);
        give(acc.hi, &p.hi, g_n, k, sp, w);
    }
    Ok(scan)
}

/// Pass 2 over `rows`: adds `(x - mean)^2` of the non-zeros of the scored cells (`groups`,
/// -1: not scored, omitted cells included) to `sq`, in cell order (`n_groups x slots`).
pub fn pass2<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: Range<usize>,
    cols: &Columns,
    groups: &[i64],
    mean: &[f64],
    transform: bool,
    sq: &mut [f64],
) -> Result<()> {
    let k = cols.len();
    check_rows(&rows, m.shape().0, groups.len())?;
    if k == 0 {
        return Ok(());
    }
    let g_n = mean.len() / k;
    check_len("mean", mean.len(), g_n * k)?;
    check_len("sq", sq.len(), g_n * k)?;
    check_groups(groups, g_n)?;
    match m {
        Matrix::Csr(sp, n) => return csr_pass2(sp, *n, rows, cols, (groups, g_n), mean, transform, sq),
        Matrix::Csc(sp, n) => return csc_pass2(sp, *n, rows, cols, (groups, g_n), mean, transform, sq),
        Matrix::Dense(_) => {}
    }
    let (spans, w) = chunks(k);
    let mut parts: Vec<Acc2> = spans
        .iter()
        .map(|&sp| Acc2 { s0: sp.0, len: sp.1, w, sq: take(sq, g_n, k, sp, w), mu: take(mean, g_n, k, sp, w) })
        .collect();
    tile_pass(m, rows, cols, transform, &mut parts, |_, off, eff| {
        eff.copy_from_slice(&groups[off..off + eff.len()]);
    })?;
    for (p, &sp) in parts.iter().zip(&spans) {
        give(sq, &p.sq, g_n, k, sp, w);
    }
    Ok(())
}
