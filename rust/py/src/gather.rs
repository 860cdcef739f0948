//! Bindings of `ecorecover_core::gather`: the recovery data path over the caller's own numpy /
//! scipy buffers (no copy): a 2-d numpy array (any strides) or a scipy CSR / CSC matrix or
//! array, values float64/float32/int64/int32/uint32/uint16, indices int32/int64.

use ecorecover_core::gather::{self, Columns, Matrix, Moments, Scaling, Scan, Sparse};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::glue::{enter, indices, slice};

/// Evaluates `$body` with `$m` bound to the [`Matrix`] view of the Python object `$x`.
macro_rules! with_matrix {
    ($x:expr, $m:ident => $body:expr) => {{
        let x: &Bound<'_, PyAny> = $x;
        if x.hasattr("format")? {
            let fmt: String = x.getattr("format")?.extract()?;
            if fmt != "csr" && fmt != "csc" {
                return Err(PyTypeError::new_err(format!("x: a {fmt} matrix; convert it to CSR or CSC")));
            }
            let (n_rows, n_cols): (usize, usize) = x.getattr("shape")?.extract()?;
            let sorted = x.getattr("has_sorted_indices")?.is_truthy()?;
            let (indptr, indices, data) = (x.getattr("indptr")?, x.getattr("indices")?, x.getattr("data")?);
            with_matrix!(@index indptr, indices, data, fmt, n_rows, n_cols, sorted, $m => $body; i32, i64)
        } else {
            with_matrix!(@dense x, $m => $body; f64, f32, i64, i32, u32, u16)
        }
    }};
    (@dense $x:ident, $m:ident => $body:expr; $($t:ty),*) => {'dense: {
        $(if let Ok(a) = $x.extract::<PyReadonlyArray2<$t>>() {
            let $m = Matrix::<$t, i64>::Dense(a.as_array());
            break 'dense ($body);
        })*
        Err(PyTypeError::new_err(unsupported($x)))
    }};
    (@index $p:ident, $i:ident, $d:ident, $fmt:ident, $nr:ident, $nc:ident, $sorted:ident, $m:ident => $body:expr; $($ix:ty),*) => {'index: {
        $(if let (Ok(p), Ok(i)) = ($p.extract::<PyReadonlyArray1<$ix>>(), $i.extract::<PyReadonlyArray1<$ix>>()) {
            let (p, i) = (slice(&p, "indptr")?, slice(&i, "indices")?);
            break 'index with_matrix!(@data $d, p, i, $fmt, $nr, $nc, $sorted, $m => $body; f64, f32, i64, i32, u32, u16);
        })*
        Err(PyTypeError::new_err("x: sparse indices must be int32 or int64 (both the same)"))
    }};
    (@data $d:ident, $p:ident, $i:ident, $fmt:ident, $nr:ident, $nc:ident, $sorted:ident, $m:ident => $body:expr; $($t:ty),*) => {'data: {
        $(if let Ok(d) = $d.extract::<PyReadonlyArray1<$t>>() {
            let d = slice(&d, "data")?;
            let $m = if $fmt == "csr" {
                Matrix::Csr(Sparse::new($p, $i, d, $nr, $sorted).map_err(crate::glue::to_py)?, $nc)
            } else {
                Matrix::Csc(Sparse::new($p, $i, d, $nc, $sorted).map_err(crate::glue::to_py)?, $nr)
            };
            break 'data ($body);
        })*
        Err(PyTypeError::new_err(unsupported(&$d)))
    }};
}

fn unsupported(x: &Bound<'_, PyAny>) -> String {
    let dtype = x.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "?".into());
    format!("x: a 2-d numpy array or scipy CSR/CSC of float64, float32, int64, int32, uint32 or uint16 (native byte order) is needed, got dtype {dtype}")
}

/// The optional scaling arguments `mean` and `sd` (both or neither) as a [`Scaling`].
fn scaling<'a>(
    mean: &'a Option<PyReadonlyArray1<'_, f64>>,
    sd: &'a Option<PyReadonlyArray1<'_, f64>>,
    max: f64,
) -> PyResult<Option<Scaling<'a>>> {
    let mean = mean.as_ref().map(|a| slice(a, "mean")).transpose()?;
    let sd = sd.as_ref().map(|a| slice(a, "sd")).transpose()?;
    match (mean, sd) {
        (Some(mean), Some(sd)) => Ok(Some(Scaling { mean, sd, max })),
        (None, None) => Ok(None),
        _ => Err(PyValueError::new_err("give both mean and sd, or neither")),
    }
}

type Where = Option<(usize, usize, f64)>;
/// (non-finite count, first non-finite, first negative, min, max, implicit zero).
type ScanOut = (u64, Where, Where, f64, f64, bool);

fn scan_out(s: Scan) -> ScanOut {
    (s.nonfinite, s.first_nonfinite, s.first_negative, s.min, s.max, s.implicit_zero())
}

