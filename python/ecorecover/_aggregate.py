"""Ensembles: R SpatialEcoTyper's ``AggregateRecoverModels`` (METHOD.md section 3 and 7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from . import _naming
from ._params import Interval, validate_params
from ._collate import sort_key
from .model import RecoveryModel
from ._warnings import warn

__all__ = ["aggregate", "AggregateWarning"]

class AggregateWarning(UserWarning):
    """Something in the ensemble differs from R (entries no run has, which R leaves NaN)."""


def _as_frames(model: Any, i: int) -> Mapping[str, pd.DataFrame]:
    if isinstance(model, Mapping):
        for ct, w in model.items():
            if not isinstance(w, pd.DataFrame):
                raise TypeError(f"models[{i}][{ct!r}] must be a pandas DataFrame (features x SEs), got {type(w).__name__}")
            if isinstance(model, RecoveryModel):
                continue  # checked when the RecoveryModel was built
            try:
                values = w.to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"models[{i}][{ct!r}] must hold numbers: {exc}") from None
            # NaN would silently count as "absent from this run" in the mean; refuse it.
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(
                    f"models[{i}][{ct!r}] holds {int(bad.sum())} NaN, infinite or negative weight(s), first at "
                    f"feature {w.index[r]!r}, SE {w.columns[c]!r}: {float(values[r, c])!r}"
                )
        return model
    raise TypeError(f"models[{i}] must be a RecoveryModel or a mapping cell type -> W DataFrame, got {type(model).__name__}")


def _aggregate_frames(
    runs: Sequence[Mapping[str, pd.DataFrame]], *, delta_threshold: float, min_model_fraction: float
) -> dict[str, pd.DataFrame]:
    """R's aggregation on plain DataFrames; entries no run has are NaN (as in R)."""
    n_runs = len(runs)
    out: dict[str, pd.DataFrame] = {}
    for ct in runs[0]:  # R: cell types of the first run only
        ws = [r[ct] for r in runs if ct in r]
        counts: dict[tuple[str, str], int] = {}
        plain = True
        for w in ws:
            values = w.to_numpy(dtype=np.float64)
            feats = [str(f) for f in w.index]
            is_pos = np.array([_naming.is_pos(f) for f in feats])
            if is_pos.any():
                plain = False
            else:  # features without posneg: each row is its own gene
                is_pos = np.ones(len(feats), dtype=bool)
            if values.shape[1] >= 2:
                second = np.sort(values, axis=1)[:, -2]
            else:
                second = np.full(values.shape[0], -np.inf)
            delta = values - second[:, None]
            for a, se in enumerate(w.columns):
                hit = np.flatnonzero(is_pos & (delta[:, a] > delta_threshold))
                # The gene of a feature, suffix removed. R cuts the name at the first ``_`` instead,
                # so a gene whose name contains ``_`` (e.g. ``HLA_DRA``) becomes ``HLA`` and its
                # rows come out all NaN in R; here it keeps its name (a documented divergence).
                for gene in _naming.model_genes(feats[i] for i in hit):
                    key = (str(se), gene)
                    counts[key] = counts.get(key, 0) + 1
        # dplyr count(SE, Gene): sorted by SE, then gene (R's collation); keep n / runs > fraction
        keys = sorted(counts, key=lambda t: (sort_key(t[0]), sort_key(t[1])))
        genes = list(dict.fromkeys(g for s, g in keys if counts[(s, g)] / n_runs > min_model_fraction))
        rows = list(genes) if plain else _naming.feature_names(genes)
        ses = list(dict.fromkeys(str(se) for w in ws for se in w.columns))
        mean = _mean_over_runs(ws, rows, ses)
        out[ct] = pd.DataFrame(mean, index=pd.Index(rows, dtype=object), columns=pd.Index(ses, dtype=object))
    return out


def _mean_over_runs(ws: Sequence[pd.DataFrame], rows: list[str], ses: list[str]) -> np.ndarray:
    """Per entry (row, SE), the mean over the runs whose W has it (NaN where none has): each
    run's value added in list order, divided by the count (as R's mean)."""
    row_index, col_index = pd.Index(rows, dtype=object), pd.Index(ses, dtype=object)
    total = np.zeros((len(rows), len(ses)))
    n = np.zeros((len(rows), len(ses)))
    for w in ws:
        ri = row_index.get_indexer(w.index.astype(str))
        ci = col_index.get_indexer(w.columns.astype(str))
        rk, ck = np.flatnonzero(ri >= 0), np.flatnonzero(ci >= 0)
        block = np.ix_(ri[rk], ci[ck])
        total[block] += w.to_numpy(dtype=np.float64)[np.ix_(rk, ck)]
        n[block] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: np.ndarray = np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)
    return mean


