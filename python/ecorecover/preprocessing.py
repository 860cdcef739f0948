"""Seurat-equivalent preprocessing: LogNormalize, the raw-count guard, ScaleData, posneg and
the zero-variance filter.

All matrices are **cells x genes** (AnnData orientation); R's matrices are genes x cells.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from . import _core, _naming
from ._params import Interval, StrOptions, validate_params
from ._validation import as_float_matrix, resolve_n_jobs
from .errors import NonIntegerCountsWarning, RawCountWarning
from ._warnings import warn as warn_user

__all__ = [
    "RawCountWarning",
    "NonIntegerCountsWarning",
    "log_normalize",
    "looks_like_raw_counts",
    "raw_count_guard",
    "scale",
    "posneg",
    "posneg_names",
    "zero_variance_mask",
    "RAW_COUNT_MAX",
]

#: R's threshold: a matrix with min >= 0 and max above this is taken for raw counts.
RAW_COUNT_MAX = 80.0

ScaleMethod = Literal["sparse", "dense"]


@validate_params({"scale_factor": [Interval(Real, 0, None, closed="neither")], "n_jobs": ["n_jobs"]})
def log_normalize(counts: Any, *, scale_factor: float = 1e4, n_jobs: int | None = None) -> Any:
    """Seurat ``NormalizeData(method = "LogNormalize")``: ``log1p(c / total * scale_factor)``.

    Parameters
    ----------
    counts
        Raw counts, cells x genes: a dense array or a scipy CSR/CSC matrix (non-negative,
        finite). A cell with no counts stays all zero.
    scale_factor
        Seurat's ``scale.factor`` (default 1e4).
    n_jobs
        Threads (None: all cores; -1 as well; a positive count otherwise).

    Returns
    -------
    The same kind of matrix (dense -> dense, CSR -> CSR, CSC -> CSC), float64. Uses the C
    library's ``log1p`` as Seurat does (``numpy.log1p`` is 1 ulp off in ~5% of inputs).

    Warns
    -----
    NonIntegerCountsWarning
        Some values are not whole numbers (the message names the first): the data look
        log-normalised (or otherwise normalised) already; normalising them again distorts
        them. Skip the normalisation. The result is computed all the same.
    """
    threads = resolve_n_jobs(n_jobs)
    x = as_float_matrix(counts, "counts", allow_sparse=True)
    _check_non_negative(x, "counts")
    _warn_non_integer(x, "counts")
    return _log_normalize_matrix(x, float(scale_factor), threads)


def _log_normalize_matrix(x: Any, scale_factor: float, threads: int | None) -> Any:
    """:func:`log_normalize` on a checked float64 matrix (C-ordered ndarray, CSR or CSC)."""
    if sp.issparse(x):
        csr = x.format == "csr"
        n_major, n_minor = (x.shape[0], x.shape[1]) if csr else (x.shape[1], x.shape[0])
        data = _core.log_normalize_compressed(
            np.ascontiguousarray(x.indptr, dtype=np.int64),
            np.ascontiguousarray(x.indices, dtype=np.int64),
            np.ascontiguousarray(x.data),
            n_major, n_minor, csr, float(scale_factor), threads,
        )
        out = x.copy()
        out.data = data
        return out
    return _core.log_normalize_dense(x, float(scale_factor), threads)


def _first_non_integer(values: np.ndarray) -> int:
    """Flat index of the first value that is not a whole number, or -1 (chunked, so the extra
    memory stays small; stops at the first one)."""
    step = 1 << 20
    for start in range(0, values.size, step):
        chunk = values[start:start + step]
        bad = np.floor(chunk) != chunk
        if bad.any():
            return start + int(np.argmax(bad))
    return -1


def _warn_non_integer(x: Any, name: str) -> None:
    """Warn (:class:`NonIntegerCountsWarning`) naming the (cell, gene) of the first count of
    ``x`` (a float64 C-ordered ndarray, CSR or CSC) that is not a whole number."""
    values = x.data if sp.issparse(x) else x.reshape(-1)
    e = _first_non_integer(values)
    if e < 0:
        return
    if sp.issparse(x):
        major = int(np.searchsorted(x.indptr, e, side="right") - 1)
        i, j = (major, int(x.indices[e])) if x.format == "csr" else (int(x.indices[e]), major)
    else:
        i, j = (int(v) for v in np.unravel_index(e, x.shape))
    warn_user(
        f"{name} holds values that are not whole numbers (first at cell (row) {i}, gene (column) {j}: "
        f"{float(values[e])!r}; maximum {float(values.max()):.4g}): the data look log-normalised (or otherwise "
        "normalised) already, and normalising them again distorts them. Skip the normalisation and use the "
        "data as they are; log_normalize is for raw counts.",
        NonIntegerCountsWarning,
    )


def _check_non_negative(x: Any, name: str) -> None:
    """Raise ``ValueError`` naming the (cell, gene) position of the first negative count."""
    if sp.issparse(x):
        neg = np.flatnonzero(x.data < 0)
        if neg.size == 0:
            return
        e = int(neg[0])
        major = int(np.searchsorted(x.indptr, e, side="right") - 1)
        minor = int(x.indices[e])
        i, j = (major, minor) if x.format == "csr" else (minor, major)
        n, value = int(neg.size), float(x.data[e])
    else:
        mask = x < 0
        if not mask.any():
            return
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(mask)), x.shape))
        n, value = int(mask.sum()), float(x[i, j])
    raise ValueError(
        f"{name} holds {n} negative value(s), first at cell (row) {i}, gene (column) {j}: {value!r}; "
        "log-normalisation needs raw, non-negative counts"
    )


def looks_like_raw_counts(x: Any) -> bool:
    """R's raw-count test: ``min(x) >= 0`` and ``max(x) > 80``."""
    if sp.issparse(x):
        data = x.data
        if data.size == 0:
            return False
        mn = min(0.0, float(data.min())) if data.size < np.prod(x.shape) else float(data.min())
        return mn >= 0 and float(data.max()) > RAW_COUNT_MAX
    a = np.asarray(x)
    if a.size == 0:
        return False
    return float(np.min(a)) >= 0 and float(np.max(a)) > RAW_COUNT_MAX


