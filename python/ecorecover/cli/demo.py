"""``ecorecover demo``: simulate data with planted SEs, train, recover a held-out set and print
the accuracy and timings (optionally writing the files, to try the other commands on)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .messages import CLIError
from .session import log

__all__ = ["run"]


def _output_files(args: argparse.Namespace) -> list[Path]:
    """The files ``--out-dir`` gets (none without it); refuse existing ones without --force."""
    from .._atomic import check_outputs

    if not args.out_dir:
        return []
    d = Path(args.out_dir)
    if d.exists() and not d.is_dir():
        raise CLIError(f"{d}: exists and is not a directory")
    out_files = [d / "train.h5ad", d / "held_out.h5ad", d / "model.h5", d / "recovered.tsv"]
    if d.is_dir():
        check_outputs(out_files, force=args.force)
    elif not d.parent.is_dir():
        raise CLIError(f"{d}: its parent directory {d.parent} does not exist")
    return out_files


def _simulate(args: argparse.Namespace, times: dict[str, float]) -> tuple[Any, Any]:
    """Training and held-out data, log-normalised (the counts kept in ``layers["counts"]``)."""
    from ..preprocessing import log_normalize
    from ..simulate import simulate_split

    t = time.perf_counter()
    train_ad, test_ad = simulate_split(n_cells=args.cells, n_held_out=args.held_out, seed=args.seed)
    times["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    train_ad.layers["counts"] = train_ad.X
    test_ad.layers["counts"] = test_ad.X
    train_ad.X = log_normalize(train_ad.X)
    test_ad.X = log_normalize(test_ad.X)
    times["normalise"] = time.perf_counter() - t
    n_types = train_ad.obs["CellType"].nunique()
    log.info("simulated %d training cells (%d samples, %d cell types, %d genes) and %d held-out cells (seed %d)",
             train_ad.n_obs, train_ad.obs["Sample"].nunique(), n_types, train_ad.n_vars, test_ad.n_obs, args.seed)
    return train_ad, test_ad


def _write(out_files: list[Path], force: bool, train_ad: Any, test_ad: Any, model: Any, table: Any) -> None:
    from .._atomic import atomic_outputs

    out_files[0].parent.mkdir(exist_ok=True)
    with atomic_outputs(out_files, force=force) as temps:
        train_ad.write_h5ad(temps[0])
        test_ad.write_h5ad(temps[1])
        model.save(temps[2])
        table.to_csv(temps[3], sep="\t", index_label="cell")


def _report(args: argparse.Namespace, n_train: int, n_test: int, model: Any, truth: Any, ct: Any, pred: Any) -> None:
    """Print the accuracy overall and per cell type (held-out cells with an SE of a modelled type)."""
    import numpy as np

    from ..simulate import NONSE_LABEL

    eligible = (truth != NONSE_LABEL) & np.isin(ct, model.cell_types)
    correct = pred[eligible] == truth[eligible]
    acc = float(correct.mean()) if eligible.any() else float("nan")
    print(f"ecorecover demo (seed {args.seed}): trained on {n_train} simulated cells "
          f"({len(model)} cell types, {len(model.se_names)} SE labels, {args.runs} run(s)); "
          f"recovered {n_test} held-out cells ({args.mode} mode)")
    print("per cell type (held-out cells with an SE):")
    for c in model.cell_types:
        m = eligible & (ct == c)
        if m.any():
            print(f"  {c:<12} {float((pred[m] == truth[m]).mean()):.3f}  ({int(m.sum())} cells)")
    print(f"accuracy: {acc:.3f} ({int(correct.sum())} of {int(eligible.sum())} cells recovered in their true SE)")


def run(args: argparse.Namespace) -> int:
    """Simulate, train, recover, print the report (and write ``--out-dir``)."""
    from .. import recover, train

    out_files = _output_files(args)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    train_ad, test_ad = _simulate(args, times)
    t = time.perf_counter()
    model = train(train_ad, celltype_key="CellType", se_key="SE", sample_key="Sample", seed=2024,
                  n_runs=args.runs, progress=not args.quiet)
    times["train"] = time.perf_counter() - t
    # the true labels (kept apart from the calls recover() writes into obs)
    truth = test_ad.obs["SE"].astype(str).to_numpy().copy()
    ct = test_ad.obs["CellType"].astype(str).to_numpy().copy()
    test_ad.obs["SE_true"] = truth
    t = time.perf_counter()
    table = recover(test_ad, model, celltype_key="CellType", mode=args.mode, progress=not args.quiet)
    times["recover"] = time.perf_counter() - t
    pred = table["SE"].astype(str).to_numpy()
    if out_files:
        t = time.perf_counter()
        _write(out_files, args.force, train_ad, test_ad, model, table)
        times["write"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    _report(args, train_ad.n_obs, test_ad.n_obs, model, truth, ct, pred)
    print("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()) + f"; total {total:.2f} s")
    if out_files:
        print(f"wrote {', '.join(str(f) for f in out_files)}")
    return 0
