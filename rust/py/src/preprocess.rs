//! Bindings of `ecorecover_core::preprocess`.

use ecorecover_core::preprocess::{self, ScaleMethod};
use ecorecover_core::sparse::Compressed;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::glue::{enter, parameter_error, slice};

fn method(name: &str) -> PyResult<ScaleMethod> {
    match name {
        "sparse" => Ok(ScaleMethod::Sparse),
        "dense" => Ok(ScaleMethod::Dense),
        other => Err(parameter_error(format!("method must be 'sparse' or 'dense', got {other:?}"))),
    }
}

#[pyfunction]
#[pyo3(signature = (x, scale_factor=10000.0, n_threads=None))]
fn log_normalize_dense<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    scale_factor: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let x = x.as_array();
    Ok(enter(py, n_threads, || preprocess::log_normalize_dense(x, scale_factor))?.into_pyarray(py))
}

/// Log-normalise compressed storage; `csr=True` means the major axis is cells.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_major, n_minor, csr, scale_factor=10000.0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn log_normalize_compressed<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, f64>,
    n_major: usize,
    n_minor: usize,
    csr: bool,
    scale_factor: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (p, i, d) = (slice(&indptr, "indptr")?, slice(&indices, "indices")?, slice(&data, "data")?);
    let out = enter(py, n_threads, || {
        let c = Compressed::new(p, i, d, n_major, n_minor)?;
        if csr {
            preprocess::log_normalize_csr(&c, scale_factor)
        } else {
            preprocess::log_normalize_csc(&c, scale_factor)
        }
    })?;
    Ok(out.into_pyarray(py))
}

#[pyfunction]
#[pyo3(signature = (x, method="sparse", scale_max=10.0, n_threads=None))]
fn scale_dense<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    method: &str,
    scale_max: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let m = self::method(method)?;
    let x = x.as_array();
    Ok(enter(py, n_threads, || preprocess::scale_dense(x, m, scale_max))?.into_pyarray(py))
}

/// Scale a CSC cells x genes matrix (major = genes) into a dense cells x genes array.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_genes, n_cells, method="sparse", scale_max=10.0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn scale_csc<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, f64>,
    n_genes: usize,
    n_cells: usize,
    method: &str,
    scale_max: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let m = self::method(method)?;
    let (p, i, d) = (slice(&indptr, "indptr")?, slice(&indices, "indices")?, slice(&data, "data")?);
    let out = enter(py, n_threads, || {
        let c = Compressed::new(p, i, d, n_genes, n_cells)?;
        preprocess::scale_csc(&c, m, scale_max)
    })?;
    Ok(out.into_pyarray(py))
}

#[pyfunction]
fn posneg<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let x = x.as_array();
    Ok(enter(py, None, || Ok(preprocess::posneg(x)))?.into_pyarray(py))
}

#[pyfunction]
fn constant_columns<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let x = x.as_array();
    Ok(enter(py, None, || Ok(preprocess::constant_columns(x)))?.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(log_normalize_dense, m)?)?;
    m.add_function(wrap_pyfunction!(log_normalize_compressed, m)?)?;
    m.add_function(wrap_pyfunction!(scale_dense, m)?)?;
    m.add_function(wrap_pyfunction!(scale_csc, m)?)?;
    m.add_function(wrap_pyfunction!(posneg, m)?)?;
    m.add_function(wrap_pyfunction!(constant_columns, m)?)?;
    Ok(())
}
