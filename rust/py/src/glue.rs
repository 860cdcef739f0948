//! The one way into the core: detach from the interpreter, run in a rayon pool of the asked
//! size, catch panics, map errors, and let Ctrl-C and [`CancelToken`]s stop the long kernels.
//!
//! Interrupts. Python runs signal handlers in the main thread only, and only between
//! bytecodes, so a kernel holding the main thread for minutes would delay Ctrl-C by as long.
//! [`enter_cancellable`] called from the main thread therefore runs the kernel on a helper
//! thread and waits for it, calling `PyErr_CheckSignals` every [`POLL`]; when a handler raises
//! (KeyboardInterrupt) it sets the kernel's [`Cancel`] flag, waits for the kernel to notice
//! (milliseconds) and raises the handler's exception. Kernels running in other threads (as in
//! `recover`'s worker pool) never see a signal: the thread that does tells them to stop through
//! a [`CancelToken`] whose `run` method the work was started with.

use std::cell::RefCell;
use std::os::raw::c_ulong;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ecorecover_core::{Cancel, CoreError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::import_exception!(concurrent.futures, CancelledError);

/// How often the main thread looks for signals while a kernel runs.
pub const POLL: Duration = Duration::from_millis(50);

thread_local! {
    /// Flags of the `CancelToken.run` calls active on this thread, innermost last.
    static TOKENS: RefCell<Vec<Arc<Cancel>>> = const { RefCell::new(Vec::new()) };
    /// Kernel counters of the same tokens (see [`CancelToken::running`]).
    static RUNNING: RefCell<Vec<Arc<AtomicUsize>>> = const { RefCell::new(Vec::new()) };
}

/// Counts a kernel as running under every token active on this thread while it lives.
struct Running(Vec<Arc<AtomicUsize>>);

impl Running {
    fn start() -> Self {
        let counters = RUNNING.with(|r| r.borrow().clone());
        counters.iter().for_each(|c| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        Running(counters)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.iter().for_each(|c| {
            c.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// The class of `ecorecover.errors` each core error becomes (all but the last are `ValueError`s;
/// `CancelledError` is a `concurrent.futures.CancelledError`).
fn class_name(err: &CoreError) -> &'static str {
    match err {
        CoreError::Shape(_) => "ShapeError",
        CoreError::NonFinite(_) => "NonFiniteValueError",
        CoreError::Negative(_) => "NegativeValueError",
        CoreError::InvalidArgument(_) => "ParameterError",
        CoreError::Cancelled => "CancelledError",
    }
}

/// Map a core error to its exception of `ecorecover.errors` (the message is the error's text).
pub fn to_py(err: CoreError) -> PyErr {
    let msg = match err {
        CoreError::Cancelled => "the computation was cancelled (its CancelToken was cancelled)".to_string(),
        _ => err.to_string(),
    };
    raise_as(class_name(&err), msg)
}

/// An argument outside its domain, found by the binding itself: `ecorecover.errors.ParameterError`.
pub fn parameter_error(msg: impl Into<String>) -> PyErr {
    raise_as("ParameterError", msg.into())
}

fn cancelled() -> PyErr {
    to_py(CoreError::Cancelled)
}

/// `ecorecover.errors.<class>(msg)`, imported when the error happens (the Python package owns
/// the classes). Should that import fail, the built-in the class derives from.
fn raise_as(class: &str, msg: String) -> PyErr {
    Python::attach(|py| {
        let found = py
            .import("ecorecover.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match found {
            Ok(ty) => PyErr::from_type(ty, msg),
            Err(_) if class == "CancelledError" => CancelledError::new_err(msg),
            Err(_) => PyValueError::new_err(msg),
        }
    })
}

/// A flag for one kernel call, set when any token active on this thread is: None when one is
/// already set (the call must not start).
fn kernel_flag() -> Option<Cancel> {
    let flag = Cancel::child(TOKENS.with(|t| t.borrow().clone()));
    (!flag.is_cancelled()).then_some(flag)
}

/// Whether this is the thread Python runs signal handlers in.
fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    static MAIN: OnceLock<c_ulong> = OnceLock::new();
    let main = match MAIN.get() {
        Some(&id) => id,
        None => {
            let id: c_ulong = py.import("threading")?.call_method0("main_thread")?.getattr("ident")?.extract()?;
            *MAIN.get_or_init(|| id)
        }
    };
    // SAFETY: attached to the interpreter (we hold `py`); the call only reads the thread id.
    Ok(unsafe { pyo3::ffi::PyThread_get_thread_ident() } == main)
}

/// Run `f` in a pool of `n_threads` threads (None: rayon's global pool) and catch its panic.
fn run_pooled<T, F>(n_threads: Option<usize>, f: F) -> std::thread::Result<Result<T, CoreError>>
where
    F: FnOnce() -> Result<T, CoreError>,
    F: Send,
    T: Send,
{
    catch_unwind(AssertUnwindSafe(move || match n_threads {
        Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(f),
            Err(e) => Err(CoreError::InvalidArgument(format!("cannot start {n} threads: {e}"))),
        },
        _ => f(),
    }))
}

/// Run `f` without the GIL, in a pool of `n_threads` threads (None: rayon's global pool),
/// turning a panic into a `RuntimeError` instead of taking the interpreter down. For kernels
/// that cannot stop early (single passes over the data): a signal is handled when they return.
pub fn enter<T, F>(py: Python<'_>, n_threads: Option<usize>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, CoreError> + Send,
{
    if kernel_flag().is_none() {
        return Err(cancelled());
    }
    let _running = Running::start();
    finish(py.detach(move || run_pooled(n_threads, f)))
}

/// [`enter`] for kernels that poll a [`Cancel`] flag (the iterative NMF steps and the fast
/// solver): the flag is set by Ctrl-C when called from the main thread, and by the
/// [`CancelToken`]s active on the calling thread. Raises the signal handler's exception
/// (KeyboardInterrupt) or `concurrent.futures.CancelledError` when stopped that way.
pub fn enter_cancellable<T, F>(py: Python<'_>, n_threads: Option<usize>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Cancel) -> Result<T, CoreError> + Send,
{
    let Some(flag) = kernel_flag() else {
        return Err(cancelled());
    };
    let _running = Running::start();
    if !on_main_thread(py)? {
        return finish(py.detach(|| run_pooled(n_threads, || f(&flag))));
    }
    let (outcome, signal) = py.detach(|| {
        let (tx, rx) = sync_channel(1);
        std::thread::scope(|s| {
            let flag = &flag;
            s.spawn(move || {
                // The receiver outlives this thread (scoped), so the send cannot fail.
                let _ = tx.send(run_pooled(n_threads, || f(flag)));
            });
            let mut signal: Option<PyErr> = None;
            loop {
                match rx.recv_timeout(POLL) {
                    Ok(outcome) => return (outcome, signal),
                    Err(RecvTimeoutError::Timeout) if signal.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            flag.cancel();
                            signal = Some(e);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    // Unreachable: the worker sends before it ends and catches every panic.
                    Err(RecvTimeoutError::Disconnected) => {
                        return (Ok(Err(CoreError::InvalidArgument("the kernel thread died".into()))), signal)
                    }
                }
            }
        })
    });
    match signal {
        Some(e) => Err(e),
        None => finish(outcome),
    }
}

/// The Python result of a kernel's outcome: its value, its error mapped, or its panic as a
/// `RuntimeError`.
fn finish<T>(outcome: std::thread::Result<Result<T, CoreError>>) -> PyResult<T> {
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

/// A contiguous 1-d numpy array as a slice, or a `ParameterError` naming the argument.
pub fn slice<'a, T: numpy::Element>(a: &'a numpy::PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| parameter_error(format!("{name} must be a contiguous 1-d array")))
}

/// A contiguous 1-d array of non-negative indices as `usize`s, or a `ParameterError` naming
/// the argument.
pub fn indices(a: &numpy::PyReadonlyArray1<'_, i64>, name: &str) -> PyResult<Vec<usize>> {
    slice(a, name)?
        .iter()
        .map(|&i| usize::try_from(i).map_err(|_| parameter_error(format!("{name}: negative index {i}"))))
        .collect()
}

/// A cancellation token for the compiled kernels. `run(fn, *args, **kwargs)` calls `fn` with the
/// token active on the calling thread: after `cancel()` (from any thread) the iterative kernels
/// `fn` runs there stop within milliseconds, and no kernel starts there any more, raising
/// `concurrent.futures.CancelledError`. Meant for worker threads, which never see Ctrl-C: the
/// thread that does cancels their token.
#[pyclass(frozen, module = "ecorecover._core")]
pub struct CancelToken {
    flag: Arc<Cancel>,
    running: Arc<AtomicUsize>,
}

/// Pops the innermost token of this thread when dropped (also when `fn` raised or panicked).
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        TOKENS.with(|t| t.borrow_mut().pop());
        RUNNING.with(|r| r.borrow_mut().pop());
    }
}

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        CancelToken { flag: Arc::new(Cancel::new()), running: Arc::new(AtomicUsize::new(0)) }
    }

    /// Ask the kernels run under this token to stop; it stays cancelled.
    fn cancel(&self) {
        self.flag.cancel();
    }

    /// True once `cancel()` has been called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.flag.is_cancelled()
    }

    /// Kernels running under this token right now (started through `run`, not yet returned).
    /// They run without the GIL: other Python threads see this count while they run.
    #[getter]
    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// `fn(*args, **kwargs)` with this token active on the calling thread.
    #[pyo3(signature = (f, /, *args, **kwargs))]
    fn run<'py>(
        &self,
        f: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        TOKENS.with(|t| t.borrow_mut().push(self.flag.clone()));
        RUNNING.with(|r| r.borrow_mut().push(self.running.clone()));
        let _active = Active;
        f.call(args, kwargs)
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", if self.flag.is_cancelled() { "True" } else { "False" })
    }
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

