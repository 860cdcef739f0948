//! Binding of `ecorecover_core::rng::RRandom`.

use ecorecover_core::rng::RRandom as Core;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::glue::to_py;

/// R's default generator after `set.seed(seed)`; state carries across calls as in R.
#[pyclass(module = "ecorecover._core")]
struct RRandom {
    inner: Core,
}

#[pymethods]
impl RRandom {
    #[new]
    fn new(seed: i32) -> Self {
        RRandom { inner: Core::new(seed) }
    }

    /// One draw of R's `unif_rand()`.
    fn unif_rand(&mut self) -> f64 {
        self.inner.unif_rand()
    }

    /// R's `runif(n, min, max)`.
    #[pyo3(signature = (n, min=0.0, max=1.0))]
    fn runif<'py>(&mut self, py: Python<'py>, n: usize, min: f64, max: f64) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.inner.runif(n, min, max).map_err(to_py)?.into_pyarray(py))
    }

    /// R's `sample.int(n, k)` (1-based values, as float64 so n may exceed 2^31).
    fn sample_int<'py>(&mut self, py: Python<'py>, n: f64, k: usize) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.inner.sample_int(n, k).map_err(to_py)?.into_pyarray(py))
    }

    /// R's `sample.int(n, k, replace = TRUE)` (1-based values, float64).
    fn sample_int_replace<'py>(&mut self, py: Python<'py>, n: f64, k: usize) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.inner.sample_int_replace(n, k).map_err(to_py)?.into_pyarray(py))
    }

    /// R's `rnorm(n, mean, sd)` (normal.kind "Inversion").
    #[pyo3(signature = (n, mean=0.0, sd=1.0))]
    fn rnorm<'py>(&mut self, py: Python<'py>, n: usize, mean: f64, sd: f64) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.inner.rnorm(n, mean, sd).map_err(to_py)?.into_pyarray(py))
    }
}

/// R's `qnorm(p, mean, sd)` (lower tail, p not logged), elementwise.
#[pyfunction]
#[pyo3(signature = (p, mean=0.0, sd=1.0))]
fn qnorm<'py>(py: Python<'py>, p: Vec<f64>, mean: f64, sd: f64) -> Bound<'py, PyArray1<f64>> {
    p.iter().map(|&x| ecorecover_core::rng::qnorm(x, mean, sd)).collect::<Vec<f64>>().into_pyarray(py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RRandom>()?;
    m.add_function(wrap_pyfunction!(qnorm, m)?)
}
