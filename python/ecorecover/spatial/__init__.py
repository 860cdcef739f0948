"""Spatial validation of recovered SEs: colocalization of cell states and Moran's I.

R SpatialEcoTyper's tutorial checks recovered spatial ecotypes (SEs) in space with
``Colocalization`` (do the cell states of one SE sit next to each other more than chance?) and
``ComputeNormalizedMoranI`` (is each SE spatially clustered?). This module reproduces both,
permutation for permutation: ``seed=s`` gives what R gives after ``set.seed(s)`` with
``ncores = 1``.

- :func:`colocalization`: for each cell, the fraction of its neighbours (the ``k - 1`` nearest
  other cells within ``radius``) in each cell state, averaged per state; z-scores against
  permutations of the states within each cell type; per SE, a test of the mean z-score among
  its own states against random column permutations of the z matrix.
- :func:`moran`: Moran's I of each SE's 0/1 indicator on the ``k``-nearest-neighbour graph with
  row-standardised weights, and its z-score against permutations of the SEs within cell types.
- :func:`cell_states`: the ``"<SE>_<CellType>"`` labels :func:`colocalization` works on.

The neighbour graph is built once (a k-d tree in Rust) and reused by every permutation; a
permutation only relabels cells, so it costs one pass over the graph's edges. The permutations
are drawn one after the other from R's Mersenne-Twister stream (as R draws them) and evaluated
in parallel; results are identical for any ``n_jobs``.

Neighbours and ties: distances are Euclidean, computed as ``sqrt(dx**2 + dy**2)``; a neighbour
is within ``radius`` when that distance is ``<= radius``. When several cells are at exactly the
same distance from a cell at the cut-off of its ``k`` nearest, the ones that come first in the
data (lower row position) are taken; a cell is never its own neighbour, even when other cells
share its coordinates. R's ``RANN::nn2`` / ``spdep::knearneigh`` order exact ties by their k-d
tree's traversal instead (the fixtures used to check this module have no exact ties, so the two
agree there); with duplicated coordinates R may also list another cell at distance 0 before the
cell itself and drop that one instead of the cell.

Modules: :mod:`~ecorecover.spatial.inputs` (labels, coordinates, shared options, the permutation
run), :mod:`~ecorecover.spatial.coloc_test` and :mod:`~ecorecover.spatial.moran_test`.
"""

from __future__ import annotations

from .coloc_test import ColocalizationResult, cell_states, colocalization
from .inputs import (
    SpatialColumnError as SpatialColumnError,
    SpatialInputError,
    SpatialParameterError as SpatialParameterError,
    SpatialWarning,
    coordinates as _coordinates,  # used by ecorecover.pl
)
from .moran_test import moran

__all__ = [
    "ColocalizationResult",
    "SpatialInputError",
    "SpatialWarning",
    "cell_states",
    "colocalization",
    "moran",
]
