//! `ecorecover._core`: the PyO3 binding of `ecorecover-core`.
//!
//! This crate only converts arrays, releases the GIL around the heavy work, runs it in a
//! rayon pool of the requested size, and maps errors and panics to Python exceptions (see
//! [`glue`]). All numerics live in the core crate.

use pyo3::prelude::*;

mod fast;
mod gather;
mod glue;
mod nmf;
mod preprocess;
mod rng;
mod select;
mod spatial;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    preprocess::register(m)?;
    nmf::register(m)?;
    fast::register(m)?;
    gather::register(m)?;
    rng::register(m)?;
    select::register(m)?;
    spatial::register(m)?;
    m.add_class::<glue::CancelToken>()?;
    m.add_function(wrap_pyfunction!(glue::build_info, m)?)?;
    glue::register_test_hooks(m)?;
    Ok(())
}
