//! Dense tiles: the slots of a few hundred rows as f64, row-major, transformed, with the scan
//! of the raw values. Row-major inputs fill a tile row by row in parallel, column-major ones
//! (dense F order, CSC) column by column into a slot-major buffer that is then transposed.
//! Dense values are read branch-free ([`Quick`]); a row or column holding a negative,
//! non-finite or -0.0 value is scanned again value by value to name the first of each.

use ndarray::ArrayView1;
use rayon::prelude::*;

use super::quick::Lanes;
use super::{bad_index, dup, unsorted, Columns, Index, Matrix, Quick, Scan, Tr, Value, NONE};
use crate::error::Result;

/// Fill `tile` (rows.len() x slots, row-major) with the slots of `rows` (ascending, in range),
/// transformed; returns the scan of the raw values (rows reported as input rows).
pub fn fill_tile<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    transform: bool,
    tile: &mut [f64],
) -> Result<Scan> {
    let k = cols.len();
    debug_assert_eq!(tile.len(), rows.len() * k);
    let tr = Tr::new(transform);
    let mut scan = match m {
        Matrix::Dense(v) if v.nrows() > 1 && v.strides()[0] == 1 => column_walk(m, rows, cols, tr, tile)?,
        Matrix::Csc(..) => column_walk(m, rows, cols, tr, tile)?,
        _ => row_walk(m, rows, cols, tr, tile)?,
    };
    scan.cells = (rows.len() * k) as u64;
    Ok(scan)
}

/// Reads `idx.len()` dense values `get(idx[j])` into `out` (zeros as +0.0, the others
/// transformed); `at(j)`: the (row, slot) of value j for the scan.
#[inline]
fn dense_values<T: Value>(
    get: impl Fn(usize) -> T,
    idx: &[usize],
    at: impl Fn(usize) -> (usize, usize),
    tr: Tr,
    out: &mut [f64],
    scan: &mut Scan,
) {
    let mut q = Quick::default();
    let n4 = idx.len() / 4 * 4;
    let ((o_head, o_rest), (c_head, c_rest)) = (out.split_at_mut(n4), idx.split_at(n4));
    let mut lanes = Lanes::default();
    for (o, c) in o_head.chunks_exact_mut(4).zip(c_head.chunks_exact(4)) {
        let xs = lanes.see([get(c[0]).to_f64(), get(c[1]).to_f64(), get(c[2]).to_f64(), get(c[3]).to_f64()]);
        if tr.on() {
            for l in 0..4 {
                o[l] = if xs[l] != 0.0 { tr.apply(xs[l]) } else { 0.0 };
            }
        } else {
            o.copy_from_slice(&xs);
        }
    }
    lanes.add_to(&mut q);
    for (o, &c) in o_rest.iter_mut().zip(c_rest) {
        let x = get(c).to_f64();
        let nz = x != 0.0;
        q.see_if(x, nz);
        *o = if nz { tr.apply(x) } else { 0.0 };
    }
    if q.clean() {
        q.add_to(scan);
    } else {
        for (j, &c) in idx.iter().enumerate() {
            let x = get(c).to_f64();
            if x != 0.0 {
                let (r, s) = at(j);
                scan.see(r, s, x);
            }
        }
    }
}

/// One dense row's slots (any stride).
fn dense_row<T: Value>(row: ArrayView1<T>, r: usize, cols: &Columns, tr: Tr, out: &mut [f64], scan: &mut Scan) {
    match row.as_slice() {
        Some(sl) => dense_values(|c| sl[c], &cols.cols, |j| (r, j), tr, out, scan),
        None => dense_values(|c| row[c], &cols.cols, |j| (r, j), tr, out, scan),
    }
}

/// One CSR row's slots into `out` (zeroed first); `seen`: the last row that wrote each slot.
#[allow(clippy::too_many_arguments)]
fn csr_row<T: Value, I: Index>(
    sp: &super::Sparse<T, I>,
    n_cols: usize,
    r: usize,
    cols: &Columns,
    tr: Tr,
    out: &mut [f64],
    seen: &mut [usize],
    scan: &mut Scan,
) -> Result<()> {
    out.fill(0.0);
    for p in sp.range(r) {
        let c = sp.indices[p].to_index().filter(|&c| c < n_cols).ok_or_else(|| bad_index(p, n_cols))?;
        let s = cols.slot[c];
        if s == NONE {
            continue;
        }
        let s = s as usize;
        if seen[s] == r {
            return Err(dup(r, c));
        }
        seen[s] = r;
        let x = sp.data[p].to_f64();
        scan.see(r, s, x);
        out[s] = tr.apply(x);
    }
    Ok(())
}

