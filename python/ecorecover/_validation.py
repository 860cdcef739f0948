"""Input checks shared by the public API: every message names the argument and the problem."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["as_float_matrix", "available_cores", "check_finite", "resolve_n_jobs", "resolve_threads"]


def as_float_matrix(x: Any, name: str, *, allow_sparse: bool = False, finite: bool = True) -> Any:
    """Return ``x`` as a 2-d float64 array (or, with ``allow_sparse``, a float64 CSR/CSC).

    Rejects object, bool, string and complex dtypes with a ``TypeError`` naming ``name``;
    integer and smaller float dtypes are converted. Non-finite values raise ``ValueError``.
    """
    if sp.issparse(x):
        if not allow_sparse:
            raise TypeError(f"{name} must be a dense array, got a scipy.sparse {x.format} matrix")
        if x.format not in ("csr", "csc"):
            x = x.tocsr()
        _check_dtype(x.dtype, name)
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        if finite:
            check_finite(x.data, name)
        return x
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):
        x = x.to_numpy()
    arr = np.asarray(x)
    _check_dtype(arr.dtype, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got {arr.ndim} dimension(s) with shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if finite:
        check_finite(arr, name)
    return arr


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind not in "iuf":
        kind = {"b": "bool", "O": "object", "U": "string", "S": "bytes", "c": "complex"}.get(dtype.kind, str(dtype))
        raise TypeError(f"{name} must hold numbers (integer or float), got dtype {kind}")


def check_finite(values: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the first bad position if any value is NaN/inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), values.shape)
        where = pos[0] if len(pos) == 1 else tuple(int(p) for p in pos)
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf), first at {where}: "
            f"{values[pos]!r}; remove or impute them first"
        )


#: ``n_jobs`` above ``max(MIN_MAX_N_JOBS, N_JOBS_PER_CORE * cores)`` is refused (see :func:`resolve_n_jobs`).
MIN_MAX_N_JOBS = 256
N_JOBS_PER_CORE = 4


def max_n_jobs() -> int:
    """The largest ``n_jobs`` accepted on this machine: ``max(256, 4 * os.cpu_count())``."""
    return max(MIN_MAX_N_JOBS, N_JOBS_PER_CORE * (os.cpu_count() or 1))


def resolve_n_jobs(n_jobs: int | None) -> int | None:
    """Map scikit-learn style ``n_jobs`` to a thread count (None: rayon's default pool).

    ``None`` or ``-1``: all cores; ``-k``: all cores but ``k - 1`` (at least 1); a positive
    count: that many threads, up to :func:`max_n_jobs` = ``max(256, 4 * os.cpu_count())``.
    Larger counts are refused with a ``ValueError``: every thread is an OS thread, and
    ``n_jobs=10**6`` would keep creating them and starve the machine without any speed-up
    (results never depend on ``n_jobs``). Every public function taking ``n_jobs`` checks it
    here before doing any work.
    """
    if n_jobs is None:
        return None
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, (int, np.integer)):
        raise TypeError(f"n_jobs must be an integer or None, got {type(n_jobs).__name__}")
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0 (use None, -1 for all cores, or a positive count)")
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    cap = max_n_jobs()
    if n_jobs > cap:
        raise ValueError(
            f"n_jobs={n_jobs} is more threads than this machine can use: at most {cap} "
            f"(max({MIN_MAX_N_JOBS}, {N_JOBS_PER_CORE} x {os.cpu_count() or 1} cores)); "
            "use None or -1 for all cores"
        )
    return n_jobs


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(n_jobs: int | None) -> int:
    """A concrete thread count for ``n_jobs``: :func:`resolve_n_jobs`, with None (all cores) as
    :func:`available_cores`. For callers that size their own pools (recover, train, loocv)."""
    threads = resolve_n_jobs(n_jobs)
    return available_cores() if threads is None else max(1, threads)
