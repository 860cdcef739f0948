"""Plots of recovery models, recovered SEs and validation metrics (matplotlib).

Every function draws into ``ax`` (a new figure when ``ax`` is None) and returns the
:class:`matplotlib.axes.Axes` it drew on (``ax.figure`` is the Figure). Nothing here calls
``plt.show()``: in a notebook the figure appears by itself; in a script, call
``ax.figure.savefig(...)`` or ``plt.show()`` yourself.

matplotlib is an optional dependency, imported only when a function is called:
``pip install "ecorecover[plot]"``.

- :func:`model_heatmap`: a model's W, the top features of each SE (module ``model``).
- :func:`scores_heatmap`: recovered SE scores per cell, cells grouped by their SE (``scores``).
- :func:`composition`: stacked bars of SE composition per sample / cell type (or of
  deconvolved abundances per bulk sample) (``bars``).
- :func:`metrics_heatmap`: a :func:`ecorecover.metrics` matrix; :func:`confusion_heatmap`: true
  vs predicted SEs (``metrics``).
- :func:`spatial`, :func:`colocalization_heatmap`, :func:`marker_heatmap`: the spatial
  validation of recovered SEs (cells in space, :func:`ecorecover.spatial.colocalization`,
  :func:`ecorecover.marker_expression`) (``spatial_plots``).

Shared drawing helpers are in ``common``.

Cells that recovery could not score (no model for their cell type, too few cells; recover()'s
``scored`` column / ``obs[key_added + "_scored"]``) have all-zero scores, SE ``"NonSE"`` and, as in
R, the first SE as ``InitSE``. The plots do not count them under an SE: they are left out of
:func:`scores_heatmap` and shown as their own ``"unscored"`` segment / column by
:func:`composition` and :func:`confusion_heatmap`.
"""

from __future__ import annotations

from .bars import composition
from .common import UNSCORED
from .metrics import confusion_heatmap, metrics_heatmap
from .model import model_heatmap, top_features
from .scores import scores_heatmap
from .spatial_plots import colocalization_heatmap, marker_heatmap, spatial

__all__ = [
    "top_features", "model_heatmap", "scores_heatmap", "composition", "metrics_heatmap", "confusion_heatmap",
    "spatial", "colocalization_heatmap", "marker_heatmap", "UNSCORED",
]
