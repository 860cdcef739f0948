//! Bindings of `ecorecover_core::nmf`.

use ecorecover_core::nmf::{self, StopRule};
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::glue::enter_cancellable;

type Fit<'py> = (Bound<'py, PyArray2<f64>>, usize);

/// H-step with W fixed (V m x n, W m x k, H0 k x n) -> (H, iterations).
#[pyfunction]
#[pyo3(signature = (v, w, h0, max_iter=2000, every=10, stationary=40, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn update_h<'py>(
    py: Python<'py>,
    v: PyReadonlyArray2<'py, f64>,
    w: PyReadonlyArray2<'py, f64>,
    h0: PyReadonlyArray2<'py, f64>,
    max_iter: usize,
    every: usize,
    stationary: usize,
    n_threads: Option<usize>,
) -> PyResult<Fit<'py>> {
    let rule = StopRule { max_iter, every, stationary };
    let (v, w, h0) = (v.as_array(), w.as_array(), h0.as_array());
    let (h, it) = enter_cancellable(py, n_threads, |cancel| nmf::update_h(v, w, h0, &rule, cancel))?;
    Ok((h.into_pyarray(py), it))
}

/// W-step with H fixed (V m x n, W0 m x k, H k x n) -> (W, iterations).
#[pyfunction]
#[pyo3(signature = (v, w0, h, max_iter=2000, every=10, stationary=40, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn update_w<'py>(
    py: Python<'py>,
    v: PyReadonlyArray2<'py, f64>,
    w0: PyReadonlyArray2<'py, f64>,
    h: PyReadonlyArray2<'py, f64>,
    max_iter: usize,
    every: usize,
    stationary: usize,
    n_threads: Option<usize>,
) -> PyResult<Fit<'py>> {
    let rule = StopRule { max_iter, every, stationary };
    let (v, w0, h) = (v.as_array(), w0.as_array(), h.as_array());
    let (w, it) = enter_cancellable(py, n_threads, |cancel| nmf::update_w(v, w0, h, &rule, cancel))?;
    Ok((w.into_pyarray(py), it))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(update_h, m)?)?;
    m.add_function(wrap_pyfunction!(update_w, m)?)?;
    Ok(())
}
