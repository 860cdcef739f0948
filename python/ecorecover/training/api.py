"""R SpatialEcoTyper's ``NMFGenerateWList``: :func:`train`, read top to bottom as its steps.

Check the arguments (:mod:`~ecorecover.training.options`), read and check the input
(:mod:`~ecorecover.training.inputs`), choose the trainable cell types and prepare each
(:mod:`~ecorecover.training.plan`), run every (run, cell type) pair on an executor
(:mod:`~ecorecover.training.ensemble`: draws, posneg, W, selection in
:mod:`~ecorecover.training.fit`), and assemble the model (:mod:`~ecorecover.training.assemble`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .._params import validate_params
from ..model import RecoveryModel
from .assemble import build_model, recorded_params
from .._validation import resolve_threads
from .ensemble import CellTypeFits, RunExecutor, fit_cell_types
from .fit import RunOptions
from .inputs import read_training_data
from .options import TRAIN_PARAMS, TrainOptions, train_options
from .plan import Prepared, prepare_cell_type, trainable_cell_types
from .sampling import DrawOptions

__all__ = ["Training", "dask_executor", "run_training", "train"]

log = logging.getLogger("ecorecover.train")


@dataclass
class Training:
    """What :func:`run_training` computed: the cell names, the per-cell-type results of every run and
    the parameters every model records."""

    cells: list[str]
    fits: CellTypeFits
    params: dict[str, Any]

    def selection(self, run: int = 0) -> dict[str, dict[str, list[str]]]:
        """Per cell type, the cells (R's order) and genes (R's order) used in run ``run``."""
        return {
            c: {"cells": [self.cells[i] for i in self.fits.runs[run][c].cells], "genes": list(p.genes)}
            for c, p in self.fits.prepared.items()
        }


def run_training(
    adata: object, options: TrainOptions, *, meta: pd.DataFrame | None = None, executor: RunExecutor | None = None
) -> Training:
    """Every step of :func:`train` but the model: input, cell types, preparation and runs
    (on ``executor``; None: threads in this process)."""
    data = read_training_data(adata, meta, options)
    rows, skipped = trainable_cell_types(data, options.min_cells)
    log.info("training %d cell type(s) on %d cells x %d genes, %d run(s) (seeds %d..%d)%s", len(rows), len(data.cells),
             len(data.genes), options.n_runs, options.seed, options.seed + options.n_runs - 1,
             f"; skipped: {', '.join(skipped)}" if skipped else "")
    for c, r in rows.items():
        log.debug("%s: %d cells", c, r.size)

    def prepare(c: str) -> Prepared | str:
        return prepare_cell_type(data, c, rows[c], options)

    draw = DrawOptions(balance=options.balance_samples, downsample=options.downsample, min_cells=options.min_cells,
                       with_samples=data.sample is not None)
    t0 = time.perf_counter()
    fits = fit_cell_types(
        prepare, list(rows), seeds=options.seeds, session_seed=options.session_seed,
        options=RunOptions(draw, options.n_features_per_se), executor=executor,
        n_threads=resolve_threads(options.n_jobs), progress=options.progress,
    )
    failed, fits.skipped = fits.skipped, {**skipped, **fits.skipped}
    log.info("trained %d cell type(s) x %d run(s) in %.2f s%s", len(fits.prepared), options.n_runs,
             time.perf_counter() - t0, f"; not trained: {', '.join(failed)}" if failed else "")
    return Training(data.cells, fits, recorded_params(options, fits, data.cells, data.raw_guard_fired))


def dask_executor(client: object) -> RunExecutor:
    """The (run, cell type) pairs as tasks on the Dask cluster of ``client``."""
    from ..dask.training import DaskRunExecutor

    return DaskRunExecutor(client)


@validate_params(TRAIN_PARAMS, where="ecorecover.train()")
def train(
    adata: Any,
    *,
    celltype_key: str = "CellType",
    se_key: str = "SE",
    sample_key: str | None = None,
    n_features: int = 300,
    n_features_per_se: int | None = 50,
    min_cells: int = 20,
    downsample: int | None = 2500,
    balance_samples: bool = True,
    scale: bool = True,
    seed: int = 2024,
    n_runs: int = 1,
    n_jobs: int | None = None,
    progress: bool = True,
    meta: pd.DataFrame | None = None,
    client: Any = None,
    session_seed: int | None = None,
    layer: str | None = None,
    use_raw: bool = False,
) -> RecoveryModel:
    """Train cell-type-specific SE recovery models: R SpatialEcoTyper's ``NMFGenerateWList``.

    Parameters
    ----------
    adata
        Either an :class:`anndata.AnnData`, **cells x genes**, with log-normalised expression
        in ``X`` (dense or scipy sparse) and the labels in ``obs``; or a pandas DataFrame
        **genes x cells** (R's / the tutorial's orientation) together with ``meta``.
    celltype_key, se_key, sample_key
        Columns of ``obs`` (or ``meta``) with the cell type, the spatial ecotype (any label,
        ``"nonSE"`` included; a missing SE label becomes ``"nonSE"``, as in R, with a
        :class:`MissingLabelWarning`) and, optionally, the sample. With ``sample_key`` genes are
        chosen by rank sums of per-sample variances, each sample is scaled separately and
        (with ``balance_samples``) large samples are subsampled to the median size.
    n_features
        Genes per cell type (highest variance, or highest variance-rank sum over samples).
    n_features_per_se
        Genes kept per SE by the delta rule (counted with duplicates as R does); ``None``
        keeps all features (R's ``Inf``, the tutorial's setting for ensembles).
    min_cells
        A cell type is trained when at least two SEs have more than ``min_cells`` of its
        cells; samples with at most ``min_cells`` cells of the type are left out.
    downsample
        At most this many cells per cell type (``None``: no limit), drawn as R does.
    balance_samples
        Subsample each sample to ``max(floor(median sample size), min_cells)`` cells.
    scale
        Scale genes (Seurat ``ScaleData``, per sample when ``sample_key`` is given).
    seed
        R's ``set.seed`` value for the draws; R's draws are reproduced exactly.
    n_runs
        Number of runs. Run ``r`` (0-based) uses seed ``seed + r``, so run 0 is the single-run
        model and no two runs share a seed; the runs are combined with
        :func:`ecorecover.aggregate` (default thresholds) and kept on ``.runs``.
    n_jobs
        Threads for the cell types (None or -1: all cores). Results do not depend on it.
    progress
        Show tqdm progress bars (per cell type, per run) on stderr.
    meta
        Cell metadata for DataFrame input: a DataFrame indexed by cell id, one row per column
        of ``adata`` (any order; matched by id).
    layer, use_raw
        Train on ``adata.layers[layer]`` or on ``adata.raw`` (its ``X`` and ``var_names``)
        instead of ``adata.X``, as scanpy does. The matrix must hold log-normalised expression:
        negative values (scaled or centred data, e.g. after ``sc.pp.scale``) are refused with
        a ``ValueError`` that names where the log-normalised data usually are.
    client
        A :class:`dask.distributed.Client`: the (run, cell type) pairs of the ensemble are
        computed as tasks on that Dask cluster (gene selection and scaling, shared by the
        runs, stay in this process). The model is identical to the in-process one. See
        :mod:`ecorecover.dask` (needs ``ecorecover[dask]``).
    session_seed
        The ``set.seed`` value R's session had before calling ``NMFGenerateWList``. Where R
        seeds nothing inside a cell type (no ``sample_key`` with balancing, no downsampling),
        its initial W is ``runif(m * k)`` from the session's stream, continued across the cell
        types in R's order (a cell type that seeds for its draws restarts the stream there).
        With ``session_seed=s`` those draws are reproduced, so ``set.seed(1);
        NMFGenerateWList(...)`` is ``train(..., session_seed=1)``; run ``r`` of an ensemble
        uses ``s + r``. ``None`` (default): such a cell type draws its initial W from
        ``set.seed(seed)``'s stream instead. The initial W only matters where two SEs have
        exactly equal means of a feature: R's iterations then decide which SE holds the
        row's maximum, and so whether the gene is selected.

    Returns
    -------
    A :class:`ecorecover.RecoveryModel` (cell type -> W, features ``GENE__pos`` /
    ``GENE__neg`` x SEs in R's order). ``params`` records all arguments, the seeds, the
    package version, the genes selected and cells used per cell type and the skipped cell
    types.

    Raises
    ------
    KeyError
        A key is not a column of the metadata.
    TrainingInputError
        (a ``ValueError``) meta rows do not match the cells, duplicated gene or cell names,
        missing cell-type or sample labels, an empty matrix, NaN/inf in X (the message names
        the first cell and gene), or no cell type can be trained.
    ParameterError, ParameterTypeError
        (a ``ValueError`` / ``TypeError``) an argument out of range or of the wrong type.

    Warns
    -----
    SkippedCellTypeWarning
        For cell types that get no model, with the reason.
    MissingLabelWarning
        Cells without an SE label (NaN/None) were labelled ``"nonSE"``.
    RawCountWarning
        When the input looks like raw counts (min >= 0, max > 80): ``log2(x + 1)`` is applied
        to the whole matrix first, as R does.

    Notes
    -----
    Cell types come in R's sorted order (ICU collation); samples are sorted the same way.
    Features are labelled by origin after the zero-variance filter (R can mislabel a
    ``__neg`` row as ``__pos``; a documented divergence).
    """
    options = train_options(
        celltype_key=celltype_key, se_key=se_key, sample_key=sample_key, n_features=n_features,
        n_features_per_se=n_features_per_se, min_cells=min_cells, downsample=downsample,
        balance_samples=balance_samples, scale=scale, seed=seed, n_runs=n_runs, n_jobs=n_jobs,
        progress=progress, session_seed=session_seed, layer=layer, use_raw=use_raw,
    )
    executor = None if client is None else dask_executor(client)
    training = run_training(adata, options, meta=meta, executor=executor)
    return build_model(training.fits, options, training.params)
