"""R's ``LoocvPredict`` as named steps: check, plan the splits, run them, vote, write the result.

:func:`loocv` trains models on some samples and recovers the SEs of the cells of the others,
repeated with several seeds; the most frequent call per cell is its cross-validated prediction.
The splits themselves are in :mod:`ecorecover.validation.splits`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from .. import _collate
from .._input_data import check_nonnegative, check_writable, record_written, select_matrix
from .._labels import label_column
from .._params import Interval, StrOptions, validate_params
from .._validation import resolve_n_jobs
from ..errors import ParameterError, ParameterTypeError
from .common import COLLATIONS, Scheme, ValidationWarning
from .splits import SEED_RANGE, call_scored, collect, plan_splits, resolve_seeds, run_split, run_splits
from .majority import vote
from .._warnings import warn

__all__ = ["loocv"]

_MANAGED_TRAIN = {"celltype_key", "se_key", "sample_key", "seed", "meta", "progress", "n_jobs"}
_MANAGED_RECOVER = {
    "celltype_key", "celltypes", "key_added", "copy", "progress", "n_jobs", "collation", "layer", "use_raw", "overwrite",
}
#: What loocv's arguments accept (checked by its ``_params.validate_params`` decorator).
_PARAMS: dict[str, list[Any]] = {
    "sample_key": [str], "celltype_key": [str], "se_key": [str],
    "repeats": [Interval(Integral, 1, SEED_RANGE), None], "seed": [Interval(Integral, None, None)],
    "scheme": [StrOptions({"leave_one_out", "train_one"})],
    "collation": [StrOptions(COLLATIONS)],
    "layer": [str, None],
    "n_jobs": ["n_jobs"],
    "overwrite": ["boolean"], "use_raw": ["boolean"], "progress": ["boolean"], "return_predictions": ["boolean"],
}
_log = logging.getLogger("ecorecover.loocv")


def _labels(obs: pd.DataFrame, key: str, what: str) -> np.ndarray:
    return label_column(obs, key, what, missing_hint="every cell needs a label for cross-validation")[0]


@overload
def loocv(
    adata: Any, *, sample_key: str = "Sample", celltype_key: str = "CellType", se_key: str = "SE",
    repeats: int | None = None, seed: int = 2024, seeds: Sequence[int] | None = None, scheme: Scheme = "leave_one_out",
    key_added: str = "cvPred", overwrite: bool = False, recover_kwargs: Mapping[str, Any] | None = None,
    collation: _collate.Collation = "icu", layer: str | None = None, use_raw: bool = False, n_jobs: int | None = None,
    progress: bool = True,
    return_predictions: Literal[False] = False, **train_kwargs: Any,
) -> pd.DataFrame: ...


@overload
def loocv(
    adata: Any, *, sample_key: str = "Sample", celltype_key: str = "CellType", se_key: str = "SE",
    repeats: int | None = None, seed: int = 2024, seeds: Sequence[int] | None = None, scheme: Scheme = "leave_one_out",
    key_added: str = "cvPred", overwrite: bool = False, recover_kwargs: Mapping[str, Any] | None = None,
    collation: _collate.Collation = "icu", layer: str | None = None, use_raw: bool = False, n_jobs: int | None = None,
    progress: bool = True,
    return_predictions: Literal[True], **train_kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]: ...


@validate_params(_PARAMS, where="ecorecover.loocv()")
def loocv(
    adata: Any,
    *,
    sample_key: str = "Sample",
    celltype_key: str = "CellType",
    se_key: str = "SE",
    repeats: int | None = None,
    seed: int = 2024,
    seeds: Sequence[int] | None = None,
    scheme: Scheme = "leave_one_out",
    key_added: str = "cvPred",
    overwrite: bool = False,
    recover_kwargs: Mapping[str, Any] | None = None,
    collation: _collate.Collation = "icu",
    layer: str | None = None,
    use_raw: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
    return_predictions: bool = False,
    **train_kwargs: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validated SE predictions per cell: R SpatialEcoTyper's ``LoocvPredict``.

    Parameters
    ----------
    adata
        AnnData, cells x genes, log-normalised expression in ``X`` (as for :func:`ecorecover.train`),
        with the sample, cell type and true SE of every cell in ``obs``.
    sample_key, celltype_key, se_key
        Columns of ``adata.obs``.
    repeats
        Number of repeats (default 30). Each repeat trains with its own seed; the repeats only
        differ where training draws cells (balancing, downsampling) and in W's start.
    seed
        Seed of the per-repeat seeds, drawn as R draws them (``sample(1:10000, repeats)``) after
        ``set.seed(seed)``: ``seed=1, repeats=3`` gives R's 1017, 8004, 4775. R draws them from
        an unseeded session; here they are reproducible.
    seeds
        The per-repeat seeds themselves (then ``repeats`` is their number).
    scheme
        ``"leave_one_out"`` (train on the other samples, predict the held-out one) or
        ``"train_one"`` (train on one sample, predict all the others: R 1.0.4's behaviour).
        With one sample only: random two-fold splits per cell type, per repeat.
    key_added
        Name of the prediction column (R: ``cvPred``). An existing ``adata.obs`` / ``adata.uns``
        key that ecorecover did not write is refused (before any work) unless ``overwrite``;
        one an earlier ecorecover call wrote is replaced with a warning.
    overwrite
        Replace such keys anyway.
    layer, use_raw
        Train and recover on ``adata.layers[layer]`` or ``adata.raw`` instead of ``adata.X``
        (scanpy's convention). The matrix must be log-normalised: negative values (scaled
        data) are refused.
    recover_kwargs
        Passed to :func:`ecorecover.recover` (e.g. ``min_score``, ``mode``, ``cells_per_run``).
    collation
        R's string order for samples, vote ties and score columns (``"icu"`` or ``"C"``).
    n_jobs
        Threads (None or -1: all cores); splits run in parallel. Results do not depend on it.
    progress
        Show a progress bar over the splits (off when stderr is not a terminal). Splits and
        timings are logged to the ``"ecorecover.loocv"`` logger at INFO level.
    return_predictions
        Also return every split's predictions (long table: ``call``, ``repeat``, ``seed``,
        ``train``, ``CID``, ``SE``, ``PredScore``, ``scored``), as R's per-split ``RecoverSE``
        results (``scored`` False: the cell's type got no model in that split, too few cells...).
    **train_kwargs
        Passed to :func:`ecorecover.train` (``n_features``, ``n_features_per_se``, ``min_cells``,
        ``downsample``, ``balance_samples``, ``scale``, ``n_runs``).

    Returns
    -------
    pandas.DataFrame
        One row per cell (input order, indexed by cell id): ``sample_key``, ``celltype_key``,
        ``se_key``, ``key_added`` (the majority prediction; ties to the label sorting first),
        ``key_added + "_support"`` (share of the cell's votes for it), ``key_added + "_votes"``
        and ``key_added + "_scored"`` (False when every vote for the call came from a split
        where the cell was not scored: its ``"NonSE"`` says "no model", not "no SE").
        ``df.attrs["ecorecover"]`` holds the parameters, the seeds and the trainings (one row
        per split, as a dict of columns: seed, samples trained on, cells, cell types trained). ``adata.obs[key_added]``,
        ``adata.obs[key_added + "_scored"]`` and ``adata.uns[key_added]`` get the same. With ``return_predictions``:
        ``(df, predictions)``.

    Raises
    ------
    KeyError
        A key is not a column of ``adata.obs``; a managed argument is passed in ``train_kwargs``.
    ValueError
        Missing labels, bad ``repeats``/``seeds``/``scheme``; no split could be trained; negative
        values in the matrix (scaled data); an existing key not written by ecorecover.

    Warns
    -----
    ValidationWarning
        A split trains no model (its test cells get no vote from it) or cells end without a vote.
        Warnings of the trainings and recoveries are collected and re-issued once each, with the
        number of splits that raised them.
    """
    _check_loocv_args(adata, scheme, collation, key_added, n_jobs, train_kwargs)
    recover_kwargs = dict(recover_kwargs or {})
    bad = _MANAGED_RECOVER & set(recover_kwargs)
    if bad:
        raise ParameterTypeError(f"recover_kwargs must not set {sorted(bad)}: loocv() manages them")
    seed_list = resolve_seeds(repeats, seed, seeds)
    keys = {"celltype_key": celltype_key, "se_key": se_key, "sample_key": sample_key}
    labels = {k: _labels(adata.obs, keys[k], k) for k in ("sample_key", "celltype_key", "se_key")}
    cell_ids = [str(c) for c in adata.obs_names]
    if len(set(cell_ids)) != len(cell_ids):
        raise ValueError("cell ids must be unique; call adata.obs_names_make_unique() first")
    src = select_matrix(adata, layer=layer, use_raw=use_raw)
    check_nonnegative(src, src.x, cell_ids, src.var_names)
    targets = [("obs", key_added), ("obs", key_added + "_scored"), ("uns", key_added)]
    check_writable(adata, targets, overwrite=overwrite, category=ValidationWarning)
    threads = _threads(n_jobs)
    splits, single = plan_splits(labels["sample_key"], labels["celltype_key"], seed_list, scheme, collation)
    t0 = time.perf_counter()
    _log.info("%d splits (%s, %d repeat(s)) over %d cells of %d sample(s), matrix %s", len(splits),
              "two_fold" if single else scheme, len(seed_list), len(cell_ids), len(set(labels["sample_key"])), src.where)
    run = functools.partial(
        run_split, adata, keys=keys, train_kwargs=dict(train_kwargs), recover_kwargs=recover_kwargs,
        collation=collation, matrix=(src.x, src.var_names),
    )
    results = run_splits(run, splits, threads, progress)
    predictions, trainings = collect(results, cell_ids)
    voted = vote(predictions, cell_key="CID", pred_key="SE", cells=cell_ids, collation=collation)
    no_vote = int((voted["n_votes"] == 0).sum())
    if no_vote:
        warn(
            f"{no_vote} cells got no prediction (their splits failed); {key_added} is missing for them",
            ValidationWarning,
        )
    out = _table(keys, labels, cell_ids, key_added, voted, predictions)
    elapsed = time.perf_counter() - t0
    _log.info("loocv: %d splits in %.2f s", len(splits), elapsed)
    info = {
        "params": {
            "scheme": scheme if not single else "two_fold", "requested_scheme": scheme, "repeats": len(seed_list),
            "seed": int(seed) if seeds is None else None, "sample_key": sample_key, "celltype_key": celltype_key,
            "se_key": se_key, "collation": collation,
            "train_kwargs": dict(train_kwargs), "recover_kwargs": recover_kwargs, "matrix": src.where, "elapsed_s": elapsed,
        },
        "seeds": list(seed_list),
        "trainings": trainings,
    }
    _write(adata, out, info, key_added, targets)
    return (out, predictions) if return_predictions else out


