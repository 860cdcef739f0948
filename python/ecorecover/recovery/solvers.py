"""One run solved: the cells' scores from their data, the run's model and the type's statistics.

:func:`solve_run` is the whole per-run step (a function of the run's rows, so an engine runs it
anywhere). ``exact``: R's ``NMFpredict`` for the run's cells (ScaleData z-scores, posneg, the
zero-variance filter over the run, ``set.seed(39)`` H0 from NMF's ``rnmf``, KL multiplicative
H-steps until NMF's connectivity stopping rule, ``sum2one`` as R's ``colSums``). ``fast``: each
cell's convex KL problem solved on its own by the Rust projected-Newton solver, with the
features that are constant over the whole cell type dropped.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .. import nmf as _nmf
from .._naming import NEG, POS
from ..errors import NegativeValueError
from ..rng import RRandom
from .constants import SCALE_MAX, SEED, Mode
from .matching import Group
from .plan import RunCells
from .source import CsrArrays, is_range
from .statistics import RunModel

#: The fast solver's iteration limit and tolerance (``ecorecover.nmf.solve_h_fast``'s defaults).
FAST_MAX_ITER = 100
FAST_TOL = 1e-10

__all__ = ["RunResult", "SolveJob", "exact_run", "fast_run", "run_totals", "solve_run", "sum_to_one"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass
class RunResult:
    """A run's scores (cells x SEs in W's column order; None when no feature was left) and facts."""

    group: int
    run: int
    rows: I64
    scores: F64 | None
    n_features: int
    n_iter: int
    max_v: float
    detail: dict[str, Any] | None = None
    failure: str | None = None
    nnz_v: int = 0
    gather_s: float = 0.0  # reading the run's cells (kernel), seconds
    solve_s: float = 0.0  # solving, seconds
    flops: float = 0.0  # the arithmetic of the solve (see exact_run / fast_run)


@dataclass(frozen=True)
class SolveJob:
    """How to solve the runs: mode, R's ``sum2one``, whether to keep per-run details."""

    mode: Mode
    sum_to_one: bool
    keep_details: bool


def solve_run(job: SolveJob, gi: int, ri: int, model: RunModel, cells: RunCells, rows: I64, threads: int) -> RunResult:
    """Run ``ri`` of group ``gi``: ``cells`` are the run's cells (input rows ``rows``, in order)."""
    fn = exact_run if job.mode == "exact" else fast_run
    return fn(gi, ri, model, cells, rows, job.sum_to_one, threads, job.keep_details)


def run_totals(results: list[RunResult]) -> dict[str, float]:
    """Seconds spent reading the runs' cells and solving them (summed over the runs, so over
    the threads too) and the solves' arithmetic (flops, see :func:`exact_run` / :func:`fast_run`)."""
    return {"runs_gather_s": float(sum(r.gather_s for r in results)),
            "runs_solve_s": float(sum(r.solve_s for r in results)), "flops": float(sum(r.flops for r in results))}


def sum_to_one(h: F64) -> F64:
    """Divide each cell's scores (rows of ``h``, cells x k) by their sum as R's ``colSums``
    computes it: accumulated in order in x87 long double, rounded to double (a correctly
    rounded sum differs in the last bit for ~1 cell in 4000 on the fixtures, a plain double
    sum for ~40%)."""
    with warnings.catch_warnings():
        out: F64 = _core.sum_to_one_rows(np.ascontiguousarray(h, dtype=np.float64), 1)
        return out


def _plain_model_negative(g: Group) -> NegativeValueError:
    return NegativeValueError(
        f"model[{g.name!r}] names plain genes (no '__pos'/'__neg' features), so R feeds the scaled "
        "data to NMF without posneg, but it has negative values; NMF needs non-negative input "
        "(use scale=False with such a model, or a posneg model)"
    )