/// Raise a panic inside the core's entry path: lets a test prove that a Rust panic becomes a
/// Python `RuntimeError` instead of aborting the interpreter. Only in builds with the
/// `test-hooks` feature (never in a wheel); `cargo test -p ecorecover-py` checks the same path.
#[cfg(feature = "test-hooks")]
#[pyfunction]
pub fn _panic_for_tests(py: Python<'_>, message: String) -> PyResult<()> {
    enter(py, Some(1), move || -> Result<(), CoreError> { panic!("{message}") })
}

/// Register the test hooks of a `test-hooks` build (none otherwise).
pub fn register_test_hooks(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "test-hooks")]
    _m.add_function(wrap_pyfunction!(_panic_for_tests, _m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_runtime_error_and_the_interpreter_goes_on() {
        Python::initialize();
        Python::attach(|py| {
            let err = enter(py, Some(1), || -> Result<(), CoreError> { panic!("boom") }).unwrap_err();
            assert!(err.is_instance_of::<PyRuntimeError>(py), "{err}");
            assert!(err.to_string().contains("internal error in ecorecover's core"), "{err}");
            assert!(err.to_string().contains("boom"), "{err}");
            // The pool and the interpreter still work afterwards.
            assert_eq!(enter(py, Some(2), || Ok(41 + 1)).unwrap(), 42);
            assert_eq!(py.eval(c"6 * 7", None, None).unwrap().extract::<i64>().unwrap(), 42);
        });
    }

    #[test]
    fn each_core_error_has_its_own_class() {
        let names = [
            CoreError::Shape(String::new()),
            CoreError::NonFinite(String::new()),
            CoreError::Negative(String::new()),
            CoreError::InvalidArgument(String::new()),
            CoreError::Cancelled,
        ]
        .iter()
        .map(class_name)
        .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(names.len(), 5);
    }
}