/// Pass 1 over rows `start..stop` (see `ecorecover_core::gather::pass1`); accumulates into
/// `sums`/`nnz`/`lo`/`hi` (n_groups x len(cols)), writes `omitted` (stop - start).
#[pyfunction]
#[pyo3(signature = (x, start, stop, cols, groups, n_groups, scale, transform, sums, nnz, lo, hi, omitted, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn gather_pass1(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    start: usize,
    stop: usize,
    cols: PyReadonlyArray1<'_, i64>,
    groups: PyReadonlyArray1<'_, i64>,
    n_groups: usize,
    scale: bool,
    transform: bool,
    mut sums: PyReadwriteArray1<'_, f64>,
    mut nnz: PyReadwriteArray1<'_, i64>,
    mut lo: PyReadwriteArray1<'_, f64>,
    mut hi: PyReadwriteArray1<'_, f64>,
    mut omitted: PyReadwriteArray1<'_, bool>,
    n_threads: Option<usize>,
) -> PyResult<ScanOut> {
    let (c, g) = (slice(&cols, "cols")?, slice(&groups, "groups")?);
    let mut_slice = |name: &str| PyValueError::new_err(format!("{name} must be a contiguous writable 1-d array"));
    let sum = sums.as_slice_mut().map_err(|_| mut_slice("sums"))?;
    let nnz = nnz.as_slice_mut().map_err(|_| mut_slice("nnz"))?;
    let lo = lo.as_slice_mut().map_err(|_| mut_slice("lo"))?;
    let hi = hi.as_slice_mut().map_err(|_| mut_slice("hi"))?;
    let om = omitted.as_slice_mut().map_err(|_| mut_slice("omitted"))?;
    with_matrix!(x, m => {
        enter(py, n_threads, || {
            let columns = Columns::new(c, m.shape().1)?;
            let acc = Moments { sum, nnz, lo, hi };
            gather::pass1(&m, start..stop, &columns, g, n_groups, scale, transform, acc, om).map(scan_out)
        })
    })
}

/// Pass 2 over rows `start..stop`: adds the squared deviations of the scored cells' non-zeros
/// from `mean` (n_groups x len(cols)) to `sq`; `groups`: -1 for cells not scored or omitted.
#[pyfunction]
#[pyo3(signature = (x, start, stop, cols, groups, mean, transform, sq, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn gather_pass2(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    start: usize,
    stop: usize,
    cols: PyReadonlyArray1<'_, i64>,
    groups: PyReadonlyArray1<'_, i64>,
    mean: PyReadonlyArray1<'_, f64>,
    transform: bool,
    mut sq: PyReadwriteArray1<'_, f64>,
    n_threads: Option<usize>,
) -> PyResult<()> {
    let (c, g, mu) = (slice(&cols, "cols")?, slice(&groups, "groups")?, slice(&mean, "mean")?);
    let sq = sq.as_slice_mut().map_err(|_| PyValueError::new_err("sq must be a contiguous writable 1-d array"))?;
    with_matrix!(x, m => {
        enter(py, n_threads, || {
            let columns = Columns::new(c, m.shape().1)?;
            gather::pass2(&m, start..stop, &columns, g, mu, transform, sq)
        })
    })
}

type RunV<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>);

/// A run's V (features x cells) and the kept features' indices (into pos genes then neg genes,
/// or the genes without posneg): only features in W (`in_w`) and not constant over the run.
#[pyfunction]
#[pyo3(signature = (x, rows, cols, mean, sd, posneg, transform, in_w, scale_max=10.0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn gather_run_v<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: PyReadonlyArray1<'py, i64>,
    cols: PyReadonlyArray1<'py, i64>,
    mean: Option<PyReadonlyArray1<'py, f64>>,
    sd: Option<PyReadonlyArray1<'py, f64>>,
    posneg: bool,
    transform: bool,
    in_w: PyReadonlyArray1<'py, bool>,
    scale_max: f64,
    n_threads: Option<usize>,
) -> PyResult<RunV<'py>> {
    let (r, c, w) = (indices(&rows, "rows")?, slice(&cols, "cols")?, slice(&in_w, "in_w")?);
    let sc = scaling(&mean, &sd, scale_max)?;
    let (v, kept) = with_matrix!(x, m => {
        enter(py, n_threads, || gather::run_features(&m, &r, &Columns::new(c, m.shape().1)?, sc, posneg, transform, w))
    })?;
    let kept: Vec<i64> = kept.into_iter().map(|f| f as i64).collect();
    Ok((v.into_pyarray(py), kept.into_pyarray(py)))
}

/// A run's cells x len(cols) block, transformed, scaled when mean and sd are given.
#[pyfunction]
#[pyo3(signature = (x, rows, cols, mean=None, sd=None, transform=false, scale_max=10.0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn gather_dense<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: PyReadonlyArray1<'py, i64>,
    cols: PyReadonlyArray1<'py, i64>,
    mean: Option<PyReadonlyArray1<'py, f64>>,
    sd: Option<PyReadonlyArray1<'py, f64>>,
    transform: bool,
    scale_max: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (r, c) = (indices(&rows, "rows")?, slice(&cols, "cols")?);
    let sc = scaling(&mean, &sd, scale_max)?;
    let z = with_matrix!(x, m => {
        enter(py, n_threads, || gather::extract_dense(&m, &r, &Columns::new(c, m.shape().1)?, sc, transform))
    })?;
    Ok(z.into_pyarray(py))
}

type Csr<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>);

/// A run's cells x len(cols) block as CSR (indptr, indices, data), transformed, zeros left out.
#[pyfunction]
#[pyo3(signature = (x, rows, cols, transform=false, n_threads=None))]
fn gather_csr<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: PyReadonlyArray1<'py, i64>,
    cols: PyReadonlyArray1<'py, i64>,
    transform: bool,
    n_threads: Option<usize>,
) -> PyResult<Csr<'py>> {
    let (r, c) = (indices(&rows, "rows")?, slice(&cols, "cols")?);
    let (p, i, d) = with_matrix!(x, m => {
        enter(py, n_threads, || gather::extract_csr(&m, &r, &Columns::new(c, m.shape().1)?, transform))
    })?;
    Ok((p.into_pyarray(py), i.into_pyarray(py), d.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gather_pass1, m)?)?;
    m.add_function(wrap_pyfunction!(gather_pass2, m)?)?;
    m.add_function(wrap_pyfunction!(gather_run_v, m)?)?;
    m.add_function(wrap_pyfunction!(gather_dense, m)?)?;
    m.add_function(wrap_pyfunction!(gather_csr, m)?)?;
    Ok(())
}
