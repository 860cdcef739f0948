"""KL (Brunet) multiplicative updates with one factor fixed, as NMF 0.25 runs them for
SpatialEcoTyper, under the connectivity stopping rule.

NMF orientation: ``V`` (features x cells) ~ ``W`` (features x k) ``H`` (k x cells). Every
10th iteration the updated factor is floored at 2.220446e-16 and the partition of cells by
their argmax SE is compared with the previous one; the run stops when it has not changed for
more than 40 checks, or after ``max_iter`` iterations. With H fixed (training) that is
exactly 420 iterations. Zeros of ``V`` are skipped. The result is independent of the
thread count, and the GIL is released while the kernel runs.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from . import _core
from ._params import Interval, validate_params
from ._validation import as_float_matrix, resolve_n_jobs

__all__ = ["update_h", "update_w", "MAX_ITER"]

#: NMF's iteration cap.
MAX_ITER = 2000


def _inputs(v: Any, a: Any, b: Any, names: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mats = tuple(as_float_matrix(m, n) for m, n in zip((v, a, b), names))
    for m, n in zip(mats, names):
        if m.size and float(m.min()) < 0:
            raise ValueError(f"{n} must be non-negative, found {float(m.min())}")
    return mats


@validate_params({"max_iter": [Interval(Integral, 1, None)], "n_jobs": ["n_jobs"]})
def update_h(v: Any, w: Any, h0: Any, *, max_iter: int = MAX_ITER, n_jobs: int | None = None) -> tuple[np.ndarray, int]:
    """H-step with W fixed: ``H_aj <- H_aj * (sum_i W_ia V_ij / (WH)_ij) / sum_i W_ia``.

    Parameters
    ----------
    v
        features x cells, non-negative.
    w
        features x k, non-negative (the recovery model).
    h0
        k x cells, the initial H.

    Returns
    -------
    ``(H, n_iter)``: the k x cells factor after the last iteration and the iterations run.
    """
    v, w, h0 = _inputs(v, w, h0, ("V", "W", "H0"))
    _shapes(v, w, h0, ("V", "W", "H0"))
    h, it = _core.update_h(v, w, h0, int(max_iter), 10, 40, resolve_n_jobs(n_jobs))
    return h, int(it)


@validate_params({"max_iter": [Interval(Integral, 1, None)], "n_jobs": ["n_jobs"]})
def update_w(v: Any, w0: Any, h: Any, *, max_iter: int = MAX_ITER, n_jobs: int | None = None) -> tuple[np.ndarray, int]:
    """W-step with H fixed: ``W_ia <- W_ia * (sum_j H_aj V_ij / (WH)_ij) / sum_j H_aj``.

    Parameters
    ----------
    v
        features x cells, non-negative.
    w0
        features x k, the initial W.
    h
        k x cells, the fixed (membership or fraction) matrix.

    Returns
    -------
    ``(W, n_iter)``; ``n_iter`` is 420 under NMF's defaults since H does not change.
    """
    v, w0, h = _inputs(v, w0, h, ("V", "W0", "H"))
    _shapes(v, w0, h, ("V", "W0", "H"))
    w, it = _core.update_w(v, w0, h, int(max_iter), 10, 40, resolve_n_jobs(n_jobs))
    return w, int(it)


def _shapes(v: np.ndarray, w: np.ndarray, h: np.ndarray, names: tuple[str, str, str]) -> None:
    (m, n), (mw, k), (kh, nh) = v.shape, w.shape, h.shape
    if mw != m or nh != n or kh != k:
        raise ValueError(
            f"shape mismatch: {names[0]} is {m} x {n}, {names[1]} is {mw} x {k}, {names[2]} is {kh} x {nh}; "
            f"need {names[1]} features x k and {names[2]} k x cells"
        )
    if k == 0:
        raise ValueError(f"the rank k is 0: {names[1]} has no columns")
    if m == 0 or n == 0:
        raise ValueError(f"{names[0]} is empty ({m} features x {n} cells)")


@validate_params({
    "posneg": ["boolean"],
    "scale_max": [Real],
    "max_iter": [Interval(Integral, 1, None)],
    "tol": [Interval(Real, 0, None)],
    "n_jobs": ["n_jobs"],
})
def solve_h_fast(
    x: Any,
    wpos: Any,
    wneg: Any,
    *,
    mean: Any = None,
    sd: Any = None,
    posneg: bool = True,
    scale_max: float = 10.0,
    max_iter: int = 100,
    tol: float = 1e-10,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell H: each cell's KL problem ``min_h sum_i (Wh)_i - V_i log (Wh)_i, h >= 0``
    solved to convergence on its own (projected Newton), the fast alternative to
    :func:`update_h` under the connectivity rule.

    Parameters
    ----------
    x
        Cells x model genes (scipy sparse or dense), the raw (log-normalised) values.
    wpos, wneg
        Model genes x k: W's row of each gene's ``__pos`` / ``__neg`` feature; a row of NaN
        marks a feature left out (absent from W, or filtered). Without ``posneg`` the gene
        itself is the feature (``wpos``; ``wneg`` is ignored).
    mean, sd
        Per-gene ScaleData statistics: values are scaled as ``(x - mean) / sd`` (NaN -> 0,
        above ``scale_max`` -> ``scale_max``) before posneg. Omit both for no scaling.

    Returns
    -------
    ``(H, iterations)``: cells x k scores (not normalised) and Newton iterations per cell.
    """
    import scipy.sparse as sp

    xs = sp.csr_matrix(x, dtype=np.float64) if not (sp.issparse(x) and x.format == "csr" and x.dtype == np.float64) else x
    wpos = np.ascontiguousarray(wpos, dtype=np.float64)
    wneg = np.ascontiguousarray(wneg, dtype=np.float64)
    if wpos.ndim != 2 or wpos.shape[0] != xs.shape[1]:
        raise ValueError(f"wpos must be genes x k with {xs.shape[1]} genes, got shape {wpos.shape}")
    if (mean is None) != (sd is None):
        raise ValueError("give both mean and sd, or neither")
    m = None if mean is None else np.ascontiguousarray(mean, dtype=np.float64)
    s = None if sd is None else np.ascontiguousarray(sd, dtype=np.float64)
    h, it = _core.solve_h_fast(
        np.ascontiguousarray(xs.indptr, dtype=np.int64),
        np.ascontiguousarray(xs.indices, dtype=np.int64),
        np.ascontiguousarray(xs.data),
        xs.shape[1], wpos, wneg, bool(posneg), m, s, float(scale_max), int(max_iter), float(tol),
        resolve_n_jobs(n_jobs),
    )
    return h, it
