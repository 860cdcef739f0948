"""The heatmap of recovered SE scores (:func:`scores_heatmap`): SEs x cells, cells grouped by
their recovered SE (or another column), unscored cells left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import _collate
from .common import new_axes, scored_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["scores_heatmap"]


def _score_table(result: Any, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores cells x SEs, obs-like frame) from recover()'s DataFrame or an AnnData."""
    if isinstance(result, pd.DataFrame):
        info = result.attrs.get("ecorecover", {}) if hasattr(result, "attrs") else {}
        se_names = info.get("se_names") if isinstance(info, Mapping) else None
        if se_names is None:
            if "PredScore" not in result.columns:
                raise ValueError(
                    "result must be ecorecover.recover()'s DataFrame (columns CellType, InitSE, SE, PredScore, "
                    "then one score column per SE) or an AnnData that recover() wrote into"
                )
            se_names = [c for c in result.columns[list(result.columns).index("PredScore") + 1 :] if c != "scored"]
        missing = [s for s in se_names if s not in result.columns]
        if missing:
            raise KeyError(f"score columns {missing[:5]} are missing from result")
        return result[list(se_names)].astype(float), result
    if hasattr(result, "obsm") and hasattr(result, "obs"):
        k = key + "_scores"
        if k not in result.obsm:
            raise KeyError(f"adata.obsm[{k!r}] not found (keys: {list(result.obsm.keys())}); run ecorecover.recover first")
        sc = result.obsm[k]
        if not isinstance(sc, pd.DataFrame):
            raise TypeError(f"adata.obsm[{k!r}] must be a DataFrame with SE columns")
        obs: pd.DataFrame = result.obs
        return sc.astype(float), obs
    raise TypeError(f"result must be a DataFrame or an AnnData, got {type(result).__name__}")


def _cell_order(groups: np.ndarray, vals: np.ndarray, cols: list[str], max_cells: int | None,
                seed: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """The drawn cells (a random subset of at most ``max_cells``) in drawing order: groups in SE
    column order then R's sorted order, within a group by decreasing score of the group's SE (else
    the best score); and each group's ``(name, start, end)`` on the x axis."""
    n = len(groups)
    keep = np.arange(n)
    if max_cells is not None and n > max_cells:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(n, size=int(max_cells), replace=False))
    present = set(groups[keep])
    order_groups = [c for c in cols if c in present] + _collate.collate_sorted(present - set(cols))
    idx: list[np.ndarray] = []
    bounds: list[tuple[str, int, int]] = []
    start = 0
    for g in order_groups:
        members = keep[groups[keep] == g]
        key_score = vals[members, cols.index(g)] if g in cols else vals[members].max(axis=1, initial=0.0)
        members = members[np.argsort(-key_score, kind="stable")]
        idx.append(members)
        bounds.append((g, start, start + len(members)))
        start += len(members)
    return np.concatenate(idx), bounds


def scores_heatmap(
    result: Any,
    *,
    groupby: str | None = None,
    key: str = "SE_recovered",
    scored_key: str | None = "auto",
    max_cells: int | None = 2000,
    seed: int = 0,
    cmap: str = "magma",
    ax: Axes | None = None,
    figsize: tuple[float, float] = (8.0, 3.5),
) -> Axes:
    """Heatmap of recovered SE scores: SEs (rows) x cells (columns), cells grouped by
    ``groupby`` (their recovered SE by default) and, within a group, sorted by the score of
    the group's SE (else by their best score).

    Parameters
    ----------
    result
        :func:`ecorecover.recover`'s DataFrame, or the AnnData it wrote into (scores in
        ``obsm[key + "_scores"]``, labels in ``obs``).
    groupby
        Column grouping the cells (``"SE"``, ``"CellType"``, ...). Default: the recovered SE
        (``"SE"`` of the table, ``obs[key]`` of an AnnData).
    key
        ``key_added`` used by :func:`ecorecover.recover` (AnnData input).
    scored_key
        Column telling which cells were scored; unscored cells (all-zero scores) are left out.
        ``"auto"``: ``"scored"`` of the table or ``obs[key + "_scored"]``; None: draw every cell.
    max_cells
        Draw at most this many cells (a random subset, the same share of every group; ``None``:
        all).
    seed
        Seed of that subset.
    cmap, ax, figsize
        Colour map, Axes to draw into, figure size of a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        Groups are separated by vertical lines and named on the x axis; the x label counts
        the unscored cells left out.
    """
    scores, obs = _score_table(result, key)
    is_table = isinstance(result, pd.DataFrame)
    if groupby is None:
        groupby = "SE" if is_table else key
    scored = scored_mask(obs, None if is_table else key, scored_key)
    n_unscored = 0
    if scored is not None and not scored.all():
        n_unscored = int((~scored).sum())
        scores, obs = scores[scored], obs[scored]
    if groupby not in obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column (columns: {list(obs.columns)})")
    groups = obs[groupby].astype(str).to_numpy(dtype=object)
    vals = scores.to_numpy(dtype=float)
    if len(groups) == 0:
        raise ValueError("no cells to plot")
    cols = list(scores.columns)
    order, bounds = _cell_order(groups, vals, cols, max_cells, seed)
    img = vals[order].T
    ax = new_axes(ax, figsize)
    im = ax.imshow(img, aspect="auto", cmap=cmap, interpolation="nearest", vmin=0.0, vmax=max(1e-12, float(np.nanmax(img))))
    ax.set_yticks(range(len(cols)), cols)
    ax.set_xticks([(a + b - 1) / 2 for _, a, b in bounds], [g for g, _, _ in bounds], rotation=90)
    for _, a, _ in bounds[1:]:
        ax.axvline(a - 0.5, color="white", linewidth=0.8)
    ax.set_xlabel(f"cells grouped by {groupby} ({len(order)} cells"
                  + (f"; {n_unscored} unscored cells not shown)" if n_unscored else ")"))
    ax.set_ylabel("SE score")
    ax.set_title("recovered SE scores")
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label("score")
    return ax
