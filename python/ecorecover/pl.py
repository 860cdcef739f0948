"""Plots of recovery models, recovered SEs and validation metrics (matplotlib).

Every function draws into ``ax`` (a new figure when ``ax`` is None) and returns the
:class:`matplotlib.axes.Axes` it drew on (``ax.figure`` is the Figure). Nothing here calls
``plt.show()``: in a notebook the figure appears by itself; in a script, call
``ax.figure.savefig(...)`` or ``plt.show()`` yourself.

matplotlib is an optional dependency, imported only when a function is called:
``pip install "ecorecover[plot]"``.

- :func:`model_heatmap`: a model's W, the top features of each SE.
- :func:`scores_heatmap`: recovered SE scores per cell, cells grouped by their SE.
- :func:`composition`: stacked bars of SE composition per sample / cell type (or of
  deconvolved abundances per bulk sample).
- :func:`metrics_heatmap`: a :func:`ecorecover.metrics` matrix; :func:`confusion_heatmap`: true
  vs predicted SEs.
- :func:`spatial`, :func:`colocalization_heatmap`, :func:`marker_heatmap`: the spatial
  validation of recovered SEs (cells in space, :func:`ecorecover.spatial.colocalization`,
  :func:`ecorecover.marker_expression`).

Cells that recovery could not score (no model for their cell type, too few cells; recover()'s
``scored`` column / ``obs[key_added + "_scored"]``) have all-zero scores, SE ``"NonSE"`` and, as in
R, the first SE as ``InitSE``. The plots do not count them under an SE: they are left out of
:func:`scores_heatmap` and shown as their own ``"unscored"`` segment / column by
:func:`composition` and :func:`confusion_heatmap`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import _collate

__all__ = [
    "top_features", "model_heatmap", "scores_heatmap", "composition", "metrics_heatmap", "confusion_heatmap",
    "spatial", "colocalization_heatmap", "marker_heatmap",
]

_SUFFIX = ("__pos", "__neg")
#: Label of the cells recovery did not score, in composition bars and confusion columns.
UNSCORED = "unscored"


def _scored_mask(df: pd.DataFrame, key: str | None, scored_key: str | None) -> np.ndarray | None:
    """Which rows were scored: ``scored_key``, or with ``"auto"`` ``key + "_scored"`` (AnnData obs
    after recover / loocv) or ``"scored"`` (recover()'s table); None when there is no such column."""
    if scored_key == "auto":
        cands = ([f"{key}_scored"] if key is not None else []) + ["scored"]
        scored_key = next((c for c in cands if c in df.columns), None)
    if scored_key is None:
        return None
    if scored_key not in df.columns:
        raise KeyError(f"scored_key={scored_key!r} is not a column (columns: {list(df.columns)})")
    return df[scored_key].astype(bool).to_numpy()


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "ecorecover.pl needs matplotlib, an optional dependency: pip install \"ecorecover[plot]\""
        ) from e
    return plt


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _colors(n: int) -> list[Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Model


def _one_w(model: Any, cell_type: str | None) -> tuple[pd.DataFrame, str]:
    if isinstance(model, pd.DataFrame):
        return model, cell_type or "W"
    if isinstance(model, Mapping):
        names = list(model)
        if cell_type is None:
            if len(names) != 1:
                raise ValueError(f"the model has {len(names)} cell types; choose one with cell_type= (one of {names})")
            cell_type = names[0]
        if cell_type not in model:
            raise KeyError(f"cell_type={cell_type!r} is not in the model (cell types: {names})")
        return model[cell_type], cell_type
    raise TypeError(f"model must be a W DataFrame or a RecoveryModel / mapping, got {type(model).__name__}")


def top_features(w: pd.DataFrame, n_top: int = 10) -> list[tuple[str, str]]:
    """The ``n_top`` most specific features of each SE of ``w``: ``(SE, feature)`` pairs, SEs
    in ``w``'s column order, features by decreasing ``delta = W[f, SE] - max over the other
    SEs`` (the model's own selection rule), each feature at most once (under the SE where it
    peaks), only features with ``delta > 0``."""
    if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)) or n_top < 1:
        raise ValueError(f"n_top must be a positive integer, got {n_top!r}")
    v = w.to_numpy(dtype=float)
    if v.shape[1] < 2:
        raise ValueError("W needs at least two SE columns")
    out: list[tuple[str, str]] = []
    best = v.argmax(axis=1)
    for j, se in enumerate(w.columns):
        others = np.delete(v, j, axis=1).max(axis=1)
        delta = v[:, j] - others
        cand = np.flatnonzero((delta > 0) & (best == j))
        cand = cand[np.argsort(-delta[cand], kind="stable")][:n_top]
        out.extend((str(se), str(w.index[i])) for i in cand)
    return out


