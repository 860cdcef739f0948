"""Recovery of spatial ecotypes (SEs) in new single-cell data: R's ``RecoverSE`` as a pipeline.

:func:`recover` applies cell-type-specific recovery models (W matrices, features x SEs) to a
log-normalised cells x genes matrix and returns, for every cell, its SE, its score and the
normalised scores of every SE. ``mode="exact"`` reproduces R SpatialEcoTyper 1.0.4 (METHOD.md
sections 4 and 7); ``mode="fast"`` solves each cell's convex KL problem on its own in Rust.

The steps, each in its own module of :mod:`ecorecover.recovery`: read and check the input
(:mod:`.inputs`), match the models' genes and pick the scored cell types (:mod:`.matching`),
stream the model genes in row blocks (:mod:`.source`) through an engine (:mod:`.engine`: threads
in process, or Dask with ``client=``) for the per-gene statistics (:mod:`.statistics`) and the
runs (:mod:`.plan`, :mod:`.solvers`), then assemble R's table and write it into the AnnData
(:mod:`.assemble`). A backed AnnData is never loaded whole: only one block of the model genes
and the runs in flight are in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from .. import _collate
from .._input_data import check_nonnegative, check_writable
from .._validation import resolve_threads
from .._params import Interval, StrOptions, validate_params
from .._warnings import warn
from ..errors import InputDataError, ParameterError, RecoveryWarning
from .assemble import Assembled, assemble, model_provenance, output_keys, published_postprocess, summary, write
from .constants import MIN_GENES_EXPRESSED, UNSCORED_REASONS, Mode
from .engine import Engine, make_engine
from .inputs import (
    RUN_PARAMS, GeneNames, RunOptions, RecoveryInput, check_model, check_se_names, check_unique_ids, read_input,
)
from .matching import GroupMatch, match_groups, warn_unmodelled
from .plan import plan_runs
from .solvers import RunResult, SolveJob, run_totals
from .source import RowSource, block_size
from .statistics import BlockChecks, compute_statistics, run_models

if TYPE_CHECKING:
    from anndata import AnnData  # type: ignore[import-untyped,unused-ignore]
    from typing_extensions import Unpack

__all__ = ["recover"]

_log = logging.getLogger("ecorecover.recover")
ObjArray = npt.NDArray[np.object_]


#: What recover()'s arguments accept, checked before any work by its ``validate_params``
#: declaration, in this order.
RECOVER_PARAMS: dict[str, list[Any]] = {
    "min_score": [Interval(Real, 0, 1)],  # scores sum to 1 per cell
    **RUN_PARAMS,
    "collation": [StrOptions({"icu", "C"})],
    "key_added": [str],
}


def _check_target(inp: RecoveryInput, copy: bool, key_added: str, overwrite: bool) -> None:
    """Before any work: an AnnData to return (copy), keys free to write, no scaled data in memory,
    unique cell ids."""
    if copy and inp.adata is None:
        raise ParameterError("copy=True returns an AnnData; it needs an AnnData input")
    if inp.adata is not None:
        check_writable(inp.adata, output_keys(key_added), overwrite=overwrite, category=RecoveryWarning)
    if inp.src is not None and (sp.issparse(inp.x) or isinstance(inp.x, np.ndarray)):
        # scaled data refused up front when the matrix is in memory (backed / dask: in pass 1);
        # a CSC matrix is only converted (to find the first cell) when it holds a negative value
        if not (sp.issparse(inp.x) and inp.x.format == "csc" and not bool((inp.x.data < 0).any())):
            check_nonnegative(inp.src, inp.x, inp.cell_ids, inp.genes)
    check_unique_ids(inp.cell_ids)


def _label_counts(labels: ObjArray, models: Mapping[str, Any], celltype_key: str, from_obs: bool) -> pd.Series:
    """Cells per label; at least one cell type of the model must be in the data."""
    counts = pd.Series(labels, dtype=object).value_counts(dropna=True)
    if not any(ct in counts.index for ct in models):
        raise InputDataError(
            f"no cell type of the model is present in the data: the model has {list(models)}, the data's "
            f"cell types are {list(counts.index[:20])}{' ...' if len(counts) > 20 else ''}"
            + (f" (from adata.obs[{celltype_key!r}])" if from_obs else "")
        )
    return counts


def _score(
    engine: Engine, match: GroupMatch, labels: ObjArray, inp: RecoveryInput, unscored: dict[str, int], *,
    scale: bool, mode: Mode, cells_per_run: int, progress: bool,
) -> tuple[list[RunResult], bool, dict[str, float]]:
    """The statistics passes and the runs: (run results, raw-count guard fired, timings: wall
    seconds of the passes and the runs; within the runs, reading and solving summed over runs)."""
    timings = {"statistics_s": 0.0, "runs_s": 0.0, **run_totals([])}
    if not match.groups:
        return [], False, timings
    t0 = time.perf_counter()
    checks = BlockChecks(inp.cell_ids, GeneNames(inp.genes, match.kept), inp.negative_error)
    stats = compute_statistics(
        engine, match.groups, match.group_of_row, len(match.kept), scale=scale, guard=True, checks=checks,
    )
    timings["statistics_s"] = time.perf_counter() - t0
    omitted = int(stats.omitted.sum())
    if omitted:
        by_type = pd.Series(labels[stats.omitted]).value_counts()
        warn(
            f"{omitted} cells express fewer than {MIN_GENES_EXPRESSED} model genes and are not scored "
            "(scores 0, SE 'NonSE', scored False): " + ", ".join(f"{ct} ({c})" for ct, c in by_type.items()),
            RecoveryWarning,
        )
    unscored["too_few_genes_expressed"] = omitted
    t0 = time.perf_counter()
    plan = plan_runs(match.groups, len(labels), mode, cells_per_run)
    job = SolveJob(mode, sum_to_one=True, keep_details=False)
    results = engine.solve(plan, run_models(stats, match.groups), job, fired=stats.fired, progress=progress)
    timings["runs_s"] = time.perf_counter() - t0
    timings.update(run_totals(results))
    _log.info("statistics passes %.2f s; %d runs (%s mode) %.2f s (reading cells %.2f s, solving %.2f s, summed "
              "over runs)", timings["statistics_s"], len(results), mode, timings["runs_s"], timings["runs_gather_s"],
              timings["runs_solve_s"])
    return results, stats.fired, timings


def _deliver(inp: RecoveryInput, res: Assembled, info: dict[str, Any], key_added: str, copy: bool) -> Any:
    """The table (``attrs`` holding the summary), written into the AnnData or a copy of it."""
    # DataFrame.attrs must stay plain data: pandas compares attrs with == when it concatenates
    # frames (e.g. in repr), which a DataFrame value would make ambiguous. The runs table goes
    # there as records; uns keeps the DataFrame.
    res.table.attrs["ecorecover"] = {**info, "runs": info["runs"].to_dict("records")}
    if inp.adata is None:
        return res.table
    target = inp.adata.copy() if copy else inp.adata
    write(target, key_added, res, info)
    return target if copy else res.table


class _Options(RunOptions, total=False):
    """recover()'s options other than ``copy`` and the run options (for its overloads)."""

    celltype_key: str
    min_score: float
    key_added: str
    overwrite: bool
    progress: bool
    gene_symbols: str | None
    celltypes: Any
    collation: _collate.Collation
    layer: str | None
    use_raw: bool
    client: Any


