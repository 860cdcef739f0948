"""R's ``ComputeNormalizedMoranI``: Moran's I of each SE on the k-nearest-neighbour graph, with
permutation z-scores (SEs shuffled within cell types).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _collate, _core
from .._params import validate_params
from .inputs import SpatialInputError, SpatialWarning, check_number, codes, permutation_input, run_permutations
from .._warnings import warn

__all__ = ["moran"]


@validate_params({"progress": ["boolean"]}, where="ecorecover.spatial.moran()")
def moran(
    data: Any, *, se_key: str = "SE", celltype_key: str = "CellType", coords: Any = None, k: int = 3,
    n_perm: int = 1000, seed: int | None = None, n_jobs: int | None = None, progress: bool = True,
) -> pd.DataFrame:
    """Moran's I of each SE with permutation z-scores: R's ``ComputeNormalizedMoranI``.

    R: ``set.seed(seed); ComputeNormalizedMoranI(meta, coords, SE = se_key, CellType =
    celltype_key, nperm = n_perm, k = k, ncores = 1)``.

    Only cells of cell types with more than one SE are used (the others are dropped with a
    warning naming them). On the ``k``-nearest-neighbour graph of those cells (the cell itself
    excluded, ``spdep::knearneigh``) with row-standardised weights (``nb2listw(style = "W")``),
    ``I`` is Moran's I of each SE's 0/1 indicator (``spdep::moran``); ``zscore`` is
    ``(I - mean) / sd`` over ``n_perm`` permutations of the SE labels within cell types (cell
    types in R's sort order, one ``sample.int(n)`` each).

    Parameters
    ----------
    data
        AnnData (``.obs``) or a DataFrame of per-cell metadata.
    se_key, celltype_key
        Columns of SE labels and cell types.
    coords
        Pair of column names, or an ``.obsm`` key; default ``obsm["spatial"]`` when present,
        else ``"X"``, ``"Y"``.
    k
        Nearest neighbours per cell (the cell itself not counted), 1 <= k < cells.
    n_perm
        Permutations (>= 2).
    seed
        R's ``set.seed`` (None: a random seed, recorded in ``df.attrs["seed"]``).
    n_jobs
        Threads; results do not depend on it.
    progress
        Show a tqdm progress bar over the permutations.

    Returns
    -------
    pandas.DataFrame
        Indexed by SE (R's sort order), columns ``I`` and ``zscore``; ``attrs`` holds ``seed``,
        ``k``, ``n_perm``, ``n_cells`` and ``dropped_celltypes``.
    """
    k = check_number(k, "k", integer=True, minimum=1)
    cells = permutation_input(data, se_key, "se_key", "SE", celltype_key, coords, n_perm, progress, n_jobs, seed, "moran")
    n_perm, n_threads, seed, dropped = cells.n_perm, cells.n_threads, cells.seed, cells.dropped
    ses, types, xy, se_order = cells.labels, cells.types, cells.xy, cells.order
    if k >= len(ses):
        raise SpatialInputError(f"k={k} needs more than k cells; {len(ses)} cell(s) are left")
    core = _core.MoranTest(
        np.ascontiguousarray(xy[:, 0]),
        np.ascontiguousarray(xy[:, 1]),
        codes(ses, se_order),
        len(se_order),
        codes(types, _collate.collate_sorted(types)),
        k,
        seed,
        n_threads,
    )
    observed = core.observed()
    run_permutations(core, n_perm, n_threads, progress, "ecorecover.spatial.moran: permutations")
    mean, sd = core.moments()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (observed - mean) / sd
    if (sd == 0).any():
        warn(
            f"Moran's I of SE(s) {[se_order[i] for i in np.flatnonzero(sd == 0)]} does not vary over the "
            "permutations: z-score is inf/NaN (as in R)",
            SpatialWarning,
        )
    out = pd.DataFrame({"I": observed, "zscore": z}, index=pd.Index(se_order, name="SE"))
    out.attrs.update(
        {"seed": seed, "k": k, "n_perm": n_perm, "n_cells": int(len(ses)), "dropped_celltypes": list(dropped)}
    )
    return out
