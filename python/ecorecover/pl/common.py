"""Shared drawing helpers of :mod:`ecorecover.pl`: the lazy matplotlib import, new Axes, colours,
the annotated matrix heatmap, and which cells recovery scored.

matplotlib is imported only inside these helpers, when a plot is drawn, so ``import
ecorecover.pl`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["UNSCORED", "new_axes", "new_grid", "colors", "matrix_heatmap", "scored_mask"]

#: Label of the cells recovery did not score, in composition bars and confusion columns.
UNSCORED = "unscored"

#: An RGBA colour as matplotlib's colour maps return it.
RGBA = tuple[float, float, float, float]


def require_matplotlib() -> None:
    """Raise an ImportError that says how to install matplotlib when it is missing."""
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "ecorecover.pl needs matplotlib, an optional dependency: pip install \"ecorecover[plot]\""
        ) from e


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new figure of size ``figsize``."""
    if ax is not None:
        return ax
    require_matplotlib()
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=figsize, layout="constrained")
    return new


def new_grid(nrow: int, ncol: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A new figure with an ``nrow`` x ``ncol`` array of Axes."""
    require_matplotlib()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrow, ncol, figsize=figsize, squeeze=False, layout="constrained")
    return fig, np.asarray(axes)


def colors(n: int) -> list[RGBA]:
    """``n`` categorical colours (tab10 up to 10, else tab20, repeating)."""
    require_matplotlib()
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def scored_mask(df: pd.DataFrame, key: str | None, scored_key: str | None) -> np.ndarray | None:
    """Which rows were scored: ``scored_key``, or with ``"auto"`` ``key + "_scored"`` (AnnData obs
    after recover / loocv) or ``"scored"`` (recover()'s table); None when there is no such column."""
    if scored_key == "auto":
        cands = ([f"{key}_scored"] if key is not None else []) + ["scored"]
        scored_key = next((c for c in cands if c in df.columns), None)
    if scored_key is None:
        return None
    if scored_key not in df.columns:
        raise KeyError(f"scored_key={scored_key!r} is not a column (columns: {list(df.columns)})")
    return np.asarray(df[scored_key].astype(bool).to_numpy())


def matrix_heatmap(m: pd.DataFrame, ax: Axes | None, cmap: str, annotate: bool | None, fmt: str,
                   vmin: float | None, vmax: float | None, figsize: tuple[float, float] | None,
                   cbar_label: str) -> Axes:
    """A labelled heatmap of ``m`` with a colour bar, the values written in the cells when
    ``annotate`` (None: when at most 400 cells), in white on dark cells."""
    vals = m.to_numpy(dtype=float)
    n_rows, n_cols = vals.shape
    ax = new_axes(ax, figsize or (1.5 + 0.42 * n_cols, 1.2 + 0.38 * n_rows))
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
                    r, g, b, _ = _rgba(im.cmap(im.norm(v)))  # white text on dark cells, whatever the colour map
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                            color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(cbar_label)
    return ax


def _rgba(colour: Any) -> RGBA:
    r, g, b, a = colour
    return float(r), float(g), float(b), float(a)
