//! Bindings of `ecorecover_core::select` (R's feature selection and `rowSums` order) and of
//! `ecorecover_core::groups` (training's per-SE sums and gene ranges).

use ecorecover_core::{groups, select};
use numpy::{IntoPyArray, Ix1, Ix2, PyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::glue::{enter, indices};

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

/// Minimum and maximum of every column of `z` over `rows` (NaN counted as 0).
/// Two arrays of one shape.
type Pair<'py, D> = (Bound<'py, PyArray<f64, D>>, Bound<'py, PyArray<f64, D>>);

/// Runs on the calling thread.
#[pyfunction]
fn column_ranges<'py>(
    py: Python<'py>,
    z: PyReadonlyArray2<'py, f64>,
    rows: PyReadonlyArray1<'py, i64>,
) -> PyResult<Pair<'py, Ix1>> {
    let (z, rows) = (z.as_array(), indices(&rows, "rows")?);
    let (lo, hi) = enter(py, None, || groups::column_ranges(z, &rows))?;
    Ok((lo.into_pyarray(py), hi.into_pyarray(py)))
}

/// Per-group sums of `max(z, 0)` and `max(-z, 0)` over `rows[starts[a]:starts[a + 1]]`, added
/// as `numpy.add.reduceat` adds rows: (pos, neg), groups x columns. Runs on the calling thread.
#[pyfunction]
fn posneg_group_sums<'py>(
    py: Python<'py>,
    z: PyReadonlyArray2<'py, f64>,
    rows: PyReadonlyArray1<'py, i64>,
    starts: PyReadonlyArray1<'py, i64>,
) -> PyResult<Pair<'py, Ix2>> {
    let (z, rows, starts) = (z.as_array(), indices(&rows, "rows")?, indices(&starts, "starts")?);
    let (pos, neg) = enter(py, None, || groups::posneg_group_sums(z, &rows, &starts))?;
    Ok((pos.into_pyarray(py), neg.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(row_sums_ld, m)?)?;
    m.add_function(wrap_pyfunction!(select_rows, m)?)?;
    m.add_function(wrap_pyfunction!(column_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(posneg_group_sums, m)?)?;
    Ok(())
}
