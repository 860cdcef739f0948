//! Seurat-equivalent building blocks: LogNormalize, ScaleData (both of Seurat's code paths),
//! posneg and the constant-row test behind the zero-variance filter.
//!
//! Matrices are cells x genes (AnnData orientation). Scaling works per gene (column) over the
//! cells (rows) and is parallel over genes; every sum runs sequentially in cell order, so the
//! bits do not depend on the number of threads.

use ndarray::{Array2, ArrayView2, Axis, ShapeBuilder, Zip};
use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::longdouble::ld_mean;
use crate::sparse::Compressed;

/// Seurat's `scale.max`: scaled values above it are set to it (no lower clip).
pub const DEFAULT_SCALE_MAX: f64 = 10.0;

/// Which of Seurat's two `ScaleData` code paths to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleMethod {
    /// `FastSparseRowScale` (a dgCMatrix input, as in all of R's training and recovery):
    /// mean = (sequential sum of the non-zeros) / n,
    /// var = (sum over non-zeros of (x - mean)^2 + mean^2 * n_zeros) / (n - 1).
    Sparse,
    /// `FastRowScale` (a dense matrix input): mean from a sequential double sum, mean square
    /// in long double (x87 extended precision, emulated by [`crate::longdouble`]); within
    /// 1.8e-15 of R's dense path.
    Dense,
}

fn check_finite(values: &[f64], what: &str) -> Result<()> {
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite(format!("{what} holds {} at stored position {pos}", values[pos])));
    }
    Ok(())
}

fn check_counts(values: &[f64], what: &str) -> Result<()> {
    check_finite(values, what)?;
    if let Some(pos) = values.iter().position(|&v| v < 0.0) {
        return Err(CoreError::Negative(format!(
            "{what} holds the negative count {} at stored position {pos}; \
             log-normalisation needs raw, non-negative counts",
            values[pos]
        )));
    }
    Ok(())
}

#[inline]
fn lognorm_value(c: f64, total: f64, scale_factor: f64) -> f64 {
    if c == 0.0 || total == 0.0 {
        0.0
    } else {
        // Seurat: log1p(c / colsum * scale_factor), glibc's log1p.
        (c / total * scale_factor).ln_1p()
    }
}

/// Seurat LogNormalize of a dense cells x genes matrix: `log1p(c / rowsum * scale_factor)`.
/// A cell with no counts stays all zero.
pub fn log_normalize_dense(x: ArrayView2<f64>, scale_factor: f64) -> Result<Array2<f64>> {
    if let Some(v) = x.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite(format!("counts hold {v}")));
    }
    if let Some(v) = x.iter().find(|&&v| v < 0.0) {
        return Err(CoreError::Negative(format!(
            "counts hold the negative value {v}; log-normalisation needs raw, non-negative counts"
        )));
    }
    let mut out = Array2::<f64>::zeros(x.raw_dim());
    Zip::from(out.axis_iter_mut(Axis(0))).and(x.axis_iter(Axis(0))).par_for_each(|mut o, row| {
        let total = row.iter().fold(0.0, |s, &v| s + v);
        for (o, &c) in o.iter_mut().zip(row.iter()) {
            *o = lognorm_value(c, total, scale_factor);
        }
    });
    Ok(out)
}

/// Seurat LogNormalize of a CSR cells x genes matrix (major axis = cells). Returns the new
/// `data` array; the structure is unchanged.
pub fn log_normalize_csr(x: &Compressed, scale_factor: f64) -> Result<Vec<f64>> {
    check_counts(x.data, "counts")?;
    let mut out = vec![0.0; x.data.len()];
    let chunks: Vec<(usize, &mut [f64])> = split_by_indptr(x.indptr, &mut out);
    chunks.into_par_iter().for_each(|(i, o)| {
        let (_, vals) = x.slice(i);
        let total = vals.iter().fold(0.0, |s, &v| s + v);
        for (o, &c) in o.iter_mut().zip(vals) {
            *o = lognorm_value(c, total, scale_factor);
        }
    });
    Ok(out)
}

/// Seurat LogNormalize of a CSC cells x genes matrix (major axis = genes, minor = cells).
/// Cell totals accumulate in gene order, as R's column sums of a genes x cells dgCMatrix do.
pub fn log_normalize_csc(x: &Compressed, scale_factor: f64) -> Result<Vec<f64>> {
    check_counts(x.data, "counts")?;
    let mut totals = vec![0.0; x.n_minor];
    for g in 0..x.n_major {
        let (idx, vals) = x.slice(g);
        for (&c, &v) in idx.iter().zip(vals) {
            totals[c as usize] += v;
        }
    }
    let mut out = vec![0.0; x.data.len()];
    let chunks: Vec<(usize, &mut [f64])> = split_by_indptr(x.indptr, &mut out);
    chunks.into_par_iter().for_each(|(g, o)| {
        let (idx, vals) = x.slice(g);
        for ((o, &c), &v) in o.iter_mut().zip(idx).zip(vals) {
            *o = lognorm_value(v, totals[c as usize], scale_factor);
        }
    });
    Ok(out)
}

