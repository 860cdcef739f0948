//! What recovery computes from the gathered tiles: pass 1 (omissions, per (group, slot) sums,
//! counts, min and max of the non-zeros), pass 2 (squared deviations from the mean) and the
//! dense blocks of a run (posneg features x cells for exact mode, cells x genes for fast mode).

use std::ops::Range;

use ndarray::Array2;
use rayon::prelude::*;

use super::{check_rows, fill_tile, tile_rows, Columns, Index, Matrix, Scan, Value, EXPRESSED, MIN_GENES_EXPRESSED};
use crate::error::{CoreError, Result};
use crate::preprocess::scaled;

/// Pass-1 accumulators, `n_groups x slots` row-major (index `group * slots + slot`), carried
/// from one call to the next (the sums continue where they stopped).
pub struct Moments<'a> {
    pub sum: &'a mut [f64],
    pub nnz: &'a mut [i64],
    pub lo: &'a mut [f64],
    pub hi: &'a mut [f64],
}

/// Slot-major copy (`slot * n_groups + group`) of `n_groups x k` accumulators.
fn slot_major<T: Copy + Default>(a: &[T], g_n: usize, k: usize) -> Vec<T> {
    let mut out = vec![T::default(); a.len()];
    for g in 0..g_n {
        for s in 0..k {
            out[s * g_n + g] = a[g * k + s];
        }
    }
    out
}

fn write_back<T: Copy>(dst: &mut [T], src: &[T], g_n: usize, k: usize) {
    for g in 0..g_n {
        for s in 0..k {
            dst[g * k + s] = src[s * g_n + g];
        }
    }
}

/// Slots per parallel task (any value gives the same bits).
fn slot_chunk(k: usize) -> usize {
    k.div_ceil(4 * rayon::current_num_threads()).max(8)
}

fn check_groups(groups: &[i64], g_n: usize) -> Result<()> {
    match groups.iter().find(|&&g| g < -1 || g >= g_n as i64) {
        Some(g) => Err(CoreError::InvalidArgument(format!("group id {g} outside -1..{g_n}"))),
        None => Ok(()),
    }
}

fn check_len(name: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(CoreError::Shape(format!("{name} has {got} entries, expected {want}")))
    }
}

/// Calls `f(tile, first row offset, rows in tile)` for the tiles of `rows`; merges the scans.
fn for_tiles<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: Range<usize>,
    cols: &Columns,
    transform: bool,
    mut f: impl FnMut(&[f64], usize, usize) -> Result<()>,
) -> Result<Scan> {
    let (k, nt) = (cols.len(), tile_rows(cols.len()));
    let mut tile = vec![0.0; nt.min(rows.len()) * k];
    let mut scan = Scan::default();
    for t0 in rows.clone().step_by(nt) {
        let idx: Vec<usize> = (t0..(t0 + nt).min(rows.end)).collect();
        let tl = &mut tile[..idx.len() * k];
        scan = scan.merge(fill_tile(m, &idx, cols, transform, tl)?);
        f(tl, t0 - rows.start, idx.len())?;
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
    acc: Moments,
    omitted: &mut [bool],
) -> Result<Scan> {
    let (g_n, k) = (n_groups, cols.len());
    check_rows(&rows, m.shape().0, groups.len())?;
    check_groups(groups, g_n)?;
    check_len("omitted", omitted.len(), rows.len())?;
    for (name, n) in [("sum", acc.sum.len()), ("nnz", acc.nnz.len()), ("lo", acc.lo.len()), ("hi", acc.hi.len())] {
        check_len(name, n, g_n * k)?;
    }
    let (mut sum, mut nnz) = (slot_major(acc.sum, g_n, k), slot_major(acc.nnz, g_n, k));
    let (mut lo, mut hi) = (slot_major(acc.lo, g_n, k), slot_major(acc.hi, g_n, k));
    let mut eff = vec![-1i64; tile_rows(k)];
    let sc = slot_chunk(k);
    let w = sc * g_n.max(1);
    let scan = for_tiles(m, rows, cols, transform, |tl, off, n| {
        let (eff, om) = (&mut eff[..n], &mut omitted[off..off + n]);
        eff.par_iter_mut().zip(om.par_iter_mut()).zip(&groups[off..off + n]).enumerate().for_each(
            |(i, ((e, o), &g))| {
                *o = scale
                    && g >= 0
                    && tl[i * k..(i + 1) * k].iter().filter(|&&v| v > EXPRESSED).count() < MIN_GENES_EXPRESSED;
                *e = if *o { -1 } else { g };
            },
        );
        let parts =
            sum.par_chunks_mut(w).zip(nnz.par_chunks_mut(w)).zip(lo.par_chunks_mut(w)).zip(hi.par_chunks_mut(w));
        parts.enumerate().for_each(|(c, (((s, z), l), h))| {
            let s0 = c * sc;
            let width = s.len() / g_n.max(1);
            for (i, &g) in eff.iter().enumerate() {
                if g < 0 {
                    continue;
                }
                for (j, &v) in tl[i * k + s0..i * k + s0 + width].iter().enumerate() {
                    if v != 0.0 {
                        let a = j * g_n + g as usize;
                        s[a] += v;
                        z[a] += 1;
                        if v < l[a] {
                            l[a] = v;
                        }
                        if v > h[a] {
                            h[a] = v;
                        }
                    }
                }
            }
        });
        Ok(())
    })?;
    write_back(acc.sum, &sum, g_n, k);
    write_back(acc.nnz, &nnz, g_n, k);
    write_back(acc.lo, &lo, g_n, k);
    write_back(acc.hi, &hi, g_n, k);
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
    let (mu, mut acc) = (slot_major(mean, g_n, k), slot_major(sq, g_n, k));
    let sc = slot_chunk(k);
    let w = sc * g_n.max(1);
    for_tiles(m, rows, cols, transform, |tl, off, n| {
        let grp = &groups[off..off + n];
        acc.par_chunks_mut(w).zip(mu.par_chunks(w)).enumerate().for_each(|(c, (q, mu))| {
            let s0 = c * sc;
            let width = q.len() / g_n.max(1);
            for (i, &g) in grp.iter().enumerate() {
                if g < 0 {
                    continue;
                }
                for (j, &v) in tl[i * k + s0..i * k + s0 + width].iter().enumerate() {
                    if v != 0.0 {
                        let a = j * g_n + g as usize;
                        let d = v - mu[a];
                        q[a] += d * d;
                    }
                }
            }
        });
        Ok(())
    })?;
    write_back(sq, &acc, g_n, k);
    Ok(())
}

/// ScaleData's statistics per slot: `(x - mean) / sd`, NaN -> 0, above `max` -> `max`.
#[derive(Clone, Copy, Debug)]
pub struct Scaling<'a> {
    pub mean: &'a [f64],
    pub sd: &'a [f64],
    pub max: f64,
}

