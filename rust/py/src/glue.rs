//! The one way into the core: detach from the interpreter, run in a rayon pool of the asked
//! size, catch panics, map errors.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ecorecover_core::CoreError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// Map a core error to the Python exception users already catch.
pub fn to_py(err: CoreError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// Run `f` without the GIL, in a pool of `n_threads` threads (None: rayon's global pool),
/// turning a panic into a `RuntimeError` instead of taking the interpreter down.
pub fn enter<T, F>(py: Python<'_>, n_threads: Option<usize>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, CoreError> + Send,
{
    let outcome = py.detach(move || {
        catch_unwind(AssertUnwindSafe(move || match n_threads {
            Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => pool.install(f),
                Err(e) => Err(CoreError::InvalidArgument(format!("cannot start {n} threads: {e}"))),
            },
            _ => f(),
        }))
    });
    match outcome {
        Ok(res) => res.map_err(to_py),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("internal error in ecorecover's core (please report it): {msg}")))
        }
    }
}

/// A contiguous 1-d numpy array as a slice, or a `ValueError` naming the argument.
pub fn slice<'a, T: numpy::Element>(a: &'a numpy::PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be a contiguous 1-d array")))
}

/// Versions and build facts for bug reports.
#[pyfunction]
pub fn build_info() -> Vec<(String, String)> {
    vec![
        ("core_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("rayon_threads".into(), rayon::current_num_threads().to_string()),
        ("target_arch".into(), std::env::consts::ARCH.into()),
        ("debug_assertions".into(), cfg!(debug_assertions).to_string()),
        ("simd".into(), ecorecover_core::nmf::simd_level().into()),
    ]
}

/// Raise a panic inside the core's entry path: lets the tests prove that a Rust panic
/// becomes a Python `RuntimeError` instead of aborting the interpreter.
#[pyfunction]
pub fn _panic_for_tests(py: Python<'_>, message: String) -> PyResult<()> {
    enter(py, Some(1), move || -> Result<(), CoreError> { panic!("{message}") })
}
