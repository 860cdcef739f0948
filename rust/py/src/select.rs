//! Bindings of `ecorecover_core::select`: R's feature selection and `rowSums` order.

use ecorecover_core::select;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::glue::enter;

/// R's `rowSums` (extended-precision sums in column order, rounded to double).
#[pyfunction]
fn row_sums_ld<'py>(py: Python<'py>, w: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let w = w.as_array();
    Ok(enter(py, None, || Ok(select::row_sums_ld(w)))?.into_pyarray(py))
}

/// R's feature selection on W (features x SEs): kept row indices by decreasing `rowSums`.
#[pyfunction]
#[pyo3(signature = (w, row_gene, n_per_se=None))]
fn select_rows<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f64>,
    row_gene: PyReadonlyArray1<'py, i64>,
    n_per_se: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let w = w.as_array();
    let genes = row_gene.as_array().to_vec();
    let rows = enter(py, None, || select::select_rows(w, &genes, n_per_se))?;
    Ok(rows.into_iter().map(|i| i as i64).collect::<Vec<i64>>().into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(row_sums_ld, m)?)?;
    m.add_function(wrap_pyfunction!(select_rows, m)?)?;
    Ok(())
}