fn row_walk<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    tr: Tr,
    tile: &mut [f64],
) -> Result<Scan> {
    let k = cols.len().max(1);
    tile.par_chunks_mut(k)
        .zip(rows.par_iter())
        .with_min_len(8)
        .try_fold(
            || (Scan::default(), Vec::new()),
            |(mut scan, mut seen), (out, &r)| {
                match m {
                    Matrix::Dense(v) => dense_row(v.row(r), r, cols, tr, out, &mut scan),
                    Matrix::Csr(sp, n_cols) => {
                        seen.resize(cols.len(), usize::MAX);
                        csr_row(sp, *n_cols, r, cols, tr, out, &mut seen, &mut scan)?;
                    }
                    Matrix::Csc(..) => unreachable!("CSC is read by columns"),
                }
                Ok((scan, seen))
            },
        )
        .map(|r| r.map(|(s, _)| s))
        .try_reduce(Scan::default, |a, b| Ok(a.merge(b)))
}

/// Position of an input row within `rows` (ascending).
struct RowPos<'a> {
    rows: &'a [usize],
    lo: usize,
    map: Option<Vec<u32>>,
}

impl<'a> RowPos<'a> {
    fn new(rows: &'a [usize]) -> Self {
        let lo = rows.first().copied().unwrap_or(0);
        let contiguous = rows.last().is_none_or(|&hi| hi - lo + 1 == rows.len());
        let map = (!contiguous).then(|| {
            let mut map = vec![NONE; rows[rows.len() - 1] - lo + 1];
            for (i, &r) in rows.iter().enumerate() {
                map[r - lo] = i as u32;
            }
            map
        });
        RowPos { rows, lo, map }
    }

    #[inline]
    fn get(&self, r: usize) -> Option<usize> {
        let d = r.checked_sub(self.lo)?;
        match &self.map {
            None => (d < self.rows.len()).then_some(d),
            Some(m) => m.get(d).copied().filter(|&p| p != NONE).map(|p| p as usize),
        }
    }
}

/// One CSC column's entries for `rows` into `out` (zeroed), slot `s` of column `c`.
#[allow(clippy::too_many_arguments)]
fn csc_column<T: Value, I: Index>(
    sp: &super::Sparse<T, I>,
    n_rows: usize,
    rows: &[usize],
    pos: &RowPos,
    (s, c): (usize, usize),
    tr: Tr,
    out: &mut [f64],
    scan: &mut Scan,
) -> Result<()> {
    let n = rows.len();
    let mut span = sp.range(c);
    if sp.sorted {
        let idx = &sp.indices[span.clone()];
        let key = |i: &I| i.to_index().unwrap_or(usize::MAX);
        let a = idx.partition_point(|i| key(i) < rows[0]);
        let b = idx.partition_point(|i| key(i) <= rows[n - 1]);
        span = span.start + a..span.start + b;
    }
    let mut seen = if sp.sorted { Vec::new() } else { vec![false; n] };
    let mut prev = None;
    for p in span {
        let r = sp.indices[p].to_index().filter(|&r| r < n_rows).ok_or_else(|| bad_index(p, n_rows))?;
        let Some(i) = pos.get(r) else { continue };
        if sp.sorted {
            match prev.replace(r) {
                Some(q) if q == r => return Err(dup(r, c)),
                Some(q) if q > r => return Err(unsorted(c)),
                _ => {}
            }
        } else if std::mem::replace(&mut seen[i], true) {
            return Err(dup(r, c));
        }
        let x = sp.data[p].to_f64();
        scan.see(r, s, x);
        out[i] = tr.apply(x);
    }
    Ok(())
}

fn column_walk<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    tr: Tr,
    tile: &mut [f64],
) -> Result<Scan> {
    let (n, k) = (rows.len(), cols.len());
    if n == 0 || k == 0 {
        return Ok(Scan::default());
    }
    let pos = RowPos::new(rows);
    let mut buf = vec![0.0; n * k]; // slot-major
    let scan = buf
        .par_chunks_mut(n)
        .enumerate()
        .with_min_len(4)
        .try_fold(Scan::default, |mut scan, (s, out)| {
            let c = cols.cols[s];
            match m {
                Matrix::Dense(v) => {
                    let col = v.column(c);
                    match col.as_slice() {
                        Some(sl) => dense_values(|r| sl[r], rows, |i| (rows[i], s), tr, out, &mut scan),
                        None => dense_values(|r| col[r], rows, |i| (rows[i], s), tr, out, &mut scan),
                    }
                }
                Matrix::Csc(sp, n_rows) => csc_column(sp, *n_rows, rows, &pos, (s, c), tr, out, &mut scan)?,
                Matrix::Csr(..) => unreachable!("CSR is read by rows"),
            }
            Ok(scan)
        })
        .try_reduce(Scan::default, |a, b| Ok(a.merge(b)))?;
    tile.par_chunks_mut(k).enumerate().with_min_len(16).for_each(|(i, out)| {
        for (s, o) in out.iter_mut().enumerate() {
            *o = buf[s * n + i];
        }
    });
    Ok(scan)
}