def _check_loocv_args(
    adata: Any, scheme: Any, collation: Any, key_added: Any, n_jobs: Any, train_kwargs: Mapping[str, Any]
) -> None:
    """Refuse what is not an AnnData, a bad scheme / collation / key_added / n_jobs, and training
    arguments loocv() sets itself."""
    import anndata

    if not isinstance(adata, anndata.AnnData):
        raise ParameterTypeError(
            f"adata must be an AnnData (cells x genes, labels in obs), got {type(adata).__name__}"
        )
    if not isinstance(key_added, str) or not key_added:
        raise ParameterError(f"key_added must be a non-empty string, got {key_added!r}")
    bad = _MANAGED_TRAIN & set(train_kwargs)
    if bad:
        raise ParameterTypeError(
            f"loocv() sets {sorted(bad)} itself; use its own arguments (sample_key=, seed=/seeds=, n_jobs=...)"
        )


def _threads(n_jobs: int | None) -> int:
    """Threads for the splits: ``n_jobs`` resolved, None meaning every core this process may use."""
    threads = resolve_n_jobs(n_jobs)
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return threads


def _table(keys: dict[str, str], labels: dict[str, np.ndarray], cell_ids: list[str], key_added: str,
           voted: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: sample, cell type, true SE, the call, its support, votes and scored flag."""
    out = pd.DataFrame({keys[k]: labels[k] for k in ("sample_key", "celltype_key", "se_key")}, index=pd.Index(cell_ids))
    out[key_added] = voted["call"].to_numpy()
    out[key_added + "_support"] = voted["support"].to_numpy()
    out[key_added + "_votes"] = voted["n_votes"].to_numpy()
    out[key_added + "_scored"] = call_scored(predictions, voted, cell_ids)
    return out


def _write(adata: Any, out: pd.DataFrame, info: dict[str, Any], key_added: str, targets: list[tuple[str, str]]) -> None:
    """The result into ``out.attrs`` and ``adata`` (obs columns and uns), recorded as written."""
    # attrs stay plain data (pandas compares attrs with == when it concatenates, e.g. in repr):
    # the trainings go there as columns of lists; uns keeps the DataFrame.
    out.attrs["ecorecover"] = {**info, "trainings": info["trainings"].to_dict("list")}
    adata.obs[key_added] = pd.Categorical(out[key_added].to_numpy())
    adata.obs[key_added + "_scored"] = out[key_added + "_scored"].to_numpy()
    adata.uns[key_added] = {k: v for k, v in info.items()}
    record_written(adata, targets)
