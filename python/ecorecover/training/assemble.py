"""The model a training returns: one :class:`~ecorecover.RecoveryModel` per run, their
ensemble (R's ``AggregateRecoverModels``) when there are several, the recorded parameters, and
the warnings about cell types that got no model."""

from __future__ import annotations

from typing import Any

from .._aggregate import _aggregate
from ..errors import SkippedCellTypeWarning, TrainingInputError
from ..model import RecoveryModel
from .ensemble import CellTypeFits
from .options import TrainOptions
from .._warnings import warn

__all__ = ["build_model", "recorded_params"]

def recorded_params(options: TrainOptions, fits: CellTypeFits, cells: list[str], raw_guard_fired: bool) -> dict[str, Any]:
    """The ``params`` every model of a training records (each run adds its own)."""
    return {
        "method": "ecorecover.train (R SpatialEcoTyper NMFGenerateWList)",
        "celltype_key": options.celltype_key, "se_key": options.se_key, "sample_key": options.sample_key,
        "n_features": options.n_features, "n_features_per_se": options.n_features_per_se,
        "min_cells": options.min_cells, "downsample": options.downsample,
        "balance_samples": options.balance_samples, "scale": options.scale, "seed": options.seed,
        "n_runs": options.n_runs, "seeds": options.seeds, "session_seed": options.session_seed,
        "n_jobs": options.n_jobs,
        "input": {"n_cells": len(cells), "raw_count_guard_fired": raw_guard_fired},
        "selected_genes": {c: list(p.genes) for c, p in fits.prepared.items()},
        "samples": {c: list(p.samples) for c, p in fits.prepared.items()},
    }


def build_model(fits: CellTypeFits, options: TrainOptions, base: dict[str, Any]) -> RecoveryModel:
    """The trained model (the ensemble of the runs when ``n_runs > 1``), warning about cell types
    without a model and raising when nothing (or nothing in the first run) was trained."""
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    run_skips: list[dict[str, str]] = []
    for s, res in zip(options.seeds, fits.runs):
        skips = {c: r.reason for c, r in res.items() if r.weights is None}
        params = {**base, "run_seed": s, "n_cells_used": {c: int(r.cells.size) for c, r in res.items() if r.weights is not None},
                  "skipped_cell_types": {**fits.skipped, **skips}}
        runs.append(({c: r.weights for c, r in res.items() if r.weights is not None}, params))
        run_skips.append(skips)
    all_skipped = dict(fits.skipped)
    if options.n_runs == 1:
        all_skipped.update(run_skips[0])
    _warn_skipped(all_skipped, run_skips if options.n_runs > 1 else [], options.seeds)
    if not any(w for w, _ in runs):
        raise TrainingInputError("no cell type could be trained: " + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()))
    if not runs[0][0]:
        raise TrainingInputError(
            f"the first run (seed {options.seeds[0]}) trained no cell type ("
            + "; ".join(f"{c}: {r}" for c, r in {**fits.skipped, **run_skips[0]}.items())
            + "); an ensemble takes its cell types from the first run, as R's AggregateRecoverModels does. "
            "Try another seed, a larger downsample or a smaller min_cells"
        )
    if options.n_runs == 1:
        return RecoveryModel(runs[0][0], params=runs[0][1], source="ecorecover.train")
    return _ensemble([RecoveryModel(w, params=p, source="ecorecover.train") for w, p in runs], base, all_skipped)


def _ensemble(runs: list[RecoveryModel], base: dict[str, Any], all_skipped: dict[str, str]) -> RecoveryModel:
    """R's ``AggregateRecoverModels`` with its default thresholds over the runs."""
    agg, empty = _aggregate(runs, 0.01, 0.5, drop_empty=True)  # aggregate()'s defaults (R's)
    if empty:  # a model cannot hold an empty W (issue 14): such cell types are skipped
        reasons = {c: f"no gene is selected in more than half of the {len(runs)} runs (empty ensemble W)" for c in empty}
        all_skipped.update(reasons)
        warn(
            f"{len(empty)} cell type(s) get no ensemble model: " + "; ".join(f"{c}: {r}" for c, r in reasons.items()),
            SkippedCellTypeWarning,
        )
    if agg is None:
        raise TrainingInputError("no cell type could be trained: " + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()))
    params = {**base, "skipped_cell_types": all_skipped, "aggregate": agg.params.get("aggregate", {})}
    return RecoveryModel({c: agg[c] for c in agg}, params=params, runs=runs, source="ecorecover.train")


def _warn_skipped(all_skipped: dict[str, str], run_skips: list[dict[str, str]], seeds: list[int]) -> None:
    """Warn about cell types without a model, and (ensembles) those missing from some runs."""
    if all_skipped:
        warn(
            f"{len(all_skipped)} cell type(s) get no model: " + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()),
            SkippedCellTypeWarning,
        )
    partial = {c for skips in run_skips for c in skips}
    if partial:
        warn(
            f"cell type(s) {sorted(partial)} got no model in some runs: "
            + "; ".join(f"seed {s}: {c} ({r})" for s, skips in zip(seeds, run_skips) for c, r in skips.items()),
            SkippedCellTypeWarning,
        )
