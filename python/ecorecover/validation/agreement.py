"""R's ``ComputeMetrics``: recall, precision and F1/F2 of predicted against true SEs, per sample
and averaged over samples, under R's counting scheme or one where every cell counts.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .. import _collate
from .._params import StrOptions, validate_params
from ..errors import ParameterError, ParameterTypeError
from .common import COLLATIONS, METRICS, Metric, MetricScheme, ValidationWarning
from .._warnings import warn

__all__ = ["metrics"]

#: What metrics' arguments accept (checked by its ``_params.validate_params`` decorator; ``metric``
#: is matched without regard to case, below).
_PARAMS: dict[str, list[Any]] = {
    "se_key": [str], "pred_key": [str], "celltype_key": [str, None], "sample_key": [str, None],
    "metric": [str], "collation": [StrOptions(COLLATIONS)], "scheme": [StrOptions({"r", "all"})],
    "scored_key": [str, None],
}
_log = logging.getLogger("ecorecover.loocv")


@validate_params(_PARAMS, where="ecorecover.metrics()")
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
    obs, name = _check_metrics_args(obs, scheme, metric, collation)
    if scored_key == "auto":
        scored_key = pred_key + "_scored" if pred_key + "_scored" in obs.columns else None
    df = _labelled_cells(obs, se_key, pred_key, celltype_key, sample_key, scored_key)
    labels, pred, ti, pi, index_name = _label_codes(df, se_key, pred_key, celltype_key, collation)
    unscored = ~df[scored_key].astype(bool).to_numpy() if scored_key is not None else np.zeros(len(df), dtype=bool)
    outside = (pi < 0) | unscored
    if sample_key is None:
        groups = [np.arange(len(df))]
    else:
        smp = df[sample_key].astype(str).to_numpy(dtype=object)
        groups = [np.flatnonzero(smp == s) for s in _collate.collate_sorted(set(smp), collation)]
    both = {
        "r": _metric_matrix(ti, pi, groups, len(labels), name, keep_outside=False),
        "all": _metric_matrix(ti, np.where(outside, -1, pi), groups, len(labels), name, keep_outside=True),
    }
    avg = both[scheme]
    other = both["all" if scheme == "r" else "r"]
    out = pd.DataFrame(avg, index=pd.Index(labels, name=index_name), columns=pd.Index(labels))
    kinds = pd.Series(np.where(unscored, "unscored", pred)[outside]).value_counts()
    out.attrs["ecorecover"] = {
        "metric": name, "scheme": scheme, "n_samples": len(groups), "n_cells": int(len(df)),
        "n_outside": int(outside.sum()), "outside_labels": {str(k): int(v) for k, v in kinds.items()},
        "other_scheme": {lab: float(other[i, i]) for i, lab in enumerate(labels)},
    }
    if outside.any():
        _log.info("metrics: %d of %d cells predicted outside the true labels or unscored (%s); scheme=%r %s them",
                  int(outside.sum()), len(df), dict(kinds.head(5)), scheme, "drops" if scheme == "r" else "counts")
    return out



def _check_metrics_args(obs: Any, scheme: Any, metric: Any, collation: Any) -> tuple[pd.DataFrame, str]:
    """(the per-cell table, the metric's canonical name), refusing bad options."""
    if hasattr(obs, "obs") and not isinstance(obs, pd.DataFrame):
        obs = obs.obs
    if not isinstance(obs, pd.DataFrame):
        raise ParameterTypeError(f"obs must be a DataFrame (one row per cell) or an AnnData, got {type(obs).__name__}")
    names = {m.lower(): m for m in METRICS}
    if metric.lower() not in names:
        raise ParameterError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    return obs, names[metric.lower()]


def _labelled_cells(obs: pd.DataFrame, se_key: str, pred_key: str, celltype_key: str | None, sample_key: str | None,
                    scored_key: str | None) -> pd.DataFrame:
    """The columns used, for the cells with every label (a warning counts the others). Warnings
    point at the caller of :func:`metrics`."""
    for what, k in (("se_key", se_key), ("pred_key", pred_key), ("celltype_key", celltype_key),
                    ("sample_key", sample_key), ("scored_key", scored_key)):
        if k is not None and k not in obs.columns:
            raise KeyError(f"{what}={k!r} is not a column of obs (columns: {list(obs.columns)})")
    used = [k for k in (se_key, pred_key, celltype_key, sample_key) if k is not None]
    missing = obs[used].isna().any(axis=1).to_numpy()
    if missing.any():
        warn(
            f"{int(missing.sum())} cells with a missing label in {used} are left out (R's table() drops them)",
            ValidationWarning,
        )
    df = obs.loc[~missing, used + ([scored_key] if scored_key is not None and scored_key not in used else [])]
    if len(df) == 0:
        raise ValueError("no cell has both a true and a predicted label")
    return df


def _label_codes(
    df: pd.DataFrame, se_key: str, pred_key: str, celltype_key: str | None, collation: _collate.Collation
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, str]:
    """(labels in order, the predictions as labels, true and predicted label positions (-1: no
    label), the index name). With ``celltype_key`` the labels are SE-cell-type pairs."""
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
    return labels, pred, ti, pi, index_name


def _metric_matrix(
    ti: np.ndarray, pi: np.ndarray, groups: list[np.ndarray], n_labels: int, metric: str, *, keep_outside: bool
) -> np.ndarray:
    """R's ComputeMetrics matrix averaged over ``groups``. ``pi < 0``: a prediction outside the
    labels, dropped as R does, or (``keep_outside``) counted in its true label's recall
    denominator through an extra column."""
    L = n_labels
    beta2 = {"F1": 1.0, "F2": 4.0}.get(metric, 0.0)  # F-scores only
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