fn check_run(n_rows: usize, rows: &[usize]) -> Result<()> {
    if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= n_rows) {
        return Err(CoreError::InvalidArgument(format!("run rows must ascend strictly and stay below {n_rows}")));
    }
    Ok(())
}

/// The run's cells x slots, transformed and (with `scaling`) scaled, row-major.
fn run_block<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    transform: bool,
) -> Result<Vec<f64>> {
    let k = cols.len();
    check_run(m.shape().0, rows)?;
    let mut z = vec![0.0; rows.len() * k];
    fill_tile(m, rows, cols, transform, &mut z)?;
    if let Some(sc) = scaling {
        check_len("mean", sc.mean.len(), k)?;
        check_len("sd", sc.sd.len(), k)?;
        z.par_chunks_mut(k.max(1)).with_min_len(16).for_each(|row| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = scaled(*v, sc.mean[j], sc.sd[j], sc.max);
            }
        });
    }
    Ok(z)
}

/// Dense cells x slots block of a run (fast mode's input), scaled when `scaling` is given.
pub fn extract_dense<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    transform: bool,
) -> Result<Array2<f64>> {
    let z = run_block(m, rows, cols, scaling, transform)?;
    Ok(Array2::from_shape_vec((rows.len(), cols.len()), z).expect("rows x slots"))
}

/// CSR (indptr, indices, data) of a run's cells x slots, transformed, zeros left out.
pub fn extract_csr<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    transform: bool,
) -> Result<(Vec<i64>, Vec<i64>, Vec<f64>)> {
    let k = cols.len();
    let z = run_block(m, rows, cols, None, transform)?;
    let (mut indptr, mut indices, mut data) = (Vec::with_capacity(rows.len() + 1), Vec::new(), Vec::new());
    indptr.push(0);
    for row in z.chunks(k.max(1)).take(rows.len()) {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                indices.push(j as i64);
                data.push(v);
            }
        }
        indptr.push(data.len() as i64);
    }
    Ok((indptr, indices, data))
}

/// NMFpredict's V of a run, features x cells: with `posneg` the positive parts of the slots
/// then their negative parts (`max(z, 0)`, `max(-z, 0)`), else the slots themselves; only the
/// features that are in W (`in_w`) and not constant over the run's cells. Returns V and the
/// kept features' indices.
pub fn run_features<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    posneg: bool,
    transform: bool,
    in_w: &[bool],
) -> Result<(Array2<f64>, Vec<usize>)> {
    let (n, k) = (rows.len(), cols.len());
    let nf = if posneg { 2 * k } else { k };
    check_len("in_w", in_w.len(), nf)?;
    let z = run_block(m, rows, cols, scaling, transform)?;
    let value = |f: usize, i: usize| -> f64 {
        let v = z[i * k + f % k.max(1)];
        match (posneg, f < k) {
            (false, _) => v,
            (true, true) => {
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
            (true, false) => {
                if -v > 0.0 {
                    -v
                } else {
                    0.0
                }
            }
        }
    };
    let kept: Vec<usize> =
        (0..nf).into_par_iter().filter(|&f| in_w[f] && n > 0 && (1..n).any(|i| value(f, i) != value(f, 0))).collect();
    let mut v = Array2::zeros((kept.len(), n));
    v.as_slice_mut().expect("standard layout").par_chunks_mut(n.max(1)).zip(&kept).for_each(|(out, &f)| {
        for (i, o) in out.iter_mut().enumerate() {
            *o = value(f, i);
        }
    });
    Ok((v, kept))
}