def exact_run(
    gi: int, ri: int, model: RunModel, cells: RunCells, rows: I64, sum2one: bool, threads: int, details: bool,
) -> RunResult:
    """R's NMFpredict on one run: V (features x cells: ScaleData z-scores, posneg, the run's
    zero-variance filter, W's features) read by the kernel, then R's H-steps."""
    g = model.group
    t0 = time.perf_counter()
    vt, kept = _core.gather_run_v(
        cells.m, cells.rows, cells.cols, None if model.sd is None else model.mean, model.sd, g.posneg,
        cells.transform, model.in_w,
        SCALE_MAX, n_threads=threads,
    )
    t1 = time.perf_counter()
    if not kept.size:
        return RunResult(gi, ri, rows, None, 0, 0, 0.0, failure="no_features", gather_s=t1 - t0)
    if not g.posneg and vt.size and float(vt.min()) < 0:
        raise _plain_model_negative(g)
    feats = [model.features[i] for i in kept.tolist()]
    w = np.ascontiguousarray(g.w.loc[feats].to_numpy())
    m, k = w.shape
    n = vt.shape[1]
    max_v = float(vt.max()) if vt.size else 0.0
    top = max(max_v, 1.0)
    rng = RRandom(SEED)
    rng.runif(m * k, max=top)  # NMF::rnmf draws W first: thrown away
    h0 = np.minimum(rng.runif(k * n, max=top), float(np.abs(vt).max())).reshape((k, n), order="F")
    h, n_iter = _nmf.update_h(vt, w, h0, n_jobs=threads)
    ht = h.T
    scores = sum_to_one(ht) if sum2one else ht.copy()
    det = {"features": feats, "H0": h0, "H_raw": h, "n_iter": n_iter} if details else None
    nnz_v = int(np.count_nonzero(vt))
    # R's H-step: W'(V / WH) over V's non-zeros and the W'1 scaling, ~4 flops per non-zero and SE
    flops = 4.0 * nnz_v * k * int(n_iter)
    return RunResult(gi, ri, rows, scores, m, int(n_iter), max_v, det, nnz_v=nnz_v, gather_s=t1 - t0,
                     solve_s=time.perf_counter() - t1, flops=flops)


def fast_run(
    gi: int, ri: int, model: RunModel, cells: RunCells, rows: I64, sum2one: bool, threads: int, details: bool,
) -> RunResult:
    """Every cell of the run solved on its own (the run's cells read by the kernel as CSR)."""
    g = model.group
    gpos, gneg, n_feat = _fast_model(g, model.const)
    if n_feat == 0:  # as exact mode: nothing to score the cells with (not 1/k each)
        return RunResult(gi, ri, rows, None, 0, 0, float("nan"), failure="no_features")
    t0 = time.perf_counter()
    x = _as_csr(cells, threads)
    t1 = time.perf_counter()
    try:
        h, iters = _core.solve_h_fast(
            x.indptr, x.indices, x.data, x.shape[1], gpos, gneg, bool(g.posneg),
            None if model.sd is None else model.mean, model.sd, SCALE_MAX, FAST_MAX_ITER, FAST_TOL, threads,
        )
    except NegativeValueError as exc:  # the scaled data of a plain (not posneg) model
        if not g.posneg:
            raise _plain_model_negative(g) from exc
        raise
    scores = sum_to_one(h) if sum2one else h
    det = {"iterations": iters} if details else None
    k = gpos.shape[1]
    # a projected-Newton step builds a cell's k x k Hessian over its features: ~m k^2 flops
    flops = float(iters.sum()) * n_feat * k * k
    return RunResult(gi, ri, rows, scores, n_feat, int(iters.max(initial=0)), float("nan"), det, gather_s=t1 - t0,
                     solve_s=time.perf_counter() - t1, flops=flops)


def _as_csr(cells: RunCells, threads: int) -> CsrArrays:
    """The run's cells x genes, transformed, as CSR (the joined pieces as they are)."""
    m = cells.m
    whole = len(cells.rows) == m.shape[0] and len(cells.cols) == m.shape[1] and is_range(cells.cols)
    if isinstance(m, CsrArrays) and whole and is_range(cells.rows) and not cells.transform:
        return m
    p, i, d = _core.gather_csr(m, cells.rows, cells.cols, cells.transform, n_threads=threads)
    return CsrArrays(p, i, d, (len(cells.rows), len(cells.cols)))


def _fast_model(g: Group, const: tuple[Bools, Bools]) -> tuple[F64, F64, int]:
    """Per model gene present, W's row for its positive / negative feature (a NaN row: absent
    from W, or constant over the cell type's cells, which the zero-variance filter drops)."""
    pos_const, neg_const = const
    k = g.w.shape[1]
    wv = g.w.to_numpy()
    pos_i = {nm: i for i, nm in enumerate(g.w.index)}
    npres = len(g.present)
    gpos = np.full((npres, k), np.nan)
    gneg = np.full((npres, k), np.nan)
    for j, gene in enumerate(g.present):
        if g.posneg:
            if not pos_const[j] and (i := pos_i.get(gene + POS)) is not None:
                gpos[j] = wv[i]
            if not neg_const[j] and (i := pos_i.get(gene + NEG)) is not None:
                gneg[j] = wv[i]
        elif not pos_const[j] and (i := pos_i.get(gene)) is not None:
            gpos[j] = wv[i]
    n_feat = int(np.isfinite(gpos[:, 0]).sum() + np.isfinite(gneg[:, 0]).sum())
    return gpos, gneg, n_feat