fn split_by_indptr<'b>(indptr: &[i64], out: &'b mut [f64]) -> Vec<(usize, &'b mut [f64])> {
    let mut rest = out;
    let mut chunks = Vec::with_capacity(indptr.len().saturating_sub(1));
    for (i, w) in indptr.windows(2).enumerate() {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) as usize);
        chunks.push((i, head));
        rest = tail;
    }
    chunks
}

/// Mean and variance of one gene over `n` cells whose non-zero values are `nz` (in cell
/// order); the other `n - nz.len()` cells are zero.
fn gene_moments(nz: &[f64], n: usize, dense: Option<&[f64]>, method: ScaleMethod) -> (f64, f64) {
    let nf = n as f64;
    match method {
        ScaleMethod::Sparse => {
            let sum = nz.iter().fold(0.0, |s, &v| s + v);
            let mean = sum / nf;
            let sq = nz.iter().fold(0.0, |s, &v| s + (v - mean) * (v - mean));
            let n_zeros = (n - nz.len()) as f64;
            let var = (sq + mean * mean * n_zeros) / (nf - 1.0);
            (mean, var)
        }
        ScaleMethod::Dense => {
            let all = dense.expect("dense path needs every value");
            // The fixture pins the mean down as a sequential double sum (a long-double mean of
            // a constant gene would be exact, and R's is not); the mean square accumulates in
            // long double. Matches R's dense path to <= 1.8e-15 (not bit for bit).
            let mean = all.iter().fold(0.0, |s, &v| s + v) / nf;
            let ms = ld_mean(all.iter().map(|&v| (v - mean) * (v - mean)), n);
            let var = ms * nf / (nf - 1.0);
            (mean, var)
        }
    }
}

/// ScaleData's value: `(x - mean) / sd`, NaN -> 0, values above `scale_max` set to it.
#[inline]
pub fn scaled(x: f64, mean: f64, sd: f64, scale_max: f64) -> f64 {
    let z = (x - mean) / sd;
    if z.is_nan() {
        0.0
    } else if z > scale_max {
        scale_max
    } else {
        z
    }
}

/// Seurat `ScaleData` of a dense cells x genes matrix, per gene over the cells. The result is
/// column-major (genes contiguous).
pub fn scale_dense(x: ArrayView2<f64>, method: ScaleMethod, scale_max: f64) -> Result<Array2<f64>> {
    if let Some(v) = x.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite(format!("the matrix to scale holds {v}")));
    }
    let (n, g) = x.dim();
    let mut out = Array2::<f64>::zeros((n, g).f());
    Zip::from(out.axis_iter_mut(Axis(1))).and(x.axis_iter(Axis(1))).par_for_each(|mut o, col| {
        let all: Vec<f64> = col.iter().copied().collect();
        let nz: Vec<f64> = all.iter().copied().filter(|&v| v != 0.0).collect();
        let (mean, var) = gene_moments(&nz, n, Some(&all), method);
        let sd = var.sqrt();
        for (o, &v) in o.iter_mut().zip(all.iter()) {
            *o = scaled(v, mean, sd, scale_max);
        }
    });
    Ok(out)
}

/// Seurat `ScaleData` of a CSC cells x genes matrix (major = genes, minor = cells, indices
/// sorted within each gene). Returns a dense column-major cells x genes matrix.
pub fn scale_csc(x: &Compressed, method: ScaleMethod, scale_max: f64) -> Result<Array2<f64>> {
    check_finite(x.data, "the matrix to scale")?;
    let n = x.n_minor;
    let mut out = Array2::<f64>::zeros((n, x.n_major).f());
    out.axis_iter_mut(Axis(1)).into_par_iter().enumerate().for_each(|(gi, mut o)| {
        let (idx, vals) = x.slice(gi);
        let mut dense_col = vec![0.0; n];
        for (&c, &v) in idx.iter().zip(vals) {
            dense_col[c as usize] = v;
        }
        let nz: Vec<f64> = vals.iter().copied().filter(|&v| v != 0.0).collect();
        let (mean, var) = gene_moments(&nz, n, Some(&dense_col), method);
        let sd = var.sqrt();
        for (o, &v) in o.iter_mut().zip(dense_col.iter()) {
            *o = scaled(v, mean, sd, scale_max);
        }
    });
    Ok(out)
}

