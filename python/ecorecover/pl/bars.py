"""Stacked bars of SE composition (:func:`composition`): per sample / cell type from per-cell
labels, or per bulk sample from a wide table of abundances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import _collate
from .common import UNSCORED, colors, new_axes, scored_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["composition"]


def _cell_counts(data: pd.DataFrame, groupby: str, key: str, scored_key: str | None,
                 unscored: str | None) -> pd.DataFrame:
    """Cells per ``groupby`` value (rows) and ``key`` value (columns), both in R's sorted order,
    the unscored cells in their own last column (or left out when ``unscored`` is None)."""
    for what, k in (("groupby", groupby), ("key", key)):
        if k not in data.columns:
            raise KeyError(f"{what}={k!r} is not a column (columns: {list(data.columns)})")
    g = data[groupby].astype(str)
    s = data[key].astype(str)
    scored = scored_mask(data, key, scored_key)
    if scored is not None:
        other: Any = unscored  # None: the unscored cells become missing and are dropped
        s = s.where(scored, other).dropna()
        g = g.loc[s.index]
    table = pd.crosstab(g, s).astype(float)
    cols = _collate.collate_sorted(set(table.columns) - {unscored})
    last = [unscored] if unscored is not None and unscored in table.columns else []
    return table.loc[_collate.collate_sorted(table.index)][cols + last]


def _row_shares(table: pd.DataFrame) -> pd.DataFrame:
    """Each row divided by its sum (rows summing to 0 stay 0)."""
    tot = table.sum(axis=1).to_numpy()[:, None]
    return pd.DataFrame(
        np.divide(table.to_numpy(), tot, out=np.zeros(table.shape), where=tot > 0), index=table.index, columns=table.columns
    )


def _draw_bars(ax: Axes, table: pd.DataFrame) -> None:
    """One stacked bar per row of ``table``, one segment per column."""
    n_bars, n_seg = table.shape
    x = np.arange(n_bars)
    bottom = np.zeros(n_bars)
    for color, col in zip(colors(n_seg), table.columns):
        v = table[col].to_numpy()
        ax.bar(x, v, bottom=bottom, color=color, label=str(col), width=0.8)
        bottom += v
    ax.set_xticks(x, [str(i) for i in table.index], rotation=90 if n_bars > 6 else 0)


def composition(
    data: Any,
    *,
    groupby: str | None = "Sample",
    key: str | None = "SE",
    normalize: bool = True,
    order: Sequence[str] | None = None,
    scored_key: str | None = "auto",
    unscored: str | None = UNSCORED,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    legend: bool = True,
) -> Axes:
    """Stacked bars of SE composition: one bar per ``groupby`` value, one segment per ``key``
    value.

    Parameters
    ----------
    data
        A DataFrame with one row per cell (``adata.obs``, :func:`ecorecover.recover`'s result)
        or an AnnData (its ``obs``); or, with ``groupby=None`` / ``key=None``, a wide numeric
        table whose rows are the bars and columns the segments (e.g. :func:`ecorecover.deconvolve`'s
        samples x SEs result).
    groupby
        Column defining the bars (``"Sample"``, ``"CellType"``, ...).
    key
        Column defining the segments (the SE).
    normalize
        Show fractions (each bar sums to 1) instead of counts / raw values.
    order
        Bar order (default: R's sorted order for cell tables, the row order for wide tables).
    scored_key
        Column telling which cells recovery scored (``"auto"``: ``key + "_scored"``, else
        ``"scored"``, when present; None: ignore). Unscored cells are not counted under their
        ``key`` value (``InitSE`` would count them as the first SE, ``SE`` as ``"NonSE"``).
    unscored
        Segment label for the unscored cells (default ``"unscored"``); None leaves them out.
    ax, figsize, legend
        Axes to draw into, figure size of a new figure, whether to add a legend.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.containers`` holds one bar container per segment.
    """
    if hasattr(data, "obs") and not isinstance(data, pd.DataFrame):
        data = data.obs
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a DataFrame or an AnnData, got {type(data).__name__}")
    by_cells = groupby is not None and key is not None
    if groupby is not None and key is not None:
        table = _cell_counts(data, groupby, key, scored_key, unscored)
        ylab = "cells"
    else:
        table = data.astype(float)
        if (table.to_numpy() < 0).any():
            raise ValueError("a wide table for composition() must be non-negative")
        ylab = "abundance"
    if order is not None:
        missing = [o for o in order if o not in table.index]
        if missing:
            raise KeyError(f"order names bars that are not in the data: {missing[:5]}")
        table = table.loc[list(order)]
    if normalize:
        table = _row_shares(table)
        ylab = "fraction of cells" if ylab == "cells" else "fraction"
    n_bars = table.shape[0]
    ax = new_axes(ax, figsize or (2.0 + 0.45 * n_bars, 4.0))
    _draw_bars(ax, table)
    ax.set_xlabel(groupby if by_cells and groupby is not None else str(table.index.name or "sample"))
    ax.set_ylabel(ylab)
    ax.set_title(f"{key} composition" if by_cells else "composition")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                  title=key if by_cells else None)
    ax.set_xlim(-0.6, n_bars - 0.4)
    return ax
