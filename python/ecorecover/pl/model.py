"""Plots of a recovery model: :func:`top_features` (the model's most specific features per SE)
and :func:`model_heatmap` (W restricted to them)."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._params import Interval, StrOptions, validate_params
from .common import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["top_features", "model_heatmap"]


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
        w: pd.DataFrame = model[cell_type]
        return w, cell_type
    raise TypeError(f"model must be a W DataFrame or a RecoveryModel / mapping, got {type(model).__name__}")


@validate_params({"n_top": [Interval(Integral, 1, None)]}, where="ecorecover.pl.top_features()")
def top_features(w: pd.DataFrame, n_top: int = 10) -> list[tuple[str, str]]:
    """The ``n_top`` most specific features of each SE of ``w``: ``(SE, feature)`` pairs, SEs
    in ``w``'s column order, features by decreasing ``delta = W[f, SE] - max over the other
    SEs`` (the model's own selection rule), each feature at most once (under the SE where it
    peaks), only features with ``delta > 0``."""
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
        out.extend((str(se), str(w.index[int(i)])) for i in cand)
    return out


@validate_params({"n_top": [Interval(Integral, 1, None)], "standard_scale": [StrOptions({"row"}), None]},
                 where="ecorecover.pl.model_heatmap()")
def model_heatmap(
    model: Any,
    *,
    cell_type: str | None = None,
    n_top: int = 10,
    standard_scale: str | None = "row",
    cmap: str = "viridis",
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
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
    picks = top_features(w, n_top)
    if not picks:
        raise ValueError(f"no feature of the {name!r} model is specific to one SE (delta > 0)")
    feats = [f for _, f in picks]
    sub = w.loc[feats].to_numpy(dtype=float)
    if standard_scale == "row":
        mx = sub.max(axis=1, keepdims=True)
        sub = np.divide(sub, mx, out=np.zeros_like(sub), where=mx > 0)
    n_rows, n_cols = sub.shape
    ax = new_axes(ax, figsize or (1.2 + 0.45 * n_cols, 1.5 + 0.16 * n_rows))
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
