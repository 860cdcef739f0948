"""Plots of the spatial validation of recovered SEs.

- :func:`spatial`: cells in space, one colour per SE, NonSE grey, optionally one panel per sample.
- :func:`colocalization_heatmap`: :func:`ecorecover.spatial.colocalization` z-scores between cell
  states, the states of one SE outlined as a block, each SE's within-SE p-value written beside it.
- :func:`marker_heatmap`: :func:`ecorecover.marker_expression`, gene sets x SEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import _collate
from .common import RGBA, colors, matrix_heatmap, new_axes, new_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

__all__ = ["spatial", "colocalization_heatmap", "marker_heatmap"]

#: Labels drawn grey in :func:`spatial` (cells in no SE).
_NO_SE = ("NonSE", "nonSE")


def _table_and_xy(data: Any, coords: Any) -> tuple[pd.DataFrame, np.ndarray]:
    from ..spatial.inputs import coordinates

    obs = data.obs if hasattr(data, "obs") and not isinstance(data, pd.DataFrame) else data
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"data must be an AnnData or a DataFrame of per-cell metadata, got {type(data).__name__}")
    return obs, coordinates(data, coords)


def _se_colours(labels: Sequence[str] | np.ndarray) -> dict[str, RGBA]:
    ses = [s for s in _collate.collate_sorted(pd.unique(np.asarray(labels, dtype=object))) if s not in _NO_SE]
    colours: dict[str, RGBA] = dict(zip(ses, colors(len(ses))))
    colours.update({s: (0.78, 0.78, 0.78, 1.0) for s in _NO_SE})
    return colours


def spatial(
    data: Any,
    *,
    se_key: str = "SE",
    coords: Any = None,
    sample_key: str | None = None,
    point_size: float | None = None,
    ncols: int = 3,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes | np.ndarray:
    """Cells in space coloured by SE (NonSE grey, drawn first so SE cells stay visible).

    Parameters
    ----------
    data
        AnnData or a DataFrame of per-cell metadata with the SE column and coordinates.
    se_key
        Column of SE labels (e.g. the ``key_added`` of :func:`ecorecover.recover`).
    coords
        A pair of column names, or an ``.obsm`` key (default: ``obsm["spatial"]`` when present,
        else columns ``"X"``, ``"Y"``), as in :mod:`ecorecover.spatial`.
    sample_key
        Column of samples: one panel per sample (sections have their own coordinates).
    point_size, ncols
        Marker size (default from the number of cells); panels per row with ``sample_key``.
    ax, figsize
        Axes to draw into (only without ``sample_key``); figure size of a new figure.

    Returns
    -------
    matplotlib.axes.Axes, or an array of Axes with ``sample_key``.
    """
    obs, xy = _table_and_xy(data, coords)
    if se_key not in obs.columns:
        raise KeyError(f"se_key={se_key!r} is not a column (columns: {list(obs.columns)})")
    labels = obs[se_key].astype(object).where(obs[se_key].notna(), "NonSE").astype(str).to_numpy()
    colours = _se_colours(labels)
    size = point_size if point_size is not None else float(np.clip(20000.0 / max(len(obs), 1), 0.2, 12.0))
    if sample_key is None:
        ax = new_axes(ax, figsize or (7.0, 6.0))
        _draw_cells(ax, xy, labels, colours, size)
        ax.legend(handles=_legend_handles(colours, labels), loc="center left", bbox_to_anchor=(1.0, 0.5),
                  frameon=False, fontsize=8, title=se_key)
        return ax
    if ax is not None:
        raise ValueError("ax= cannot be used with sample_key= (one panel per sample is drawn in a new figure)")
    if sample_key not in obs.columns:
        raise KeyError(f"sample_key={sample_key!r} is not a column (columns: {list(obs.columns)})")
    samples = _collate.collate_sorted(pd.unique(obs[sample_key].astype(str)))
    nrow = -(-len(samples) // ncols)
    ncol = min(ncols, len(samples))
    fig, axes = new_grid(nrow, ncol, figsize or (4.5 * ncol + 1.5, 4.2 * nrow))
    which = obs[sample_key].astype(str).to_numpy()
    for a, s in zip(axes.flat, samples):
        m = which == s
        _draw_cells(a, xy[m], labels[m], colours, size)
        a.set_title(str(s))
    for a in list(axes.flat)[len(samples):]:
        a.set_axis_off()
    fig.legend(handles=_legend_handles(colours, labels), loc="outside right center", frameon=False, fontsize=8,
               title=se_key)
    return axes


def _draw_cells(ax: Axes, xy: np.ndarray, labels: np.ndarray, colours: dict[str, RGBA], size: float) -> None:
    order = [s for s in _NO_SE if s in colours] + [s for s in colours if s not in _NO_SE]
    for s in order:
        m = labels == s
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colours[s], linewidths=0, rasterized=True)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_handles(colours: dict[str, RGBA], labels: np.ndarray) -> list[Line2D]:
    from matplotlib.lines import Line2D

    present = set(labels.tolist())
    return [Line2D([], [], marker="o", linestyle="", color=c, label=s) for s, c in colours.items() if s in present]


def _se_of(state: str) -> str:
    return str(state).split("_", 1)[0]


def colocalization_heatmap(
    result: Any,
    *,
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    annotate: bool = False,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Heatmap of colocalization z-scores between cell states, states grouped by SE.

    The states of each SE (state names ``"<SE>_<CellType>"``) form a block on the diagonal,
    outlined in black; when the result has the within-SE test, each block is labelled with its SE,
    z-score and p-value.

    Parameters
    ----------
    result
        A :class:`ecorecover.spatial.ColocalizationResult` (or a states x states DataFrame of
        z-scores).
    cmap, vmax
        Diverging colour map; colour range ``[-vmax, vmax]`` (default: the 99th percentile of
        ``|z|``).
    annotate
        Write the z-scores in the cells.
    ax, figsize
        Axes to draw into; figure size of a new figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    z = result if isinstance(result, pd.DataFrame) else getattr(result, "zscores", None)
    if not isinstance(z, pd.DataFrame):
        raise TypeError(f"result must be a ColocalizationResult or a DataFrame of z-scores, got {type(result).__name__}")
    states = list(z.index)
    ses = list(dict.fromkeys(_se_of(s) for s in states))
    order = [s for se in ses for s in states if _se_of(s) == se]
    z = z.loc[order, [c for c in order if c in z.columns]]
    vals = z.to_numpy(dtype=float)
    if vmax is None:
        finite = np.abs(vals[np.isfinite(vals)])
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    n = len(order)
    ax = matrix_heatmap(z, ax, cmap, annotate, ".1f", -vmax, vmax, figsize or (4.0 + 0.16 * n, 1.5 + 0.16 * n),
                        "z-score")
    tick = max(5, int(9 - n / 25))
    ax.tick_params(labelsize=tick)
    _outline_blocks(ax, order, getattr(result, "pvalues", None), getattr(result, "se_zscores", None))
    ax.set_title("colocalization of cell states (z-score vs permutations)")
    return ax


def _outline_blocks(ax: Axes, order: list[str], pvalues: Any, zscores: Any) -> None:
    from matplotlib.patches import Rectangle

    start = 0
    while start < len(order):
        se = _se_of(order[start])
        end = start
        while end < len(order) and _se_of(order[end]) == se:
            end += 1
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), end - start, end - start, fill=False, edgecolor="black",
                               linewidth=1.2))
        if isinstance(pvalues, pd.Series) and se in pvalues.index:
            z = f"z={float(zscores[se]):.1f}, " if isinstance(zscores, pd.Series) and se in zscores.index else ""
            # in the right margin, level with the block (inside the matrix it would cover cells)
            ax.text(len(order) - 0.5 + 0.4, (start + end - 1) / 2, f"{se} ({z}p={float(pvalues[se]):.1e})",
                    va="center", ha="left", fontsize=6, clip_on=False)
        start = end


def marker_heatmap(
    table: pd.DataFrame,
    *,
    cmap: str = "RdBu_r",
    annotate: bool | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Heatmap of :func:`ecorecover.marker_expression` (gene sets x SEs, z-scored per gene set).

    Rows that are all NaN (gene sets with no gene in the data) are drawn blank.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be the DataFrame ecorecover.marker_expression() returns, got {type(table).__name__}")
    vals = table.to_numpy(dtype=float)
    finite = np.abs(vals[np.isfinite(vals)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    ax = matrix_heatmap(table, ax, cmap, annotate, ".1f", -vmax, vmax, figsize, "z-score across SEs")
    ax.set_xlabel(str(table.columns.name or "SE"))
    ax.set_ylabel(str(table.index.name or "gene set"))
    ax.set_title("average marker expression")
    return ax
