"""``ecorecover aggregate``: combine trained runs into one ensemble model (R
AggregateRecoverModels), runs of ``train --run-index`` put in run-index order and checked to be
runs of one ensemble."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .messages import CLIError, input_error
from .reading import load_model
from .session import log
from .._warnings import warn

__all__ = ["run"]

#: Parameters of a single ``train --run-index`` run that an ensemble does not keep.
_RUN_KEYS = ("run_index", "runs_total", "base_seed", "run_index_from")


def run(args: argparse.Namespace) -> int:
    """Aggregate the runs and write ``--out``."""
    from .. import aggregate
    from .._atomic import atomic_outputs, check_outputs

    check_outputs([args.out], force=args.force)
    models = []
    for path in args.models:
        models.append((path, load_model(path)))
    models = _order_runs(models)
    t0 = time.perf_counter()
    try:
        ens = aggregate([m for _, m in models], delta_threshold=args.delta_threshold,
                        min_model_fraction=args.min_model_fraction)
    except (ValueError, KeyError, TypeError) as exc:
        raise input_error(", ".join(args.models[:3]) + (", ..." if len(args.models) > 3 else ""), exc) from exc
    ens = _ensemble_params(ens, [m for _, m in models])
    log.info("aggregated %d run(s) into %d cell type(s) in %.1f s", len(models), len(ens), time.perf_counter() - t0)
    with atomic_outputs([args.out], force=args.force) as (tmp,):
        ens.save(tmp)
    log.info("wrote %s", args.out)
    return 0


def _ensemble_params(ens: Any, runs: list[Any]) -> Any:
    """Parameters of an ensemble of ``train --run-index`` runs, as ``train(..., n_runs=R)`` records
    them: the base seed, the number of runs and their seeds (not those of run 0)."""
    params = ens.params
    if not all("run_index" in r.params for r in runs):
        return ens
    from .. import RecoveryModel

    for k in _RUN_KEYS:
        params.pop(k, None)
    params.update(seed=runs[0].params.get("base_seed"), n_runs=len(runs),
                  seeds=[r.params.get("seed") for r in runs],
                  run_indexes=[r.params.get("run_index") for r in runs])
    return RecoveryModel({ct: ens[ct] for ct in ens}, params=params, runs=ens.runs, source=ens.source)


def _order_runs(models: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Put runs written by ``train --run-index`` in run-index order; refuse repeated runs/seeds."""
    idx = [m.params.get("run_index") for _, m in models]
    if len(models) > 1 and all(isinstance(i, int) for i in idx):
        _check_one_ensemble(models, idx)
        models = [mp for _, mp in sorted(zip(idx, models), key=lambda t: t[0])]
    seeds: dict[Any, str] = {}
    for path, m in models:
        s = m.params.get("seed")
        if s is None or m.runs:
            continue
        if s in seeds:
            raise CLIError(f"{path}: trained with seed {s} like {seeds[s]}; runs of an ensemble must differ in "
                           "seed (use 'ecorecover train --run-index', which derives it)")
        seeds[s] = path
    return models


def _check_one_ensemble(models: list[tuple[str, Any]], idx: list[Any]) -> None:
    """Runs with distinct run indexes and one base seed; warn when planned runs are missing."""
    by_index: dict[int, str] = {}
    for (path, _), i in zip(models, idx):
        if i in by_index:
            raise CLIError(f"{path}: run index {i} is also the run index of {by_index[i]} (the same run twice)")
        by_index[i] = path
    bases = {m.params.get("base_seed") for _, m in models}
    if len(bases) > 1:
        raise CLIError(f"{models[0][0]}: the runs have different base seeds ({sorted(map(str, bases))}); "
                       "they are not runs of one ensemble")
    totals = {m.params.get("runs_total") for _, m in models}
    if len(totals) == 1:
        total = totals.pop()
        if isinstance(total, int) and total != len(models):
            have = set(idx)
            missing = [k for k in range(total) if k not in have]
            warn(f"aggregating {len(models)} of the {total} planned runs"
                          + (f"; missing run indexes: {missing[:20]}" if missing else ""), UserWarning)