def model_heatmap(
    model: Any,
    *,
    cell_type: str | None = None,
    n_top: int = 10,
    standard_scale: str | None = "row",
    cmap: str = "viridis",
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Heatmap of a recovery model's W: the top ``n_top`` features of each SE (rows, grouped by
    SE) x SEs (columns).

    Parameters
    ----------
    model
        A W DataFrame (features x SEs) or a :class:`~ecorecover.RecoveryModel` / mapping.
    cell_type
        Which W of a multi-cell-type model.
    n_top
        Features per SE (see :func:`top_features`; fewer when an SE has fewer specific features).
    standard_scale
        ``"row"``: each feature divided by its maximum over SEs (shows specificity); None: raw W.
    cmap, ax, figsize
        Colour map, Axes to draw into, figure size of a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        Rows are labelled ``FEATURE`` with the SE blocks marked on the right.
    """
    w, name = _one_w(model, cell_type)
    if standard_scale not in ("row", None):
        raise ValueError(f"standard_scale must be 'row' or None, got {standard_scale!r}")
    picks = top_features(w, n_top)
    if not picks:
        raise ValueError(f"no feature of the {name!r} model is specific to one SE (delta > 0)")
    feats = [f for _, f in picks]
    sub = w.loc[feats].to_numpy(dtype=float)
    if standard_scale == "row":
        mx = sub.max(axis=1, keepdims=True)
        sub = np.divide(sub, mx, out=np.zeros_like(sub), where=mx > 0)
    n_rows, n_cols = sub.shape
    ax = _axes(ax, figsize or (1.2 + 0.45 * n_cols, 1.5 + 0.16 * n_rows))
    im = ax.imshow(sub, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(n_cols), [str(c) for c in w.columns], rotation=90)
    ax.set_yticks(range(n_rows), feats, fontsize=max(4.0, min(9.0, 400.0 / max(n_rows, 1))))
    ax.set_xlabel("SE")
    ax.set_ylabel(f"top {n_top} features per SE")
    ax.set_title(f"{name}: recovery model W")
    # SE blocks: separators between the features of consecutive SEs.
    ses = [s for s, _ in picks]
    for i in range(1, n_rows):
        if ses[i] != ses[i - 1]:
            ax.axhline(i - 0.5, color="white", linewidth=0.8)
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.6)
    cb.set_label("W / row max" if standard_scale == "row" else "W")
    return ax


# --------------------------------------------------------------------------------------------
# Recovered scores


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
        return sc.astype(float), result.obs
    raise TypeError(f"result must be a DataFrame or an AnnData, got {type(result).__name__}")


def scores_heatmap(
    result: Any,
    *,
    groupby: str | None = None,
    key: str = "SE_recovered",
    scored_key: str | None = "auto",
    max_cells: int | None = 2000,
    seed: int = 0,
    cmap: str = "magma",
    ax: Any = None,
    figsize: tuple[float, float] = (8.0, 3.5),
) -> Any:
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
    scored = _scored_mask(obs, None if is_table else key, scored_key)
    n_unscored = 0
    if scored is not None and not scored.all():
        n_unscored = int((~scored).sum())
        scores, obs = scores[scored], obs[scored]
    if groupby not in obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column (columns: {list(obs.columns)})")
    groups = obs[groupby].astype(str).to_numpy(dtype=object)
    vals = scores.to_numpy(dtype=float)
    n = len(groups)
    if n == 0:
        raise ValueError("no cells to plot")
    keep = np.arange(n)
    if max_cells is not None and n > max_cells:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(n, size=int(max_cells), replace=False))
    cols = list(scores.columns)
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
    order = np.concatenate(idx)
    img = vals[order].T
    ax = _axes(ax, figsize)
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


# --------------------------------------------------------------------------------------------
# Composition


def composition(
    data: Any,
    *,
    groupby: str | None = "Sample",
    key: str | None = "SE",
    normalize: bool = True,
    order: Sequence[str] | None = None,
    scored_key: str | None = "auto",
    unscored: str | None = UNSCORED,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
    legend: bool = True,
) -> Any:
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
    if groupby is None or key is None:
        table = data.astype(float)
        if (table.to_numpy() < 0).any():
            raise ValueError("a wide table for composition() must be non-negative")
        ylab = "abundance"
    else:
        for what, k in (("groupby", groupby), ("key", key)):
            if k not in data.columns:
                raise KeyError(f"{what}={k!r} is not a column (columns: {list(data.columns)})")
        g = data[groupby].astype(str)
        s = data[key].astype(str)
        scored = _scored_mask(data, key, scored_key)
        if scored is not None:
            s = s.where(scored, unscored if unscored is not None else None).dropna()
            g = g.loc[s.index]
        table = pd.crosstab(g, s).astype(float)
        cols = _collate.collate_sorted(set(table.columns) - {unscored})
        table = table.loc[_collate.collate_sorted(table.index), cols + ([unscored] if unscored in table.columns else [])]
        ylab = "cells"
    if order is not None:
        missing = [o for o in order if o not in table.index]
        if missing:
            raise KeyError(f"order names bars that are not in the data: {missing[:5]}")
        table = table.loc[list(order)]
    if normalize:
        tot = table.sum(axis=1).to_numpy()[:, None]
        table = pd.DataFrame(
            np.divide(table.to_numpy(), tot, out=np.zeros(table.shape), where=tot > 0), index=table.index, columns=table.columns
        )
        ylab = "fraction of cells" if ylab == "cells" else "fraction"
    n_bars, n_seg = table.shape
    ax = _axes(ax, figsize or (2.0 + 0.45 * n_bars, 4.0))
    x = np.arange(n_bars)
    bottom = np.zeros(n_bars)
    for color, col in zip(_colors(n_seg), table.columns):
        v = table[col].to_numpy()
        ax.bar(x, v, bottom=bottom, color=color, label=str(col), width=0.8)
        bottom += v
    ax.set_xticks(x, [str(i) for i in table.index], rotation=90 if n_bars > 6 else 0)
    ax.set_xlabel(groupby if groupby is not None and key is not None else (table.index.name or "sample"))
    ax.set_ylabel(ylab)
    ax.set_title(f"{key} composition" if key is not None and groupby is not None else "composition")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                  title=key if key is not None and groupby is not None else None)
    ax.set_xlim(-0.6, n_bars - 0.4)
    return ax


# --------------------------------------------------------------------------------------------
# Metrics


def _matrix_heatmap(m: pd.DataFrame, ax: Any, cmap: str, annotate: bool | None, fmt: str, vmin: float | None,
                    vmax: float | None, figsize: tuple[float, float] | None, cbar_label: str) -> Any:
    vals = m.to_numpy(dtype=float)
    n_rows, n_cols = vals.shape
    ax = _axes(ax, figsize or (1.5 + 0.42 * n_cols, 1.2 + 0.38 * n_rows))
    im = ax.imshow(vals, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_cols), [str(c) for c in m.columns], rotation=90)
    ax.set_yticks(range(n_rows), [str(i) for i in m.index])
    if annotate is None:
        annotate = n_rows * n_cols <= 400
    if annotate:
        for i in range(n_rows):
            for j in range(n_cols):
                v = vals[i, j]
                if np.isfinite(v):
                    r, g, b, _ = im.cmap(im.norm(v))  # white text on dark cells, whatever the colour map
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                            color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(cbar_label)
    return ax


def metrics_heatmap(
    m: pd.DataFrame,
    *,
    cmap: str = "Blues",
    annotate: bool | None = None,
    fmt: str = ".2f",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
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
    metric = info.get("metric", "metric") if isinstance(info, Mapping) else "metric"
    ax = _matrix_heatmap(m, ax, cmap, annotate, fmt, vmin, vmax, figsize, metric)
    ax.set_ylabel(f"true {m.index.name or 'SE'}")
    ax.set_xlabel(m.index.name or "SE")
    diag = np.diag(m.to_numpy(dtype=float)) if m.shape[0] == m.shape[1] else np.array([np.nan])
    ax.set_title(f"{metric} (mean of diagonal {np.nanmean(diag):.2f})" if np.isfinite(diag).any() else metric)
    n_out = info.get("n_outside", 0) if isinstance(info, Mapping) else 0
    if n_out and info.get("scheme") == "r":  # R's scheme left cells out: say so under the plot
        ax.set_xlabel(f"{ax.get_xlabel()}\n({n_out} cells predicted outside the true labels or unscored are left "
                      "out, as R; metrics(scheme='all') counts them)")
    return ax


def confusion_heatmap(
    obs: Any,
    *,
    se_key: str = "SE",
    pred_key: str = "cvPred",
    scored_key: str | None = "auto",
    normalize: bool = True,
    cmap: str = "Blues",
    annotate: bool | None = None,
    ax: Any = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
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
    ok = obs[se_key].notna() & obs[pred_key].notna()
    t = obs.loc[ok, se_key].astype(str)
    p = obs.loc[ok, pred_key].astype(str)
    sc_key = (f"{pred_key}_scored" if f"{pred_key}_scored" in obs.columns else None) if scored_key == "auto" else scored_key
    scored = _scored_mask(obs.loc[ok], None, sc_key)
    if scored is not None:
        p = p.where(scored, UNSCORED)
    rows = _collate.collate_sorted(t)
    cols = rows + [c for c in _collate.collate_sorted(set(p) - {UNSCORED}) if c not in rows]
    cols += [UNSCORED] if UNSCORED in set(p) and UNSCORED not in rows else []
    tab = pd.crosstab(t, p).reindex(index=rows, columns=cols, fill_value=0).astype(float)
    if normalize:
        tot = tab.sum(axis=1).to_numpy()[:, None]
        tab = pd.DataFrame(np.divide(tab.to_numpy(), tot, out=np.zeros(tab.shape), where=tot > 0), index=rows, columns=cols)
    ax = _matrix_heatmap(tab, ax, cmap, annotate, ".2f" if normalize else ".0f", 0.0, 1.0 if normalize else None,
                         figsize, "share of true SE" if normalize else "cells")
    ax.set_ylabel(f"true {se_key}")
    ax.set_xlabel(f"predicted ({pred_key})")
    acc = float((t.to_numpy() == p.to_numpy()).mean()) if len(t) else float("nan")
    ax.set_title(f"confusion (accuracy {acc:.2f})")
    return ax


# Spatial validation (a module of its own; imported last: it builds on the helpers above)
from ._pl_spatial import colocalization_heatmap, marker_heatmap, spatial  # noqa: E402
