"""The cross-validation splits: per-repeat seeds, the split plan, and training and recovering each
split (in parallel threads), collected into one long table of predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .. import _collate
from ..errors import TrainingInputError
from ..rng import RRandom
from ..training import train
from .common import NON_SE, ValidationWarning
from .._progress import progress_bar
from .._warnings import warn

__all__ = ["SEED_RANGE", "Split", "SplitResult", "call_scored", "collect", "plan_splits", "resolve_seeds", "run_split", "run_splits"]

#: R draws the per-repeat seeds with ``sample(1:10000, repeats)``.
#: R draws the repeats' seeds with ``sample(1:10000, repeats)``.
SEED_RANGE = 10000


@dataclass
class Split:
    """One training / test split: its number, repeat, seed, rows, and what it trains on."""

    call: int
    repeat: int
    seed: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_label: str  # samples (or fold) trained on


class SplitResult(NamedTuple):
    """What one split gave: cell types trained, the test cells' SE, PredScore and scored flags
    (None when nothing could be trained), and why it failed (None when it did not)."""

    split: Split
    trained: list[str]
    se: np.ndarray | None
    score: np.ndarray | None
    scored: np.ndarray | None
    failed: str | None


def resolve_seeds(repeats: int | None, seed: int, seeds: Sequence[int] | None) -> list[int]:
    """The per-repeat seeds: ``seeds`` as given, or ``repeats`` drawn as R draws them."""
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
    repeats = 30 if repeats is None else repeats  # repeats and seed checked by loocv's declaration
    # R: sample(1:10000, repeats) from the caller's state; set.seed(seed) first here.
    return [int(v) for v in RRandom(int(seed)).sample_int(SEED_RANGE, int(repeats))]



def plan_splits(
    samples: np.ndarray, celltypes: np.ndarray, seeds: list[int], scheme: str, collation: _collate.Collation
) -> tuple[list[Split], bool]:
    """The splits of every repeat, and whether there is a single sample (two-fold splits)."""
    order = _collate.collate_sorted(set(samples), collation)
    splits: list[Split] = []
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
            splits.append(Split(len(splits) + 1, r + 1, s, a, b, "fold1"))
            splits.append(Split(len(splits) + 1, r + 1, s, b, a, "fold2"))
            continue
        for smp in order:
            inside = np.flatnonzero(samples == smp)
            outside = np.flatnonzero(samples != smp)
            if scheme == "train_one":
                splits.append(Split(len(splits) + 1, r + 1, s, inside, outside, smp))
            else:
                rest = ";".join(x for x in order if x != smp)
                splits.append(Split(len(splits) + 1, r + 1, s, outside, inside, rest))
    return splits, single



def _subset(adata: Any, rows: np.ndarray, cols: list[str], x: Any, var_names: list[str]) -> Any:
    """The cells ``rows`` of ``adata`` with the chosen matrix ``x`` (X, a layer or raw.X) as X."""
    import anndata

    sub = x[rows] if len(rows) else x[:0]
    obs = adata.obs.iloc[rows][cols].copy()
    return anndata.AnnData(X=sub, obs=obs, var=pd.DataFrame(index=pd.Index(var_names)))



def run_split(
    adata: Any, sp: Split, keys: dict[str, Any], train_kwargs: dict[str, Any], recover_kwargs: dict[str, Any],
    threads: int, collation: _collate.Collation, matrix: tuple[Any, list[str]],
) -> SplitResult:
    """Train on the split's training cells, recover its test cells."""
    from ..recovery import recover

    cols = list(dict.fromkeys([keys["celltype_key"], keys["se_key"], keys["sample_key"]]))
    tr = _subset(adata, sp.train_rows, cols, *matrix)
    try:
        model = train(
            tr, celltype_key=keys["celltype_key"], se_key=keys["se_key"], sample_key=keys["sample_key"],
            seed=sp.seed, progress=False, n_jobs=threads, **train_kwargs,
        )
    except TrainingInputError as e:
        return SplitResult(sp, [], None, None, None, f"no model could be trained: {e}")
    trained = list(model)
    te = _subset(adata, sp.test_rows, cols, *matrix)
    present = set(te.obs[keys["celltype_key"]].astype(str))
    if not present & set(trained):
        n = len(sp.test_rows)
        return SplitResult(sp, trained, np.full(n, NON_SE, dtype=object), np.zeros(n), np.zeros(n, dtype=bool), None)
    res = recover(
        te, model, celltype_key=keys["celltype_key"], progress=False, n_jobs=threads, collation=collation,
        key_added="SE_recovered", **recover_kwargs,
    )
    se = res["SE"].astype(str).to_numpy(dtype=object)
    return SplitResult(sp, trained, se, res["PredScore"].to_numpy(dtype=float), res["scored"].to_numpy(dtype=bool), None)


def run_splits(run: Callable[..., SplitResult], splits: list[Split], threads: int, progress: bool) -> list[SplitResult]:
    """Every split (in parallel threads); the splits' warnings are re-issued once each.
    Warnings point at the caller of the function calling this one (``loocv``'s caller)."""
    workers = max(1, min(threads, len(splits)))
    inner = max(1, threads // workers)
    bar = progress_bar(len(splits), desc="ecorecover.loocv: splits", unit="split", enabled=progress)
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run, sp, threads=inner) for sp in splits]
                for f in futures:
                    results.append(f.result())
                    bar.update(1)
        finally:
            bar.close()
    # Re-issue the splits' warnings once each (they repeat across splits).
    seen: dict[tuple[type[Warning], str], int] = {}
    for w in caught:
        k = (w.category, str(w.message))
        seen[k] = seen.get(k, 0) + 1
    for (cat, msg), n in seen.items():
        warn(f"loocv ({n} of {len(splits)} splits): {msg}", cat)
    failed = [(r.split, r.failed) for r in results if r.failed is not None]
    for sp, why in failed:
        warn(
            f"loocv split {sp.call} (seed {sp.seed}, training on {sp.train_label}): {why}; its "
            f"{len(sp.test_rows)} test cells get no vote from it",
            ValidationWarning,
        )
    if len(failed) == len(splits):
        raise ValueError("no cross-validation split could be trained (see the warnings); check min_cells and the labels")
    return results


def collect(results: list[SplitResult], cell_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def call_scored(predictions: pd.DataFrame, voted: pd.DataFrame, cell_ids: list[str]) -> np.ndarray:
    """Per cell: does at least one vote for its call come from a split where it was scored?"""
    call = voted["call"].reindex(predictions["CID"].astype(str)).to_numpy()
    hit = predictions["scored"].to_numpy(dtype=bool) & (predictions["SE"].to_numpy() == call)
    return pd.Index(cell_ids).isin(predictions["CID"].astype(str)[hit]).astype(bool)
