"""``ecorecover train``: train a recovery model, or one run of an ensemble (``--run-index`` or
``$SLURM_ARRAY_TASK_ID``, seed S + I) for a job array, and write it atomically."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .matrices import check_matrix_options, expression_in, normalize
from .messages import CLIError, input_error
from .reading import check_keys, log_cells_per_type, read_data
from .session import log

__all__ = ["RUN_INDEX_ENV", "run"]

#: Environment variable the run index defaults to (Slurm job arrays).
RUN_INDEX_ENV = "SLURM_ARRAY_TASK_ID"


def _resolve_run_index(args: argparse.Namespace) -> tuple[int | None, str]:
    """The run index and where it came from (``--run-index`` or the environment), or (None, "")."""
    if args.run_index is not None:
        return int(args.run_index), "--run-index"
    env = os.environ.get(RUN_INDEX_ENV)
    if env is None or env.strip() == "":
        return None, ""
    try:
        value = int(env)
    except ValueError:
        raise CLIError(f"${RUN_INDEX_ENV}={env!r} is not an integer run index; pass --run-index") from None
    if value < 0:
        raise CLIError(f"${RUN_INDEX_ENV}={value} is negative; pass --run-index")
    return value, f"${RUN_INDEX_ENV}"


def _train_one_run(adata: Any, args: argparse.Namespace, run_index: int, origin: str, kw: dict[str, Any]) -> Any:
    """Run ``run_index`` of the ensemble (seed S + I), its run index recorded in the parameters."""
    from .. import RecoveryModel, train

    seed = args.seed + run_index
    log.info("training run %d of %d (from %s) with seed %d + %d = %d", run_index, args.runs,
             origin, args.seed, run_index, seed)
    model = train(adata, seed=seed, n_runs=1, **kw)
    params = model.params
    params.update(run_index=run_index, runs_total=args.runs, base_seed=args.seed, seed=seed,
                  run_index_from=origin)
    return RecoveryModel({ct: model[ct] for ct in model}, params=params, runs=model.runs, source=model.source)


def run(args: argparse.Namespace) -> int:
    """Train and write ``--out``."""
    from .. import train
    from .._atomic import atomic_outputs, check_outputs

    run_index, origin = _resolve_run_index(args)
    if run_index is not None and run_index >= args.runs:
        raise CLIError(
            f"run index {run_index} (from {origin}) is not below --runs {args.runs}: pass --runs R, the number "
            "of runs of the ensemble; run indexes are 0..R-1 (a Slurm array of R tasks is --array=0-<R-1>)")
    check_outputs([args.out], force=args.force)
    adata = read_data(args.data, args.meta)
    check_keys(adata, [("--celltype-key", args.celltype_key), ("--se-key", args.se_key),
                       ("--sample-key", args.sample_key)], args.data, args.meta, may_be_missing=("--se-key",))
    check_matrix_options(adata, args, train)
    log_cells_per_type(adata, args.celltype_key)
    layer = normalize(adata, args.data, args.layer) if args.normalize else args.layer

    kw: dict[str, Any] = dict(celltype_key=args.celltype_key, se_key=args.se_key, sample_key=args.sample_key,
                              n_features=args.n_features, n_features_per_se=args.n_features_per_se,
                              progress=not args.quiet)
    files = args.data + (f" with {args.meta}" if args.meta else "")
    t0 = time.perf_counter()
    try:
        with expression_in(adata, train, layer, args.use_raw) as layer_kw:
            if run_index is None:
                log.info("training %d run(s), seeds %d..%d", args.runs, args.seed, args.seed + args.runs - 1)
                model = train(adata, seed=args.seed, n_runs=args.runs, **kw, **layer_kw)
            else:
                model = _train_one_run(adata, args, run_index, origin, {**kw, **layer_kw})
    except (ValueError, KeyError, TypeError) as exc:
        raise input_error(files, exc) from exc
    log.info("trained %d cell type(s) in %.1f s", len(model), time.perf_counter() - t0)
    with atomic_outputs([args.out], force=args.force) as (tmp,):
        model.save(tmp)
    log.info("wrote %s", args.out)
    return 0