/// posneg of a cells x genes matrix: `[max(X, 0) | max(-X, 0)]`, cells x 2 genes.
pub fn posneg(x: ArrayView2<f64>) -> Array2<f64> {
    let (n, g) = x.dim();
    // Walk the input in its own memory order and write the output in the same order, so
    // both are read and written contiguously (a strided walk is ~20x slower).
    if x.is_standard_layout() {
        let mut out = Array2::<f64>::zeros((n, 2 * g));
        for (row, mut o) in x.outer_iter().zip(out.outer_iter_mut()) {
            let (pos, neg) = o.as_slice_mut().expect("a fresh standard-layout row").split_at_mut(g);
            for ((&v, p), q) in row.iter().zip(pos.iter_mut()).zip(neg.iter_mut()) {
                (*p, *q) = split_sign(v);
            }
        }
        return out;
    }
    let mut out = Array2::<f64>::zeros((n, 2 * g).f());
    for (j, col) in x.axis_iter(Axis(1)).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            (out[[i, j]], out[[i, g + j]]) = split_sign(v);
        }
    }
    out
}

/// `(max(v, 0), max(-v, 0))`, with +0.0 for zeros of either sign and for NaN.
#[inline]
fn split_sign(v: f64) -> (f64, f64) {
    if v > 0.0 {
        (v, 0.0)
    } else if v < 0.0 {
        (0.0, -v)
    } else {
        (0.0, 0.0)
    }
}

/// For each column of a cells x features matrix: true when every cell holds the same value
/// (zero variance; such rows are dropped after posneg). NaN never equals anything, so a column
/// holding one is not constant.
pub fn constant_columns(x: ArrayView2<f64>) -> Vec<bool> {
    let (n, g) = x.dim();
    if n == 0 {
        return vec![true; g];
    }
    if x.is_standard_layout() {
        // row by row against the first row: contiguous reads
        let first = x.row(0);
        let mut constant = vec![true; g];
        for row in x.outer_iter().skip(1) {
            for ((c, &v), &f) in constant.iter_mut().zip(row.iter()).zip(first.iter()) {
                *c &= v == f;
            }
        }
        return constant;
    }
    x.axis_iter(Axis(1))
        .into_par_iter()
        .map(|col| {
            let first = col[0];
            col.iter().all(|&v| v == first)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn empty_cell_stays_zero() {
        let x = array![[0.0, 0.0], [1.0, 3.0]];
        let y = log_normalize_dense(x.view(), 1e4).unwrap();
        assert_eq!(y[[0, 0]], 0.0);
        assert_eq!(y[[1, 0]], (0.25f64 * 1e4).ln_1p());
    }

    #[test]
    fn negative_counts_are_refused() {
        let x = array![[0.0, -1.0]];
        assert!(matches!(log_normalize_dense(x.view(), 1e4), Err(CoreError::Negative(_))));
    }

    #[test]
    fn posneg_and_constant_columns_agree_across_layouts() {
        let x = array![[1.5, -2.0, 0.0, f64::NAN], [-0.0, 3.0, 0.0, 1.0], [1.5, -1.0, 0.0, 1.0]];
        let ft = x.t().as_standard_layout().into_owned();
        let f = ft.t(); // the same values, column-major
        assert!(!f.is_standard_layout());
        let (pc, pf) = (posneg(x.view()), posneg(f.view()));
        assert!(pc.is_standard_layout());
        assert_eq!(
            pc.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            pf.as_standard_layout().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(pc.row(1).to_vec(), vec![0.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(pc.iter().all(|v| v.to_bits() != (-0.0f64).to_bits()));
        assert_eq!(constant_columns(x.view()), vec![false, false, true, false]);
        assert_eq!(constant_columns(f.view()), vec![false, false, true, false]);
        assert_eq!(constant_columns(x.slice(ndarray::s![..0, ..]).view()), vec![true; 4]);
    }

    #[test]
    fn posneg_splits_signs() {
        let x = array![[1.5, -2.0], [0.0, 3.0]];
        let y = posneg(x.view());
        assert_eq!(y, array![[1.5, 0.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0]]);
    }

    #[test]
    fn zero_gene_scales_to_zero_and_clip_is_upper_only() {
        let mut x = Array2::<f64>::zeros((200, 2));
        x[[0, 1]] = 100.0;
        x[[1, 1]] = -0.5;
        let y = scale_dense(x.view(), ScaleMethod::Sparse, 10.0).unwrap();
        assert!(y.column(0).iter().all(|&v| v == 0.0));
        assert_eq!(y[[0, 1]], 10.0);
        assert!(y[[1, 1]] < 0.0);
    }
}
