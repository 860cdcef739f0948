"""Recovery's outputs: the runs' scores assembled into R's RecoverSE table, and written to AnnData.

:func:`assemble` places every run's scores in the columns of R's sorted union of SE names and
derives ``InitSE``, ``SE``, ``PredScore`` and ``scored``; :func:`summary` is the record kept in
``uns`` / ``DataFrame.attrs``; :func:`write` stores the results under ``key_added`` and records
the keys ecorecover wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import _collate
from .._input_data import record_written
from .._warnings import warn
from ..errors import RecoveryWarning
from .constants import NON_SE
from .matching import Group
from .solvers import RunResult

__all__ = [
    "Assembled", "assemble", "model_provenance", "output_keys", "published_postprocess", "summary", "write",
]

F64 = npt.NDArray[np.float64]
RUN_COLUMNS = ["CellType", "run", "n_cells", "first_cell", "last_cell", "n_features", "n_iter", "max_V", "nnz_V"]


@dataclass
class Assembled:
    """R's table (plus ``scored``), the scores matrix (cells x SEs), the SE names, the runs table."""

    table: pd.DataFrame
    scores: F64
    se_names: list[str]
    runs: pd.DataFrame


def _warn_no_features(failed: dict[str, list[int]], cells_per_run: int, mode: str) -> None:
    """One warning for all runs left without a model feature (cells_per_run=1 makes thousands)."""
    if not failed:
        return
    n_cells = sum(sum(v) for v in failed.values())
    n_runs = sum(len(v) for v in failed.values())
    what = f"in {n_runs} run(s) " if mode == "exact" else ""
    tip = (
        f"; with cells_per_run={cells_per_run} every feature is constant over a run: use a larger cells_per_run"
        if mode == "exact" and cells_per_run < 3
        else " (the model's features are constant over these cells, or none of them is in W)"
    )
    warn(
        f"{n_cells} cells {what}are not scored (scores 0, SE {NON_SE!r}, scored False): no model feature is "
        "left after the zero-variance filter: " + ", ".join(f"{ct} ({sum(v)})" for ct, v in failed.items()) + tip,
        RecoveryWarning,
    )


def _place_scores(
    results: Sequence[RunResult], groups: list[Group], se_names: list[str], cell_ids: Sequence[str],
    unscored: dict[str, int],
) -> tuple[F64, npt.NDArray[np.bool_], dict[str, list[int]], list[dict[str, Any]]]:
    """Scores over all SEs, which cells were scored, the runs without features, the runs' rows."""
    n = len(cell_ids)
    se_col = {se: i for i, se in enumerate(se_names)}
    scores = np.zeros((n, len(se_names)))
    scored = np.zeros(n, dtype=bool)
    failed: dict[str, list[int]] = {}
    run_rows = []
    for r in results:
        g = groups[r.group]
        if r.scores is None:
            unscored[r.failure or "no_features"] += len(r.rows)
            failed.setdefault(g.name, []).append(len(r.rows))
        else:
            cols = np.array([se_col[se] for se in g.w.columns])
            scores[r.rows[:, None], cols[None, :]] = np.nan_to_num(r.scores, nan=0.0)
            scored[r.rows] = True
        run_rows.append(
            {
                "CellType": g.name, "run": r.run + 1, "n_cells": len(r.rows),
                "first_cell": cell_ids[r.rows[0]], "last_cell": cell_ids[r.rows[-1]],
                "n_features": r.n_features, "n_iter": r.n_iter, "max_V": r.max_v, "nnz_V": r.nnz_v,
            }
        )
    return scores, scored, failed, run_rows


def assemble(
    results: Sequence[RunResult], groups: list[Group], models: Mapping[str, pd.DataFrame], labels: npt.NDArray[np.object_],
    cell_ids: Sequence[str], *, min_score: float, collation: _collate.Collation, unscored: dict[str, int],
    cells_per_run: int, mode: str,
) -> Assembled:
    """R's RecoverSE table over R's sorted union of SE names (unscored cells: all-zero scores)."""
    n = len(labels)
    se_names = list(_collate.collate_sorted({se for w in models.values() for se in w.columns}, collation))
    scores, scored, failed, run_rows = _place_scores(results, groups, se_names, cell_ids, unscored)
    _warn_no_features(failed, cells_per_run, mode)
    best = scores.argmax(axis=1) if len(se_names) else np.zeros(n, dtype=np.int64)
    pred = scores[np.arange(n), best]
    init = np.asarray(se_names, dtype=object)[best]
    se = np.where((pred < float(min_score)) | (pred == 0), NON_SE, init).astype(object)
    index = pd.Index(cell_ids)
    out = pd.concat(
        [
            pd.DataFrame({"CellType": labels, "InitSE": init, "SE": se, "PredScore": pred}, index=index),
            pd.DataFrame(scores, index=index, columns=se_names),
        ],
        axis=1,
    )
    out["scored"] = scored
    return Assembled(out, scores, se_names, pd.DataFrame(run_rows, columns=RUN_COLUMNS))


def published_postprocess(model: Any) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """R's default-branch post-processing (``RecoverSE(Ws = NULL)``: SE_CellStates pairs and the
    SE01..SE11 renaming of SE) when ``model`` carries it, as from load_published_models (else None)."""
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping) or "postprocess" not in params:
        return None
    from ..io.published import published_se

    def post(table: pd.DataFrame) -> pd.DataFrame:
        table["SE"] = published_se(table, params)  # as apply_published_postprocess, in place (no copy)
        return table

    return post


def model_provenance(model: Any, models: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """What is recorded of the model: cell types, class, source file, training parameters."""
    prov: dict[str, Any] = {"cell_types": list(models), "class": type(model).__name__}
    src = getattr(model, "source", None)
    prov["source"] = "" if src is None else str(src)
    params = getattr(model, "params", None)
    if isinstance(params, Mapping):
        prov["params"] = dict(params)
    return prov


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ecorecover")
    except Exception:  # pragma: no cover
        return "unknown"


def summary(
    params: dict[str, Any], provenance: dict[str, Any], genes_found: dict[str, dict[str, Any]],
    unscored: dict[str, int], res: Assembled, timings: dict[str, float],
) -> dict[str, Any]:
    """The run summary kept in ``uns[key_added]`` (and, runs as records, in ``table.attrs``)."""
    return {
        "params": params,
        "model": provenance,
        "genes_found": genes_found,
        "unscored": {**unscored, "total": int(sum(unscored.values()))},
        "se_names": list(res.se_names),
        "runs": res.runs,
        "timings": timings,
        "ecorecover_version": _version(),
    }


def output_keys(key_added: str) -> list[tuple[str, str]]:
    """The (slot, key) pairs recover() writes into an AnnData."""
    return [
        ("obs", key_added), ("obs", key_added + "_score"), ("obs", key_added + "_scored"),
        ("obsm", key_added + "_scores"), ("uns", key_added),
    ]


def write(target: Any, key_added: str, res: Assembled, info: dict[str, Any]) -> None:
    """Store the results in ``target`` (an AnnData) and record the keys written."""
    out = res.table
    target.obs[key_added] = pd.Categorical(out["SE"].to_numpy())
    target.obs[key_added + "_score"] = out["PredScore"].to_numpy()
    target.obs[key_added + "_scored"] = out["scored"].to_numpy()
    target.obsm[key_added + "_scores"] = pd.DataFrame(res.scores, index=target.obs_names, columns=res.se_names)
    target.uns[key_added] = info
    record_written(target, output_keys(key_added))
