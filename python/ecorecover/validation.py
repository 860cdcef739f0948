"""Cross-validation of recovery models: R SpatialEcoTyper's ``LoocvPredict`` and ``ComputeMetrics``.

:func:`loocv` trains models on some samples and recovers the SEs of the cells of the others,
repeated with several seeds; the most frequent call per cell is its cross-validated prediction
(``obs["cvPred"]``). :func:`metrics` compares predictions with the true SEs (recall, precision,
F1/F2 per SE, per sample, averaged over samples) exactly as R's ``ComputeMetrics`` does.

Two schemes (METHOD.md section 6):

- ``"leave_one_out"`` (default): for each sample, train on all the other samples and recover the
  cells of the held-out one; every cell gets one prediction per repeat. This is what R's
  documentation describes.
- ``"train_one"``: what R's ``LoocvPredict`` 1.0.4 actually does (upstream issue 10): for each
  sample, train on that ONE sample and recover the cells of all the others; every cell gets
  (samples - 1) predictions per repeat. ``seed=1`` reproduces ``set.seed(1); LoocvPredict(...)``.

With a single sample, the cells of each cell type are split at random into two halves per repeat
(two-fold cross-validation; R's single-sample branch fails in 1.0.4).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import _collate
from ._input_data import check_nonnegative, check_writable, record_written, select_matrix
from ._labels import label_column
from .training import TrainingInputError, train
from ._validation import resolve_n_jobs
from .rng import RRandom

__all__ = ["loocv", "metrics", "vote", "ValidationWarning", "METRICS"]

Scheme = Literal["leave_one_out", "train_one"]
Metric = Literal["F1", "F2", "precision", "recall"]
#: The metrics :func:`metrics` computes.
METRICS: tuple[str, ...] = ("F1", "F2", "precision", "recall")
_NON_SE = "NonSE"
#: R draws the per-repeat seeds with ``sample(1:10000, repeats)``.
_SEED_RANGE = 10000
_MANAGED_TRAIN = {"celltype_key", "se_key", "sample_key", "seed", "meta", "progress", "n_jobs"}
_MANAGED_RECOVER = {
    "celltype_key", "celltypes", "key_added", "copy", "progress", "n_jobs", "collation", "layer", "use_raw", "overwrite",
}
MetricScheme = Literal["r", "all"]
_log = logging.getLogger("ecorecover.loocv")


class ValidationWarning(UserWarning):
    """A cross-validation split could not be trained or scored, or labels are missing."""


# --------------------------------------------------------------------------------------------
# Vote


def vote(
    predictions: pd.DataFrame,
    *,
    cell_key: str = "CID",
    pred_key: str = "SE",
    cells: Sequence[str] | None = None,
    collation: _collate.Collation = "icu",
) -> pd.DataFrame:
    """The majority call per cell over repeated predictions, as R's ``LoocvPredict`` takes it.

    R: ``count(CID, SE) %>% arrange(desc(n)) %>% distinct(CID)``: the most frequent label; ties
    go to the label that sorts first under R's collation (``nonSE < NonSE < SE01`` with
    ``"icu"``; byte order with ``"C"``).

    Parameters
    ----------
    predictions
        Long table, one row per (prediction, cell): columns ``cell_key`` and ``pred_key``.
        Rows with a missing label do not vote.
    cell_key, pred_key
        Column names.
    cells
        Cells to report, in this order (cells without a vote get a missing call); default: the
        cells of ``predictions`` in first-seen order.
    collation
        Tie-break order, ``"icu"`` (R in any normal locale) or ``"C"``.

    Returns
    -------
    pandas.DataFrame
        Indexed by cell: ``call`` (the majority label, ``None`` without votes), ``n_votes`` and
        ``support`` (share of the votes for ``call``).
    """
    for k in (cell_key, pred_key):
        if k not in predictions.columns:
            raise KeyError(f"{k!r} is not a column of predictions (columns: {list(predictions.columns)})")
    if collation not in ("icu", "C"):
        raise ValueError(f"collation must be 'icu' or 'C', got {collation!r}")
    ok = predictions[pred_key].notna().to_numpy()
    cell_col = predictions[cell_key].astype(str).to_numpy()
    pred_col = predictions[pred_key].to_numpy()[ok].astype(str)
    if cells is None:
        cell_index = pd.Index(pd.unique(cell_col))
    else:
        cell_index = pd.Index([str(c) for c in cells])
        if cell_index.has_duplicates:
            raise ValueError("cells holds duplicated ids")
    labels = _collate.collate_sorted(pred_col, collation)
    lab_pos = {lab: i for i, lab in enumerate(labels)}
    ci = cell_index.get_indexer(cell_col[ok])
    li = np.fromiter((lab_pos[x] for x in pred_col), dtype=np.int64, count=len(pred_col))
    sel = ci >= 0
    counts = np.zeros((len(cell_index), max(1, len(labels))), dtype=np.int64)
    np.add.at(counts, (ci[sel], li[sel]), 1)
    n_votes = counts.sum(axis=1)
    best = counts.argmax(axis=1)  # first maximum = first label in collation order
    call = np.where(n_votes > 0, np.asarray(labels + [None], dtype=object)[np.where(n_votes > 0, best, len(labels))], None)
    with np.errstate(invalid="ignore", divide="ignore"):
        support = np.where(n_votes > 0, counts[np.arange(len(cell_index)), best] / np.maximum(n_votes, 1), np.nan)
    return pd.DataFrame({"call": call, "n_votes": n_votes, "support": support}, index=cell_index)


# --------------------------------------------------------------------------------------------
# LOOCV


@dataclass
class _Split:
    call: int
    repeat: int
    seed: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_label: str  # samples (or fold) trained on


def _labels(obs: pd.DataFrame, key: str, what: str) -> np.ndarray:
    return label_column(obs, key, what, missing_hint="every cell needs a label for cross-validation")[0]


def _resolve_seeds(repeats: int | None, seed: int, seeds: Sequence[int] | None) -> list[int]:
    if seeds is not None:
        out = []
        for s in seeds:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
                raise TypeError(f"seeds must be integers, got {s!r}")
            out.append(int(s))
        if not out:
            raise ValueError("seeds is empty; give at least one seed")
        if repeats is not None and repeats != len(out):
            raise ValueError(f"repeats={repeats} but {len(out)} seeds were given; pass one of them")
        return out
    repeats = 30 if repeats is None else repeats
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or not 1 <= repeats <= _SEED_RANGE:
        raise ValueError(f"repeats must be an integer between 1 and {_SEED_RANGE}, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    # R: sample(1:10000, repeats) from the caller's state; set.seed(seed) first here.
    return [int(v) for v in RRandom(int(seed)).sample_int(_SEED_RANGE, int(repeats))]


def _plan_splits(
    samples: np.ndarray, celltypes: np.ndarray, seeds: list[int], scheme: str, collation: _collate.Collation
) -> tuple[list[_Split], bool]:
    order = _collate.collate_sorted(set(samples), collation)
    splits: list[_Split] = []
    single = len(order) < 2
    for r, s in enumerate(seeds):
        if single:
            rng = RRandom(s)
            fold = np.zeros(len(samples), dtype=bool)
            for ct in _collate.collate_sorted(set(celltypes), collation):
                idx = np.flatnonzero(celltypes == ct)
                if len(idx) > 1:
                    drawn = rng.sample(idx)
                    fold[drawn[: len(idx) // 2]] = True
            a, b = np.flatnonzero(fold), np.flatnonzero(~fold)
            splits.append(_Split(len(splits) + 1, r + 1, s, a, b, "fold1"))
            splits.append(_Split(len(splits) + 1, r + 1, s, b, a, "fold2"))
            continue
        for smp in order:
            inside = np.flatnonzero(samples == smp)
            outside = np.flatnonzero(samples != smp)
            if scheme == "train_one":
                splits.append(_Split(len(splits) + 1, r + 1, s, inside, outside, smp))
            else:
                rest = ";".join(x for x in order if x != smp)
                splits.append(_Split(len(splits) + 1, r + 1, s, outside, inside, rest))
    return splits, single


def _subset(adata: Any, rows: np.ndarray, cols: list[str], x: Any, var_names: list[str]) -> Any:
    """The cells ``rows`` of ``adata`` with the chosen matrix ``x`` (X, a layer or raw.X) as X."""
    import anndata

    sub = x[rows] if len(rows) else x[:0]
    obs = adata.obs.iloc[rows][cols].copy()
    return anndata.AnnData(X=sub, obs=obs, var=pd.DataFrame(index=pd.Index(var_names)))


def _run_split(
    adata: Any, sp: _Split, keys: dict[str, Any], train_kwargs: dict[str, Any], recover_kwargs: dict[str, Any],
    threads: int, collation: _collate.Collation, matrix: tuple[Any, list[str]],
) -> tuple[_Split, list[str], np.ndarray | None, np.ndarray | None, np.ndarray | None, str | None]:
    """Train on the split's training cells, recover its test cells: (split, cell types trained,
    SE, PredScore, scored, failure)."""
    from .recovery import recover

    cols = list(dict.fromkeys([keys["celltype_key"], keys["se_key"], keys["sample_key"]]))
    tr = _subset(adata, sp.train_rows, cols, *matrix)
    try:
        model = train(
            tr, celltype_key=keys["celltype_key"], se_key=keys["se_key"], sample_key=keys["sample_key"],
            seed=sp.seed, progress=False, n_jobs=threads, **train_kwargs,
        )
    except TrainingInputError as e:
        return sp, [], None, None, None, f"no model could be trained: {e}"
    trained = list(model)
    te = _subset(adata, sp.test_rows, cols, *matrix)
    present = set(te.obs[keys["celltype_key"]].astype(str))
    if not present & set(trained):
        n = len(sp.test_rows)
        return sp, trained, np.full(n, _NON_SE, dtype=object), np.zeros(n), np.zeros(n, dtype=bool), None
    res = recover(
        te, model, celltype_key=keys["celltype_key"], progress=False, n_jobs=threads, collation=collation,
        key_added="SE_recovered", **recover_kwargs,
    )
    se = res["SE"].astype(str).to_numpy(dtype=object)
    return sp, trained, se, res["PredScore"].to_numpy(dtype=float), res["scored"].to_numpy(dtype=bool), None


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
) -> Any:
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
    _check_loocv_args(adata, scheme, collation, key_added, train_kwargs)
    recover_kwargs = dict(recover_kwargs or {})
    bad = _MANAGED_RECOVER & set(recover_kwargs)
    if bad:
        raise TypeError(f"recover_kwargs must not set {sorted(bad)}: loocv() manages them")
    seed_list = _resolve_seeds(repeats, seed, seeds)
    samples = _labels(adata.obs, sample_key, "sample_key")
    celltypes = _labels(adata.obs, celltype_key, "celltype_key")
    ses = _labels(adata.obs, se_key, "se_key")
    cell_ids = [str(c) for c in adata.obs_names]
    if len(set(cell_ids)) != len(cell_ids):
        raise ValueError("cell ids must be unique; call adata.obs_names_make_unique() first")
    src = select_matrix(adata, layer=layer, use_raw=use_raw)
    check_nonnegative(src, src.x, cell_ids, src.var_names)
    targets = [("obs", key_added), ("obs", key_added + "_scored"), ("uns", key_added)]
    check_writable(adata, targets, overwrite=overwrite, category=ValidationWarning)
    threads = resolve_n_jobs(n_jobs)
    if threads is None:
        import os

        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    splits, single = _plan_splits(samples, celltypes, seed_list, scheme, collation)
    keys = {"celltype_key": celltype_key, "se_key": se_key, "sample_key": sample_key}
    t0 = time.perf_counter()
    _log.info("%d splits (%s, %d repeat(s)) over %d cells of %d sample(s), matrix %s", len(splits),
              "two_fold" if single else scheme, len(seed_list), len(cell_ids), len(set(samples)), src.where)
    run = functools.partial(
        _run_split, adata, keys=keys, train_kwargs=dict(train_kwargs), recover_kwargs=recover_kwargs,
        collation=collation, matrix=(src.x, src.var_names),
    )
    results = _run_splits(run, splits, threads, progress)
    predictions, trainings = _collect(results, splits, cell_ids)
    voted = vote(predictions, cell_key="CID", pred_key="SE", cells=cell_ids, collation=collation)
    no_vote = int((voted["n_votes"] == 0).sum())
    if no_vote:
        warnings.warn(
            f"{no_vote} cells got no prediction (their splits failed); {key_added} is missing for them",
            ValidationWarning,
            stacklevel=2,
        )
    out = pd.DataFrame(
        {sample_key: samples, celltype_key: celltypes, se_key: ses}, index=pd.Index(cell_ids)
    )
    out[key_added] = voted["call"].to_numpy()
    out[key_added + "_support"] = voted["support"].to_numpy()
    out[key_added + "_votes"] = voted["n_votes"].to_numpy()
    out[key_added + "_scored"] = _call_scored(predictions, voted, cell_ids)
    elapsed = time.perf_counter() - t0
    _log.info("loocv: %d splits in %.2f s", len(splits), elapsed)
    info = {
        "params": {
            "scheme": scheme if not single else "two_fold", "requested_scheme": scheme, "repeats": len(seed_list),
            "seed": int(seed) if seeds is None else None, "sample_key": sample_key, "celltype_key": celltype_key,
            "se_key": se_key, "collation": collation, "train_kwargs": dict(train_kwargs),
            "recover_kwargs": recover_kwargs, "matrix": src.where, "elapsed_s": elapsed,
        },
        "seeds": list(seed_list),
        "trainings": trainings,
    }
    # attrs stay plain data (pandas compares attrs with == when it concatenates, e.g. in repr):
    # the trainings go there as columns of lists; uns keeps the DataFrame.
    out.attrs["ecorecover"] = {**info, "trainings": trainings.to_dict("list")}
    adata.obs[key_added] = pd.Categorical(out[key_added].to_numpy())
    adata.obs[key_added + "_scored"] = out[key_added + "_scored"].to_numpy()
    adata.uns[key_added] = {k: v for k, v in info.items()}
    record_written(adata, targets)
    return (out, predictions) if return_predictions else out


def _check_loocv_args(adata: Any, scheme: Any, collation: Any, key_added: Any, train_kwargs: Mapping[str, Any]) -> None:
    import anndata

    if not isinstance(adata, anndata.AnnData):
        raise TypeError(
            f"adata must be an AnnData (cells x genes, labels in obs), got {type(adata).__name__}"
        )
    if scheme not in ("leave_one_out", "train_one"):
        raise ValueError(f"scheme must be 'leave_one_out' or 'train_one', got {scheme!r}")
    if collation not in ("icu", "C"):
        raise ValueError(f"collation must be 'icu' or 'C', got {collation!r}")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}")
    bad = _MANAGED_TRAIN & set(train_kwargs)
    if bad:
        raise TypeError(f"loocv() sets {sorted(bad)} itself; use its own arguments (sample_key=, seed=/seeds=, n_jobs=...)")


def _run_splits(run: Any, splits: list[_Split], threads: int, progress: bool) -> list[tuple]:
    """Every split (in parallel threads); the splits' warnings are re-issued once each."""
    workers = max(1, min(threads, len(splits)))
    inner = max(1, threads // workers)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(splits), desc="ecorecover.loocv: splits", unit="split", leave=False, disable=None)
        except ImportError:  # pragma: no cover
            bar = None
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run, sp, threads=inner) for sp in splits]
                for f in futures:
                    results.append(f.result())
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    # Re-issue the splits' warnings once each (they repeat across splits).
    seen: dict[tuple[type, str], int] = {}
    for w in caught:
        k = (w.category, str(w.message))
        seen[k] = seen.get(k, 0) + 1
    for (cat, msg), n in seen.items():
        warnings.warn(f"loocv ({n} of {len(splits)} splits): {msg}", cat, stacklevel=3)
    failed = [(sp, why) for sp, *_, why in results if why is not None]
    for sp, why in failed:
        warnings.warn(
            f"loocv split {sp.call} (seed {sp.seed}, training on {sp.train_label}): {why}; its "
            f"{len(sp.test_rows)} test cells get no vote from it",
            ValidationWarning,
            stacklevel=3,
        )
    if len(failed) == len(splits):
        raise ValueError("no cross-validation split could be trained (see the warnings); check min_cells and the labels")
    return results