@validate_params({"what": [str], "warn": ["boolean"]})
def raw_count_guard(x: Any, *, what: str = "the expression matrix", warn: bool = True) -> tuple[Any, bool]:
    """Apply R's raw-count guard: if ``x`` looks like raw counts, return ``log2(x + 1)``.

    Returns ``(matrix, fired)``; when it fires (and ``warn``), a :class:`RawCountWarning` says
    so, as R silently would not. Sparse input stays sparse (zeros map to zeros).
    """
    if not looks_like_raw_counts(x):
        return x, False
    if warn:
        warn_user(
            f"{what} looks like raw counts (min >= 0, max > {RAW_COUNT_MAX:g}); applying "
            "log2(x + 1) as R SpatialEcoTyper does. Pass log-normalised data "
            "(ecorecover.preprocessing.log_normalize) to avoid this.",
            RawCountWarning,
        )
    if sp.issparse(x):
        out = x.astype(np.float64, copy=True)
        out.data = np.log2(out.data + 1.0)
        return out, True
    return np.log2(np.asarray(x, dtype=np.float64) + 1.0), True


@validate_params({"method": [StrOptions({"sparse", "dense"})], "scale_max": [Real], "n_jobs": ["n_jobs"]})
def scale(
    x: Any,
    *,
    method: ScaleMethod = "sparse",
    scale_max: float = 10.0,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Seurat ``ScaleData`` per gene over cells: z-scores with sd over n-1, values above
    ``scale_max`` set to it (no lower clip), zero-variance genes (and any NaN) set to 0.

    Parameters
    ----------
    x
        Cells x genes, dense or scipy sparse.
    method
        Which of Seurat's code paths to reproduce bit-for-bit: ``"sparse"`` (a dgCMatrix in R,
        as in every SpatialEcoTyper training and recovery call: mean from the sequential sum
        of non-zeros) or ``"dense"`` (a base matrix in R: long-double row means). They differ
        by at most ~2e-15. The storage of ``x`` does not choose the path.
    scale_max
        Upper clip (Seurat's ``scale.max``).

    Returns
    -------
    A dense cells x genes float64 array (column-major).
    """
    threads = resolve_n_jobs(n_jobs)
    m = as_float_matrix(x, "x", allow_sparse=True)
    if sp.issparse(m):
        c = m.tocsc() if m.format != "csc" else m
        if not c.has_sorted_indices:
            c = c.sorted_indices()
        if c.has_canonical_format is False:
            c = c.copy()
            c.sum_duplicates()
        return _core.scale_csc(
            np.ascontiguousarray(c.indptr, dtype=np.int64),
            np.ascontiguousarray(c.indices, dtype=np.int64),
            np.ascontiguousarray(c.data),
            c.shape[1], c.shape[0], method, float(scale_max), threads,
        )
    return _core.scale_dense(m, method, float(scale_max), threads)


def posneg(x: Any) -> np.ndarray:
    """``[max(X, 0) | max(-X, 0)]`` for a cells x genes matrix: cells x (2 * genes).

    Column ``j`` is gene ``j``'s positive part (``GENE__pos``), column ``genes + j`` its
    negative part (``GENE__neg``); see :func:`posneg_names`.
    """
    m = as_float_matrix(x, "x")
    return _core.posneg(m)


def posneg_names(genes: Any) -> list[str]:
    """Feature names of :func:`posneg`: every ``GENE__pos``, then every ``GENE__neg``."""
    return _naming.feature_names(genes)


def zero_variance_mask(x: Any) -> np.ndarray:
    """For a cells x features matrix, True for features constant over the cells (variance 0);
    R drops these rows after posneg."""
    m = as_float_matrix(x, "x")
    return np.asarray(_core.constant_columns(m), dtype=bool)