# The return type follows copy; the implementation below spells out every option.
@overload
def recover(
    adata: Any, model: Mapping[str, pd.DataFrame], *, copy: Literal[False] = False, **options: Unpack[_Options]
) -> pd.DataFrame: ...


@overload
def recover(
    adata: Any, model: Mapping[str, pd.DataFrame], *, copy: Literal[True], **options: Unpack[_Options]
) -> AnnData: ...


@overload
def recover(
    adata: Any, model: Mapping[str, pd.DataFrame], *, copy: bool = False, **options: Unpack[_Options]
) -> pd.DataFrame | AnnData: ...


@validate_params(RECOVER_PARAMS, where="ecorecover.recover()")
def recover(
    adata: Any,
    model: Mapping[str, pd.DataFrame],
    *,
    celltype_key: str = "CellType",
    min_score: float = 0.0,
    scale: bool = True,
    cells_per_run: int = 1000,
    mode: Mode = "exact",
    n_jobs: int | None = None,
    key_added: str = "SE_recovered",
    copy: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    gene_symbols: str | None = None,
    celltypes: Any = None,
    collation: _collate.Collation = "icu",
    layer: str | None = None,
    use_raw: bool = False,
    client: Any = None,
) -> pd.DataFrame | AnnData:
    """Recover each cell's spatial ecotype (SE) with cell-type-specific recovery models.

    R SpatialEcoTyper's ``RecoverSE(dat, celltypes, Ws, min.score, ncell.per.run, scale)``.

    Parameters
    ----------
    adata
        An AnnData, cells x genes, log-normalised (dense, sparse or backed; only the model genes
        are read, in row blocks), or a genes x cells :class:`pandas.DataFrame` as in R (then
        ``celltypes`` is required). The matrix must hold log-normalised expression (not scaled:
        recovery scales each gene per cell type itself); an AnnData matrix with negative values
        is refused (it looks like ``sc.pp.scale`` output; see ``layer`` / ``use_raw``). A
        DataFrame is taken as it is, as R does.
    model
        A :class:`~ecorecover.RecoveryModel` or any mapping cell type -> W DataFrame (features x
        SEs, features named ``GENE__pos`` / ``GENE__neg`` or plain genes), as R's list of W.
    celltype_key
        Column of ``adata.obs`` holding the cell types (ignored when ``celltypes`` is given).
    min_score
        A cell whose best score is below this (or 0) gets SE ``"NonSE"``.
    scale
        Scale each gene over each cell type's cells (Seurat ScaleData) before recovery; cells
        expressing fewer than 3 genes of the models are then left unscored (as R).
    cells_per_run
        Exact mode: cells per NMF run (R's ``ncell.per.run``): the cells of a type are split into
        ``ceil(n / cells_per_run)`` contiguous runs of as-equal-as-possible size.
    mode
        ``"exact"`` reproduces R (iteration counts couple the cells of a run); ``"fast"`` solves
        every cell's KL problem to convergence on its own (SQP with an active-set QP, Rust),
        much faster, with the same SE for >= 99.5% of cells in our tests.
    n_jobs
        Threads (None or -1: all cores). Results do not depend on it.
    key_added
        Prefix of what is written into ``adata`` (see Returns). The default ``"SE_recovered"``
        differs from ``"SE"``, where :func:`ecorecover.train`, :func:`ecorecover.loocv` and
        :func:`ecorecover.metrics` read the true labels, so recovery never replaces them.
    copy
        Return a new AnnData holding the results instead of writing into ``adata``.
    overwrite
        Replace existing ``adata`` keys that ecorecover did not write. Keys an earlier
        ecorecover call wrote (listed in ``adata.uns["ecorecover"]["written_keys"]``) are
        replaced with a warning; any other existing key is refused (``ValueError``, before any
        work) unless ``overwrite=True``.
    progress
        Show a progress bar (tqdm) over runs.
    gene_symbols
        Column of ``adata.var`` holding gene symbols, when ``var_names`` are other identifiers
        (e.g. Ensembl IDs) and the model uses symbols.
    celltypes
        Cell-type labels, one per cell (as R's ``celltypes``); overrides ``celltype_key``. A
        Series indexed by the cell ids is matched by id, anything else by position.
    layer, use_raw
        Read the expression from ``adata.layers[layer]`` or from ``adata.raw`` (its ``X`` and
        ``var_names``) instead of ``adata.X``, as scanpy does (e.g. ``use_raw=True`` after
        ``sc.pp.scale``, which keeps the log-normalised data in ``raw``).
    collation
        How SE names are sorted for the score columns: ``"icu"`` as R in any normal locale
        (``nonSE < NonSE < SE01``), ``"C"`` as R under ``LC_COLLATE=C``. It decides the column
        order and so the InitSE of unscored cells (all-zero scores: the first column).
    client
        A :class:`dask.distributed.Client`: run the statistics passes and the runs as tasks on
        that Dask cluster (see :mod:`ecorecover.dask`; needs ``ecorecover[dask]``). ``X`` is
        then best a dask array (``anndata.experimental.read_lazy``) whose chunks the workers
        read themselves. Results are identical to the in-process ones. Without a client, a
        dask ``X`` is read block by block into this process.

    Returns
    -------
    pandas.DataFrame
        One row per cell in input order, indexed by cell id: ``CellType``, ``InitSE`` (best SE),
        ``SE`` (``InitSE``, or ``"NonSE"`` when the score is 0 or below ``min_score``),
        ``PredScore``, then one column per SE with the normalised scores (0 where not scored)
        and ``scored`` (bool). These columns are R's ``RecoverSE`` table, value for value: a
        cell that is not scored (no model for its cell type, fewer than 20 cells of its type,
        fewer than 3 model genes expressed, no model feature left) has all-zero scores,
        ``PredScore`` 0, ``SE`` ``"NonSE"`` and, as in R, the first SE column as ``InitSE``;
        ``scored`` is False only for these cells, so count or plot SEs over ``scored`` cells.
        ``df.attrs["ecorecover"]`` holds the run summary (also in ``uns``). When ``adata`` is an
        AnnData it also gets ``obs[key_added]`` (SE), ``obs[key_added + "_score"]``,
        ``obs[key_added + "_scored"]``, ``obsm[key_added + "_scores"]`` and ``uns[key_added]``
        (parameters, model provenance, genes found per cell type with the missing ones listed,
        unscored cells and why, runs with their iteration counts);
        with ``copy=True`` a new AnnData holding them is returned instead and ``adata`` is left
        untouched.

    Raises
    ------
    ValueError
        No modelled cell type in the data, label count mismatch, duplicated cell ids, NaN/inf in
        the model genes of the data, negative values in an AnnData's matrix, a model with
        non-finite weights, an SE named like an output column, an existing ``adata`` key that
        ecorecover did not write (without ``overwrite``).
    GeneMatchError
        No model gene at all is found in the data (a ``KeyError``; try ``gene_symbols``).

    Warns
    -----
    RecoveryWarning
        Cells left unscored (cell types without a model or with fewer than 20 cells, cells
        expressing fewer than 3 model genes, models with fewer than 5 genes in the data, runs
        without a model feature: one warning with the count), models with over 10% of their
        genes missing from the data (naming some, and a letter-case mismatch when there is one),
        and keys of an earlier ecorecover call being replaced.
    RawCountWarning
        The model genes of the data look like raw counts (R's guard applies ``log2(x + 1)``).

    Notes
    -----
    Progress and timings (cells per cell type, runs, seconds per pass) are logged to the
    ``"ecorecover.recover"`` logger at INFO level; the progress bar is off when stderr is not
    a terminal.
    """
    if not key_added:  # a str (checked above), but empty
        raise ParameterError("ecorecover.recover(): key_added must be a non-empty string, got ''")
    threads = resolve_threads(n_jobs)
    models = check_model(model)
    check_se_names(models)
    inp, labels = read_input(adata, celltype_key, celltypes, gene_symbols, layer, use_raw)
    _check_target(inp, copy, key_added, overwrite)
    counts = _label_counts(labels, models, celltype_key, from_obs=celltypes is None and inp.adata is not None)
    unscored = dict.fromkeys(UNSCORED_REASONS, 0)
    match = match_groups(models, labels, inp, gene_symbols, counts, unscored)
    warn_unmodelled(models, labels, counts, unscored)
    _log.info("%d cells, %d genes read of %d (%s); cell types scored: %s", len(inp.cell_ids), len(match.kept),
              len(inp.genes), inp.where, ", ".join(f"{g.name} ({len(g.rows)})" for g in match.groups) or "none")
    source = RowSource(inp.x, np.array(match.kept, dtype=np.int64), genes_by_cells=inp.genes_by_cells)
    engine = make_engine(source, block_size(len(match.kept)), threads, client)
    results, fired, timings = _score(
        engine, match, labels, inp, unscored, scale=bool(scale), mode=mode, cells_per_run=int(cells_per_run),
        progress=progress,
    )
    timings["read_s"] = source.read_s  # block reads of backed / dask input (in the passes and runs)
    t0 = time.perf_counter()
    res = assemble(
        results, match.groups, models, labels, inp.cell_ids, min_score=min_score, collation=collation,
        unscored=unscored, cells_per_run=int(cells_per_run), mode=mode,
    )
    post = published_postprocess(model)
    if post is not None:
        res.table = post(res.table)
    params = {
        "celltype_key": celltype_key if celltypes is None else "",
        "min_score": float(min_score), "scale": bool(scale), "cells_per_run": int(cells_per_run),
        "mode": mode, "collation": collation, "gene_symbols": gene_symbols or "",
        "matrix": inp.where, "n_cells": len(inp.cell_ids), "raw_count_guard_fired": bool(fired),
        "published_postprocess": post is not None,
    }
    timings["assembly_s"] = time.perf_counter() - t0
    info = summary(params, model_provenance(model, models), match.genes_found, unscored, res, timings)
    return _deliver(inp, res, info, key_added, copy)