def _collect(results: list[tuple], splits: list[_Split], cell_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions: one row per split and test cell, trainings: one row per split)."""
    parts = []
    train_rows = []
    for sp, trained, pred, score, scored, why in results:
        train_rows.append(
            {
                "call": sp.call, "repeat": sp.repeat, "seed": sp.seed, "train": sp.train_label,
                "n_train_cells": len(sp.train_rows), "n_test_cells": len(sp.test_rows),
                "cell_types": ";".join(trained), "failed": why or "",
            }
        )
        if pred is None:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "call": sp.call, "repeat": sp.repeat, "seed": sp.seed, "train": sp.train_label,
                    "CID": np.asarray(cell_ids, dtype=object)[sp.test_rows], "SE": pred, "PredScore": score,
                    "scored": scored,
                }
            )
        )
    return pd.concat(parts, ignore_index=True), pd.DataFrame(train_rows)


def _call_scored(predictions: pd.DataFrame, voted: pd.DataFrame, cell_ids: list[str]) -> np.ndarray:
    """Per cell: does at least one vote for its call come from a split where it was scored?"""
    call = voted["call"].reindex(predictions["CID"].astype(str)).to_numpy()
    hit = predictions["scored"].to_numpy(dtype=bool) & (predictions["SE"].to_numpy() == call)
    return pd.Index(cell_ids).isin(predictions["CID"].astype(str)[hit]).astype(bool)


# --------------------------------------------------------------------------------------------
# Metrics


def metrics(
    obs: Any,
    *,
    se_key: str = "SE",
    pred_key: str = "cvPred",
    celltype_key: str | None = None,
    sample_key: str | None = "Sample",
    metric: Metric = "F1",
    collation: _collate.Collation = "icu",
    scheme: MetricScheme = "r",
    scored_key: str | None = "auto",
) -> pd.DataFrame:
    """Agreement between true and predicted SEs: R SpatialEcoTyper's ``ComputeMetrics``.

    Two counting schemes, reported together (the other one's diagonal is in ``attrs``):

    - ``scheme="r"`` (default, R's numbers): a cell whose prediction is no true label (e.g.
      ``"NonSE"`` when the truth has no such label, or a cell left unscored) is dropped, so
      recall is computed over the other cells only and can read 1.0 when half the cells are
      predicted ``"NonSE"``.
    - ``scheme="all"``: every cell counts; such predictions, and every unscored cell (see
      ``scored_key``), are misses of their true label. Precision is the same in both schemes.

    Parameters
    ----------
    obs
        A DataFrame with one row per cell (e.g. :func:`loocv`'s result or ``adata.obs``), or an
        AnnData (its ``obs`` is used).
    se_key, pred_key
        Columns with the true and the predicted SE.
    celltype_key
        If given, labels are SE-cell-type pairs (``"SE01_Fibroblast"``), sorted by cell type then
        SE (R's collation), and a prediction is paired with the cell's own cell type.
    sample_key
        Compute per sample and average over samples (``None``: all cells at once).
    metric
        ``"F1"``, ``"F2"``, ``"precision"`` or ``"recall"``.
    collation
        R's string order (``"icu"`` or ``"C"``) for cell types, SEs and samples.
    scheme
        ``"r"`` or ``"all"`` (above).
    scored_key
        Boolean column, False for cells that were not scored (no model for their cell type,
        too few cells...; :func:`recover` writes ``obs[key_added + "_scored"]``, :func:`loocv`
        ``key_added + "_scored"``). ``"auto"``: ``pred_key + "_scored"`` when it is a column.
        With ``scheme="all"`` an unscored cell is a miss whatever its label.

    Returns
    -------
    pandas.DataFrame
        Square, labels x labels. Labels are the true labels (first-seen order without
        ``celltype_key``). Per sample, with ``C[i, j]`` the number of cells of true label ``i``
        predicted ``j`` (predictions that are no true label are dropped):
        ``recall[i, j] = C[i, j] / sum_j C[i, j]``, ``precision[i, j] = C[j, i] / sum_j C[j, i]``
        (share of the cells predicted ``i`` that are truly ``j``) and
        ``F_b[i, j] = (1 + b^2) P R / (b^2 P + R)`` element-wise, a precision with no predicted
        cell counting as 0. Only the diagonal is a usual per-SE score; off the diagonal R mixes
        ``recall[i, j]`` with ``precision[i, j]`` and we keep that. Samples are averaged
        skipping undefined (0/0) entries; an entry undefined in every sample is 0. With
        ``scheme="all"`` the recall denominators also count the cells predicted outside the
        labels or unscored. ``df.attrs["ecorecover"]`` holds ``n_outside`` (cells predicted
        outside the true labels or unscored), ``outside_labels`` (their predictions and counts)
        and ``other_scheme`` (the other scheme's diagonal, label -> value).

    Raises
    ------
    KeyError
        A key is not a column.
    ValueError
        Unknown ``metric``; no cell with both labels.

    Warns
    -----
    ValidationWarning
        Cells with a missing true or predicted label are left out (R's ``table`` drops them).
    """
    if hasattr(obs, "obs") and not isinstance(obs, pd.DataFrame):
        obs = obs.obs
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"obs must be a DataFrame (one row per cell) or an AnnData, got {type(obs).__name__}")
    if scheme not in ("r", "all"):
        raise ValueError(f"scheme must be 'r' (R's ComputeMetrics) or 'all' (every cell counts), got {scheme!r}")
    names = {m.lower(): m for m in METRICS}
    if not isinstance(metric, str) or metric.lower() not in names:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    metric = names[metric.lower()]  # type: ignore[assignment]
    if collation not in ("icu", "C"):
        raise ValueError(f"collation must be 'icu' or 'C', got {collation!r}")
    if scored_key == "auto":
        scored_key = pred_key + "_scored" if pred_key + "_scored" in obs.columns else None
    for what, k in (("se_key", se_key), ("pred_key", pred_key), ("celltype_key", celltype_key),
                    ("sample_key", sample_key), ("scored_key", scored_key)):
        if k is not None and k not in obs.columns:
            raise KeyError(f"{what}={k!r} is not a column of obs (columns: {list(obs.columns)})")
    used = [k for k in (se_key, pred_key, celltype_key, sample_key) if k is not None]
    missing = obs[used].isna().any(axis=1).to_numpy()
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} cells with a missing label in {used} are left out (R's table() drops them)",
            ValidationWarning,
            stacklevel=2,
        )
    df = obs.loc[~missing, used + ([scored_key] if scored_key is not None and scored_key not in used else [])]
    if len(df) == 0:
        raise ValueError("no cell has both a true and a predicted label")
    truth = df[se_key].astype(str).to_numpy(dtype=object)
    pred = df[pred_key].astype(str).to_numpy(dtype=object)
    if celltype_key is not None:
        ct = df[celltype_key].astype(str).to_numpy(dtype=object)
        pairs = set(zip(ct, truth))
        ordered = sorted(pairs, key=lambda p: (_collate.sort_key(p[0], collation), _collate.sort_key(p[1], collation)))
        labels = [f"{s}_{c}" for c, s in ordered]
        truth = np.array([f"{s}_{c}" for s, c in zip(truth, ct)], dtype=object)
        pred = np.array([f"{s}_{c}" for s, c in zip(pred, ct)], dtype=object)
        index_name = f"{se_key}_{celltype_key}"
    else:
        labels = list(pd.unique(truth))
        index_name = se_key
    pos = {lab: i for i, lab in enumerate(labels)}
    ti = np.array([pos[x] for x in truth], dtype=np.int64)
    pi = np.array([pos.get(x, -1) for x in pred], dtype=np.int64)
    unscored = ~df[scored_key].astype(bool).to_numpy() if scored_key is not None else np.zeros(len(df), dtype=bool)
    outside = (pi < 0) | unscored
    if sample_key is None:
        groups = [np.arange(len(df))]
    else:
        smp = df[sample_key].astype(str).to_numpy(dtype=object)
        groups = [np.flatnonzero(smp == s) for s in _collate.collate_sorted(set(smp), collation)]
    both = {
        "r": _metric_matrix(ti, pi, groups, len(labels), metric, keep_outside=False),
        "all": _metric_matrix(ti, np.where(outside, -1, pi), groups, len(labels), metric, keep_outside=True),
    }
    avg = both[scheme]
    other = both["all" if scheme == "r" else "r"]
    out = pd.DataFrame(avg, index=pd.Index(labels, name=index_name), columns=pd.Index(labels))
    kinds = pd.Series(np.where(unscored, "unscored", pred)[outside]).value_counts()
    out.attrs["ecorecover"] = {
        "metric": metric, "scheme": scheme, "n_samples": len(groups), "n_cells": int(len(df)),
        "n_outside": int(outside.sum()), "outside_labels": {str(k): int(v) for k, v in kinds.items()},
        "other_scheme": {lab: float(other[i, i]) for i, lab in enumerate(labels)},
    }
    if outside.any():
        _log.info("metrics: %d of %d cells predicted outside the true labels or unscored (%s); scheme=%r %s them",
                  int(outside.sum()), len(df), dict(kinds.head(5)), scheme, "drops" if scheme == "r" else "counts")
    return out


def _metric_matrix(
    ti: np.ndarray, pi: np.ndarray, groups: list[np.ndarray], n_labels: int, metric: str, *, keep_outside: bool
) -> np.ndarray:
    """R's ComputeMetrics matrix averaged over ``groups``. ``pi < 0``: a prediction outside the
    labels, dropped as R does, or (``keep_outside``) counted in its true label's recall
    denominator through an extra column."""
    L = n_labels
    beta2 = {"F1": 1.0, "F2": 4.0}.get(metric)
    total = np.zeros((L, L))
    count = np.zeros((L, L), dtype=np.int64)
    for g in groups:
        if not keep_outside:
            g = g[pi[g] >= 0]
        c_full = np.zeros((L, L + 1))
        np.add.at(c_full, (ti[g], np.where(pi[g] >= 0, pi[g], L)), 1.0)
        c = c_full[:, :L]
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = c / c_full.sum(axis=1, keepdims=True)
            prec = c.T / c.T.sum(axis=1, keepdims=True)
            if metric == "recall":
                m = rec
            elif metric == "precision":
                m = prec
            else:
                p0 = np.where(np.isnan(prec), 0.0, prec)
                m = (1.0 + beta2) * p0 * rec / (beta2 * p0 + rec)
        ok = ~np.isnan(m)
        total[ok] += m[ok]
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)