@validate_params({
    "delta_threshold": [Interval(Real, None, None)],
    "min_model_fraction": [Interval(Real, 0, 1, closed="left")],
})
def aggregate(
    models: Sequence[Any], *, delta_threshold: float = 0.01, min_model_fraction: float = 0.5
) -> RecoveryModel:
    """Combine the runs of an ensemble: R SpatialEcoTyper's ``AggregateRecoverModels``.

    Per cell type (those of the first run, as R): in each run's W and each SE column, the
    genes whose ``GENE__pos`` feature has ``delta = W - (second largest of its row)`` above
    ``delta_threshold`` are counted; genes selected (for some SE) in a fraction of runs
    strictly above ``min_model_fraction`` are kept, in dplyr ``count(SE, Gene)`` order (by SE,
    then gene, with R's collation; each gene at its first occurrence). Rows: every kept
    gene's ``__pos`` feature, then every ``__neg``. Columns: the union of the runs' SEs in
    first-seen order. W = the mean over the runs that have the entry.

    Parameters
    ----------
    models
        The runs: :class:`ecorecover.RecoveryModel` objects or mappings cell type -> W
        DataFrame. They should come from different seeds (with one seed every run draws the
        same cells and the ensemble is one model repeated).
    delta_threshold, min_model_fraction
        R's ``delta.threshold`` and ``min.model.fraction``.

    Returns
    -------
    A :class:`ecorecover.RecoveryModel`; ``.runs`` holds the input models that are
    RecoveryModels, ``params["aggregate"]`` the thresholds.

    Raises
    ------
    ValueError
        Bad models or thresholds, or a cell type for which no gene is kept (its W would be empty).

    Warns
    -----
    AggregateWarning
        When some entry exists in no run: R leaves it NaN, which a model cannot hold; it is set
        to 0 here (no expression of that feature in that SE).
    """
    if isinstance(models, (Mapping, str, bytes)) or not isinstance(models, Sequence):
        raise TypeError("models must be a list of RecoveryModel (or of mappings cell type -> W DataFrame)")
    if len(models) == 0:
        raise ValueError("models is empty: give at least one run")
    model, _ = _aggregate(models, delta_threshold, min_model_fraction, drop_empty=False)
    assert model is not None  # only drop_empty=True gives None
    return model


def _aggregate(
    models: Sequence[Any], delta_threshold: float, min_model_fraction: float, *, drop_empty: bool
) -> tuple[RecoveryModel | None, dict[str, tuple[int, int]]]:
    """:func:`aggregate` (arguments already checked); with ``drop_empty``, cell types whose W
    would be empty are left out and returned (shapes) instead of raising (``train`` reports them
    as skipped); the model is None when every cell type is empty."""
    frames = [_as_frames(m, i) for i, m in enumerate(models)]
    if len(frames[0]) == 0:
        raise ValueError("models[0] has no cell type (cell types come from the first run, as in R)")
    agg = _aggregate_frames(frames, delta_threshold=float(delta_threshold), min_model_fraction=float(min_model_fraction))
    empty = {ct: w.shape for ct, w in agg.items() if w.shape[0] == 0 or w.shape[1] == 0}
    if empty and drop_empty:
        agg = {ct: w for ct, w in agg.items() if ct not in empty}
        if not agg:
            return None, empty
    elif empty:
        raise ValueError(
            "the ensemble would hold an empty W for cell type(s) "
            + ", ".join(f"{ct!r} ({r} features x {c} SEs)" for ct, (r, c) in empty.items())
            + f": no gene's __pos feature has delta > delta_threshold={delta_threshold} for some SE in more than "
            f"min_model_fraction={min_model_fraction} of the {len(models)} run(s); a model with an empty W cannot "
            "recover anything. Lower delta_threshold or min_model_fraction, or drop those cell types from the runs"
        )
    filled = {}
    for ct, w in agg.items():
        nan = int(np.isnan(w.to_numpy()).sum())
        if nan:
            filled[ct] = nan
            agg[ct] = w.fillna(0.0)
    if filled:
        warn(
            "entries present in no run (R leaves them NaN) were set to 0: "
            + ", ".join(f"{ct}: {n}" for ct, n in filled.items()),
            AggregateWarning,
        )
    runs = [m for m in models if isinstance(m, RecoveryModel)]
    params: dict[str, Any] = {}
    if runs:
        params = {k: v for k, v in runs[0].params.items() if k not in ("run_seed", "n_cells_used")}
    params["aggregate"] = {
        "delta_threshold": float(delta_threshold),
        "min_model_fraction": float(min_model_fraction),
        "n_runs": len(models),
        "run_seeds": [m.params.get("run_seed") for m in runs] if runs else None,
        "nan_entries_set_to_0": filled,
    }
    model = RecoveryModel(agg, params=params, runs=runs if len(runs) == len(models) else (), source="ecorecover.aggregate")
    return model, empty
