//! Bindings of `ecorecover_core::fast`: the per-cell recovery solver and R's sum-to-one.

use ecorecover_core::fast::{self, FastOptions, GeneModel, Scaling};
use ecorecover_core::sparse::Compressed;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::glue::{enter, enter_cancellable, slice};

type Solved<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<u32>>);

/// Per-cell KL solve of a CSR block (cells x model genes): returns (H cells x k, iterations).
/// `wpos`/`wneg` are g x k (NaN rows: feature unused); `mean`/`sd` None: no scaling.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_genes, wpos, wneg, posneg, mean=None, sd=None, scale_max=10.0, max_iter=100, tol=1e-10, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn solve_h_fast<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, f64>,
    n_genes: usize,
    wpos: PyReadonlyArray2<'py, f64>,
    wneg: PyReadonlyArray2<'py, f64>,
    posneg: bool,
    mean: Option<PyReadonlyArray1<'py, f64>>,
    sd: Option<PyReadonlyArray1<'py, f64>>,
    scale_max: f64,
    max_iter: usize,
    tol: f64,
    n_threads: Option<usize>,
) -> PyResult<Solved<'py>> {
    let (p, i, d) = (slice(&indptr, "indptr")?, slice(&indices, "indices")?, slice(&data, "data")?);
    let mean = mean.as_ref().map(|m| slice(m, "mean")).transpose()?;
    let sd = sd.as_ref().map(|m| slice(m, "sd")).transpose()?;
    let scaling = match (mean, sd) {
        (Some(mean), Some(sd)) => Some(Scaling { mean, sd, scale_max }),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give both mean and sd, or neither")),
    };
    let (wpos, wneg) = (wpos.as_array(), wneg.as_array());
    let n_cells = p.len().saturating_sub(1);
    let opts = FastOptions { max_iter, tol };
    let (h, it) = enter_cancellable(py, n_threads, |cancel| {
        let x = Compressed::new(p, i, d, n_cells, n_genes)?;
        let model = GeneModel { wpos, wneg, posneg };
        fast::solve_cells(&x, &model, scaling, &opts, cancel)
    })?;
    Ok((h.into_pyarray(py), it.into_pyarray(py)))
}

/// Each row (cell) divided by its sum accumulated in x87 long double (R's colSums on H).
#[pyfunction]
#[pyo3(signature = (h, n_threads=None))]
fn sum_to_one_rows<'py>(
    py: Python<'py>,
    h: PyReadonlyArray2<'py, f64>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let h = h.as_array();
    Ok(enter(py, n_threads, || Ok(fast::sum_to_one_rows(h)))?.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(solve_h_fast, m)?)?;
    m.add_function(wrap_pyfunction!(sum_to_one_rows, m)?)?;
    Ok(())
}
