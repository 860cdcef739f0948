"""R's ``Colocalization``: do the cell states of one SE sit next to each other more than chance?

:func:`cell_states` builds the ``"<SE>_<CellType>"`` labels; :func:`colocalization` computes the
observed colocalization index on the neighbour graph, its permutation z-scores, and the within-SE
test, as named steps over the core's ``ColocalizationTest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .. import _collate, _core
from .._params import validate_params
from .inputs import Cells, SpatialWarning, check_number, codes, labels, obs_of, permutation_input, run_permutations
from .._warnings import warn

__all__ = ["ColocalizationResult", "cell_states", "colocalization"]


@dataclass
class ColocalizationResult:
    """What :func:`colocalization` returns.

    Attributes
    ----------
    observed
        states x states colocalization index: entry ``(a, b)`` is the mean fraction of state-``b``
        neighbours around the cells of state ``a`` (rows and columns in R's sort order). A state
        none of whose cells has ``min_cells`` neighbours has a NaN row (R's 0/0), except 0 in the
        columns of states that never occur as a neighbour.
    zscores
        states x states: ``(observed - mean) / sd`` over the permutations (sd 0 -> 1, NaN -> 0).
    pvalues, se_zscores
        Per SE (state name up to its first ``"_"``): the two-sided normal p-value and signed
        z-score of the within-SE test; None when ``test=False``.
    seed
        The seed used (R's ``set.seed``), also when it was drawn at random.
    """

    observed: pd.DataFrame
    zscores: pd.DataFrame
    pvalues: pd.Series | None
    se_zscores: pd.Series | None
    seed: int
    radius: float
    k: int
    min_cells: int
    n_perm: int
    test: bool
    state_key: str
    celltype_key: str
    coords: Any
    dropped_celltypes: list[str] = field(default_factory=list)
    empty_states: list[str] = field(default_factory=list)
    n_cells: int = 0
    n_kept: int = 0
    n_edges: int = 0

    @property
    def test_table(self) -> pd.DataFrame | None:
        """R's ``CoassociationTest`` table: columns ``Pval`` and ``Zscore``, one row per SE."""
        if self.pvalues is None or self.se_zscores is None:
            return None
        return pd.DataFrame({"Pval": self.pvalues, "Zscore": self.se_zscores})

    def __repr__(self) -> str:
        test = "" if self.pvalues is None else f", test on {len(self.pvalues)} SEs"
        return (
            f"ColocalizationResult({self.observed.shape[0]} states, {self.n_perm} permutations, seed={self.seed}, "
            f"radius={self.radius}, k={self.k}, min_cells={self.min_cells}{test})"
        )


def cell_states(data: Any, *, se_key: str = "SE", celltype_key: str = "CellType") -> pd.Series:
    """Cell states ``"<SE>_<CellType>"`` (R's ``paste0(SE, "_", CellType)``), one per cell.

    Parameters
    ----------
    data
        AnnData or a DataFrame of per-cell metadata.
    se_key, celltype_key
        Columns with the (recovered) SE and the cell type of each cell.

    Returns
    -------
    pandas.Series
        Named ``"CellState"``, indexed as the cells. The SE of a state is read back as the part
        before the first ``"_"``, so SE labels should not contain ``"_"`` (a warning says so).
    """
    obs = obs_of(data)
    se = labels(obs, se_key, "se_key")
    ct = labels(obs, celltype_key, "celltype_key")
    bad = sorted({s for s in se if "_" in s})
    if bad:
        warn(
            f"SE label(s) {bad[:5]} contain '_': colocalization() reads a state's SE as the part before the "
            "first '_', as R does, so these SEs would be split",
            SpatialWarning,
        )
    return pd.Series([f"{a}_{b}" for a, b in zip(se, ct)], index=obs.index, name="CellState", dtype=object)


@validate_params({"test": ["boolean"], "progress": ["boolean"]}, where="ecorecover.spatial.colocalization()")
def colocalization(
    data: Any,
    *,
    state_key: str = "CellState",
    celltype_key: str = "CellType",
    coords: Any = None,
    radius: float = 50.0,
    k: int = 200,
    min_cells: int = 10,
    n_perm: int = 1000,
    test: bool = True,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
) -> ColocalizationResult:
    """Colocalization of cell states with permutation z-scores: R's ``Colocalization``.

    R: ``set.seed(seed); Colocalization(meta, coords, CellState = state_key, CellType =
    celltype_key, radius, k, min.cell = min_cells, nperm = n_perm, test, ncores = 1)``.

    1. Cell types whose cells are all in one state are dropped (warning naming them).
    2. Neighbours of each cell: its ``k`` nearest cells (``RANN::nn2``, the cell itself
       included, so ``k - 1`` others), those farther than ``radius`` removed. Cells with fewer
       than ``min_cells`` neighbours are not scored (they still count as neighbours of others).
    3. Observed index: per scored cell, the fraction of its neighbours in each state; averaged
       over the scored cells of each state. States with no scored cell get a NaN row (warning).
    4. ``n_perm`` permutations shuffle the states within each cell type (cell types in R's sort
       order, cells in data order, one ``sample.int(n)`` each); z = (observed - mean) / sd
       (sd 0 -> 1; NaN, e.g. a state without scored cells in some permutation, -> 0).
    5. ``test=True``: per SE (state name up to its first ``"_"``), the mean z-score among its
       own states (a block of the z matrix, diagonal included) against ``n_perm`` random column
       permutations of the z matrix; ``se_zscores`` = (observed - mean) / sd of that null,
       ``pvalues`` = two-sided normal p-values.

    Parameters
    ----------
    data
        AnnData (``.obs`` holds the columns) or a DataFrame of per-cell metadata.
    state_key, celltype_key
        Columns of cell states (``"<SE>_<CellType>"``, see :func:`cell_states`) and cell types.
    coords
        Pair of column names, or an ``.obsm`` key; default ``obsm["spatial"]`` when present,
        else the columns ``"X"``, ``"Y"``.
    radius
        Neighbourhood radius (same units as the coordinates), > 0.
    k
        Neighbours per cell including the cell itself (R's ``nn2`` k), >= 2; capped at the
        number of cells.
    min_cells
        Minimum number of neighbours for a cell to be scored (>= 1).
    n_perm
        Permutations (>= 2).
    test
        Also run the within-SE test (``pvalues``, ``se_zscores``).
    seed
        R's ``set.seed``: ``seed=s`` reproduces R's result with ``set.seed(s)`` just before the
        call. None draws a random seed, recorded in the result.
    n_jobs
        Threads (None: all cores; -1 all, -2 all but one...). Results do not depend on it.
    progress
        Show a tqdm progress bar over the permutations.

    Returns
    -------
    ColocalizationResult

    Raises
    ------
    KeyError (SpatialColumnError)
        A named column or ``.obsm`` key is missing.
    ValueError (SpatialInputError)
        Missing labels or coordinates, fewer than two states left, bad parameters.
    """
    radius = check_number(radius, "radius", integer=False, minimum=0.0, strict=True)
    k = check_number(k, "k", integer=True, minimum=2)
    min_cells = check_number(min_cells, "min_cells", integer=True, minimum=1)
    cells = permutation_input(data, state_key, "state_key", "cell state", celltype_key, coords, n_perm, progress, n_jobs,
                              seed, "colocalization")
    core = _colocalization_test(cells, k, radius, min_cells)
    s = len(cells.order)
    obs_m = core.observed().reshape(s, s)
    empty = _warn_empty_states(core, cells.order, min_cells, radius)
    run_permutations(core, cells.n_perm, cells.n_threads, progress, "ecorecover.spatial.colocalization: permutations")
    z = _zscores(core, obs_m, s)
    pvalues, se_z = _within_se_test(core, z, cells.order, cells.n_perm) if test else (None, None)
    index = pd.Index(cells.order, name="state")
    n_kept, n_edges = core.sizes()
    return ColocalizationResult(
        observed=pd.DataFrame(obs_m, index=index, columns=index.copy()),
        zscores=pd.DataFrame(z, index=index.copy(), columns=index.copy()),
        pvalues=pvalues,
        se_zscores=se_z,
        seed=cells.seed,
        radius=radius,
        k=k,
        min_cells=min_cells,
        n_perm=cells.n_perm,
        test=bool(test),
        state_key=state_key,
        celltype_key=celltype_key,
        coords=coords,
        dropped_celltypes=cells.dropped,
        empty_states=empty,
        n_cells=len(cells.labels),
        n_kept=int(n_kept),
        n_edges=int(n_edges),
    )


def _colocalization_test(cells: Cells, k: int, radius: float, min_cells: int) -> Any:
    """The core's test on the kept cells: neighbour graph (``k`` nearest including the cell,
    within ``radius``), scored cells, observed index."""
    k_eff = min(k, len(cells.labels))
    return _core.ColocalizationTest(
        np.ascontiguousarray(cells.xy[:, 0]),
        np.ascontiguousarray(cells.xy[:, 1]),
        codes(cells.labels, cells.order),
        len(cells.order),
        codes(cells.types, _collate.collate_sorted(cells.types)),
        k_eff - 1,
        radius,
        min_cells,
        cells.seed,
        cells.n_threads,
    )


def _warn_empty_states(core: Any, state_order: list[str], min_cells: int, radius: float) -> list[str]:
    """States without a scored cell (NaN rows, as in R), with a warning naming them."""
    kept_per_state = core.kept_per_state()
    empty = [state_order[i] for i in np.flatnonzero(kept_per_state == 0)]
    if empty:
        warn(
            f"{len(empty)} cell state(s) have no cell with at least min_cells={min_cells} neighbours within "
            f"radius={radius}: their rows are NaN (as in R) and their z-scores 0: {', '.join(empty)}",
            SpatialWarning,
        )
    return empty


def _zscores(core: Any, obs_m: np.ndarray, s: int) -> np.ndarray:
    """(observed - mean) / sd over the permutations; sd 0 -> 1, NaN -> 0 (R's rules)."""
    mean, sd = core.moments()
    mean, sd = mean.reshape(s, s), sd.reshape(s, s)
    sd = np.where(sd == 0, 1.0, sd)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (obs_m - mean) / sd
    z[np.isnan(z)] = 0.0
    out: np.ndarray = z
    return out


def _within_se_test(core: Any, z: np.ndarray, state_order: list[str], n_perm: int) -> tuple[pd.Series, pd.Series]:
    """(p-values, z-scores) per SE of the mean z-score among its own states against random
    column permutations of the z matrix (R's ``CoassociationTest``)."""
    se_of_state = [st.split("_", 1)[0] for st in state_order]
    se_order = _collate.collate_sorted(se_of_state)
    se_codes = codes(np.asarray(se_of_state, dtype=object), se_order)
    zs = core.coassociation(np.ascontiguousarray(z.ravel()), se_codes, len(se_order), n_perm)
    se_z = pd.Series(zs, index=pd.Index(se_order, name="SE"), name="Zscore")
    pvalues = pd.Series(2.0 * ndtr(-np.abs(zs)), index=se_z.index.copy(), name="Pval")
    if np.isnan(zs).any():
        warn(
            f"the within-SE test is undefined (NaN) for SE(s) {list(se_z.index[np.isnan(zs)])}: their "
            "permutation null has no spread",
            SpatialWarning,
        )
    return pvalues, se_z
