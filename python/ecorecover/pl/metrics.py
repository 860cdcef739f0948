"""Heatmaps of validation results: :func:`metrics_heatmap` (an :func:`ecorecover.metrics` matrix)
and :func:`confusion_heatmap` (true vs predicted SEs, unscored predictions in their own column)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import _collate
from .common import UNSCORED, matrix_heatmap, scored_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["metrics_heatmap", "confusion_heatmap"]


def metrics_heatmap(
    m: pd.DataFrame,
    *,
    cmap: str = "Blues",
    annotate: bool | None = None,
    fmt: str = ".2f",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Heatmap of an :func:`ecorecover.metrics` matrix (true labels x labels).

    Only the diagonal is the usual per-SE score (R's off-diagonal entries mix recall and
    precision); the title says which metric it is.

    Parameters
    ----------
    m
        :func:`ecorecover.metrics`'s DataFrame (or any square labels x labels table).
    cmap, annotate, fmt, vmin, vmax
        Colour map; write the values in the cells (default: when at most 400 cells); their
        format; colour range.
    ax, figsize
        Axes to draw into; figure size of a new figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(m, pd.DataFrame):
        raise TypeError(f"m must be the DataFrame ecorecover.metrics() returns, got {type(m).__name__}")
    info = m.attrs.get("ecorecover", {})
    metric = str(info.get("metric", "metric")) if isinstance(info, Mapping) else "metric"
    ax = matrix_heatmap(m, ax, cmap, annotate, fmt, vmin, vmax, figsize, metric)
    ax.set_ylabel(f"true {m.index.name or 'SE'}")
    ax.set_xlabel(str(m.index.name or "SE"))
    diag = np.diag(m.to_numpy(dtype=float)) if m.shape[0] == m.shape[1] else np.array([np.nan])
    ax.set_title(f"{metric} (mean of diagonal {np.nanmean(diag):.2f})" if np.isfinite(diag).any() else metric)
    n_out = info.get("n_outside", 0) if isinstance(info, Mapping) else 0
    if n_out and info.get("scheme") == "r":  # R's scheme left cells out: say so under the plot
        ax.set_xlabel(f"{ax.get_xlabel()}\n({n_out} cells predicted outside the true labels or unscored are left "
                      "out, as R; metrics(scheme='all') counts them)")
    return ax


def _confusion_table(obs: pd.DataFrame, se_key: str, pred_key: str, scored_key: str | None,
                     normalize: bool) -> tuple[pd.DataFrame, float]:
    """True (rows, R's sorted order) x predicted (the true labels first, then the others, then
    ``"unscored"``) counts or row shares, and the accuracy."""
    ok = obs[se_key].notna() & obs[pred_key].notna()
    t = obs.loc[ok, se_key].astype(str)
    p = obs.loc[ok, pred_key].astype(str)
    sc_key = (f"{pred_key}_scored" if f"{pred_key}_scored" in obs.columns else None) if scored_key == "auto" else scored_key
    scored = scored_mask(obs.loc[ok], None, sc_key)
    if scored is not None:
        p = p.where(scored, UNSCORED)
    rows = _collate.collate_sorted(t)
    cols = rows + [c for c in _collate.collate_sorted(set(p) - {UNSCORED}) if c not in rows]
    cols += [UNSCORED] if UNSCORED in set(p) and UNSCORED not in rows else []
    tab = pd.crosstab(t, p).reindex(index=rows, columns=cols, fill_value=0).astype(float)
    if normalize:
        tot = tab.sum(axis=1).to_numpy()[:, None]
        tab = pd.DataFrame(np.divide(tab.to_numpy(), tot, out=np.zeros(tab.shape), where=tot > 0), index=rows, columns=cols)
    acc = float((t.to_numpy() == p.to_numpy()).mean()) if len(t) else float("nan")
    return tab, acc


def confusion_heatmap(
    obs: Any,
    *,
    se_key: str = "SE",
    pred_key: str = "cvPred",
    scored_key: str | None = "auto",
    normalize: bool = True,
    cmap: str = "Blues",
    annotate: bool | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Confusion matrix of true (rows) vs predicted (columns) SEs.

    Parameters
    ----------
    obs
        One row per cell (``adata.obs``, :func:`ecorecover.loocv`'s result) or an AnnData.
    se_key, pred_key
        Columns with the true and the predicted SE.
    scored_key
        Column telling which predictions come from a scored cell (``"auto"``:
        ``pred_key + "_scored"`` when present); the others form an ``"unscored"`` column.
    normalize
        Show, per true SE, the share of its cells given each prediction (rows sum to 1).
    cmap, annotate, ax, figsize
        As in :func:`metrics_heatmap`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if hasattr(obs, "obs") and not isinstance(obs, pd.DataFrame):
        obs = obs.obs
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"obs must be a DataFrame or an AnnData, got {type(obs).__name__}")
    for what, k in (("se_key", se_key), ("pred_key", pred_key)):
        if k not in obs.columns:
            raise KeyError(f"{what}={k!r} is not a column (columns: {list(obs.columns)})")
    tab, acc = _confusion_table(obs, se_key, pred_key, scored_key, normalize)
    ax = matrix_heatmap(tab, ax, cmap, annotate, ".2f" if normalize else ".0f", 0.0, 1.0 if normalize else None,
                        figsize, "share of true SE" if normalize else "cells")
    ax.set_ylabel(f"true {se_key}")
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_title(f"confusion (accuracy {acc:.2f})")
    return ax
