"""R SpatialEcoTyper's ``NMFpredict``: the scores of every SE for every cell, with one model.

The same pipeline as :func:`~ecorecover.recovery.api.recover` (statistics, runs, solvers) for a
single W over all cells of the input, without cell types, raw-count guard or AnnData outputs;
:mod:`ecorecover.deconvolution` builds on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._naming import model_genes
from .._params import validate_params
from .._warnings import warn
from ..errors import GeneMatchError, ParameterTypeError, RecoveryWarning
from .constants import MIN_GENES_EXPRESSED, MIN_MODEL_GENES, Mode
from .engine import ThreadEngine
from .inputs import RUN_PARAMS, RunOptions, check_model, check_unique_ids, resolve_threads, unique_names
from .matching import Group, new_group
from .plan import plan_runs
from .solvers import RunResult, SolveJob
from .source import RowSource, block_size
from .statistics import BlockChecks, compute_statistics, run_models

__all__ = ["nmf_predict"]

Runs = list[dict[str, Any]]


def _matrix(x: Any) -> tuple[list[str], list[str], Any]:
    """(cell ids, genes, cells x genes matrix) of a DataFrame or an AnnData."""
    import anndata

    if isinstance(x, anndata.AnnData):
        return [str(c) for c in x.obs_names], [str(g) for g in x.var_names], x.X
    if isinstance(x, pd.DataFrame):
        return [str(c) for c in x.index], [str(g) for g in x.columns], x.to_numpy(dtype=np.float64)
    raise ParameterTypeError(f"x must be a cells x genes DataFrame or an AnnData, got {type(x).__name__}")


def _group(w: pd.DataFrame, genes: list[str], gene_pos: dict[str, int], n: int) -> Group:
    """The one model as a group over all ``n`` cells (GeneMatchError when no gene is in x)."""
    mgenes = model_genes(w.index)
    present = [g for g in mgenes if g in gene_pos]
    if not present:
        raise GeneMatchError(
            f"none of the model's {len(mgenes)} genes is in x: the model uses identifiers like {mgenes[:5]}, "
            f"x has columns like {genes[:5]}"
        )
    g = new_group("W", w, mgenes, present, [gene_pos[p] for p in present])
    g.rows = np.arange(n, dtype=np.int64)
    return g


def _table(results: list[RunResult], cell_ids: list[str], w: pd.DataFrame, return_runs: bool) -> tuple[pd.DataFrame, Runs]:
    """Scores of the scored cells (runs in order) and, with ``return_runs``, each run's details."""
    parts: list[npt.NDArray[np.float64]] = []
    idx: list[str] = []
    runs: Runs = []
    for r in results:
        if r.scores is None:
            continue
        parts.append(r.scores)
        idx.extend(cell_ids[i] for i in r.rows)
        if return_runs:
            d = dict(r.detail or {})
            d["cells"] = [cell_ids[i] for i in r.rows]
            d["n_iter"] = r.n_iter
            runs.append(d)
    vals = np.vstack(parts) if parts else np.zeros((0, w.shape[1]))
    return pd.DataFrame(vals, index=idx, columns=list(w.columns)), runs


if TYPE_CHECKING:
    from typing_extensions import Unpack


class _Options(RunOptions, total=False):
    """nmf_predict()'s options other than ``return_runs`` (for its overloads)."""

    sum_to_one: bool


# The return type follows return_runs; the implementation below spells out every option.
@overload
def nmf_predict(
    w: pd.DataFrame, x: Any, *, return_runs: Literal[False] = False, **options: Unpack[_Options]
) -> pd.DataFrame: ...


@overload
def nmf_predict(
    w: pd.DataFrame, x: Any, *, return_runs: Literal[True], **options: Unpack[_Options]
) -> tuple[pd.DataFrame, Runs]: ...


@overload
def nmf_predict(
    w: pd.DataFrame, x: Any, *, return_runs: bool = False, **options: Unpack[_Options]
) -> pd.DataFrame | tuple[pd.DataFrame, Runs]: ...


@validate_params(RUN_PARAMS, where="ecorecover.nmf_predict()")
def nmf_predict(
    w: pd.DataFrame,
    x: Any,
    *,
    scale: bool = True,
    cells_per_run: int = 1000,
    sum_to_one: bool = True,
    mode: Mode = "exact",
    n_jobs: int | None = None,
    return_runs: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, Runs]:
    """R SpatialEcoTyper's ``NMFpredict(W, testdat, scale, ncell.per.run, sum2one)``: scores of
    every SE (columns of ``w``) for every cell of ``x`` with one recovery model.

    Parameters
    ----------
    w
        The model: features x SEs DataFrame (``GENE__pos`` / ``GENE__neg`` rows, or genes).
    x
        Cells x genes: a DataFrame (index = cell ids, columns = genes) or an AnnData. Unlike
        :func:`recover` there is no raw-count guard, and the "< 3 genes" rule (with ``scale``)
        counts every gene of ``x``.
    scale, cells_per_run, mode, n_jobs
        As in :func:`recover`.
    sum_to_one
        Normalise each cell's scores to sum to 1 (R's ``sum2one``).
    return_runs
        Also return, per run, a dict with ``cells``, ``n_iter`` and (exact mode) ``features``
        (V's rows in R's order), ``H0`` and ``H_raw`` (SEs x cells, before normalisation).

    Returns
    -------
    pandas.DataFrame
        Scored cells (with ``scale``, those expressing fewer than 3 genes are omitted, as R) x
        SEs, in ``w``'s column order; with ``return_runs``, ``(scores, runs)``.
    """
    threads = resolve_threads(n_jobs)
    w = check_model({"W": w})["W"]
    cell_ids, genes, mat = _matrix(x)
    check_unique_ids(cell_ids)
    g = _group(w, genes, unique_names(genes, "gene names in x"), len(cell_ids))
    if len(g.present) < MIN_MODEL_GENES:
        warn(
            f"only {len(g.present)} of the model's genes are in x (at least {MIN_MODEL_GENES} needed): "
            "scores are NaN, as R",
            RecoveryWarning,
        )
        out = pd.DataFrame(np.nan, index=cell_ids, columns=list(w.columns))
        return (out, []) if return_runs else out
    engine = ThreadEngine(RowSource(mat, np.arange(len(genes), dtype=np.int64)), block_size(len(genes)), threads)
    checks = BlockChecks(cell_ids, genes, None)
    group_of_row = np.zeros(len(cell_ids), dtype=np.int64)
    stats = compute_statistics(engine, [g], group_of_row, len(genes), scale=bool(scale), guard=False, checks=checks)
    if stats.omitted.any():
        warn(
            f"{int(stats.omitted.sum())} cells express fewer than {MIN_GENES_EXPRESSED} genes and are omitted, as R",
            RecoveryWarning,
        )
    plan = plan_runs([g], len(cell_ids), mode, int(cells_per_run))
    job = SolveJob(mode, sum_to_one=sum_to_one, keep_details=return_runs)
    results = engine.solve(plan, run_models(stats, [g]), job, fired=False, progress=False)
    out, runs = _table(results, cell_ids, w, return_runs)
    return (out, runs) if return_runs else out
