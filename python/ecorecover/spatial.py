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
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from . import _collate, _core
from ._labels import label_column
from ._validation import resolve_n_jobs

__all__ = [
    "ColocalizationResult",
    "SpatialInputError",
    "SpatialWarning",
    "cell_states",
    "colocalization",
    "moran",
]

#: Permutations per call into the core when a progress bar is shown.
_PROGRESS_STEPS = 100


class SpatialInputError(ValueError):
    """The data cannot be used for a spatial statistic (columns, coordinates, labels, parameters)."""


class SpatialColumnError(SpatialInputError, KeyError):
    """A column or ``.obsm`` key named by an argument is missing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SpatialWarning(UserWarning):
    """Something was dropped as R drops it (cell types in one state, states without neighbours)."""


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


# --------------------------------------------------------------------------------------------
# Input


def _obs(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    obs = getattr(data, "obs", None)
    if isinstance(obs, pd.DataFrame):
        return obs
    raise TypeError(f"data must be an AnnData or a DataFrame of per-cell metadata, got {type(data).__name__}")


def _coordinates(data: Any, coords: Any = None) -> np.ndarray:
    """The cells' 2-d coordinates (n x 2 float64) that ``coords`` names.

    ``coords``: a pair of column names (of the DataFrame or ``adata.obs``), or an ``.obsm`` key;
    default ``obsm["spatial"]`` when present, else the columns ``"X"``, ``"Y"``.
    """
    obs = _obs(data)
    obsm = None if isinstance(data, pd.DataFrame) else getattr(data, "obsm", None)
    if coords is None:
        coords = "spatial" if obsm is not None and "spatial" in obsm else ("X", "Y")
    if isinstance(coords, str):
        if obsm is None:
            raise SpatialColumnError(
                f"coords={coords!r} names an .obsm key, but data is a DataFrame; give two column names, "
                "e.g. coords=('X', 'Y')"
            )
        if coords not in obsm:
            raise SpatialColumnError(
                f"coords={coords!r} is not a key of adata.obsm (keys: {list(obsm.keys())}); give an .obsm key "
                "or two columns of adata.obs"
            )
        xy = obsm[coords]
        xy = xy.to_numpy() if hasattr(xy, "to_numpy") else np.asarray(xy)
        where = f"adata.obsm[{coords!r}]"
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise SpatialInputError(f"{where} must have 2 columns (x, y), got shape {xy.shape}")
    else:
        if not isinstance(coords, Sequence) or len(coords) != 2 or not all(isinstance(c, str) for c in coords):
            raise TypeError(f"coords must be an .obsm key or a pair of column names, got {coords!r}")
        missing = [c for c in coords if c not in obs.columns]
        if missing:
            raise SpatialColumnError(
                f"coordinate column(s) {missing} not found (columns: {list(obs.columns)[:20]}); pass "
                "coords=('x_column', 'y_column') or an .obsm key"
            )
        where = f"columns {list(coords)}"
        xy = np.column_stack([obs[c].to_numpy() for c in coords])
    if xy.dtype.kind not in "iuf":
        try:
            xy = xy.astype(np.float64)
        except (TypeError, ValueError):
            raise SpatialInputError(f"coordinates ({where}) must be numbers, got dtype {xy.dtype}") from None
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        first = obs.index[int(np.argmax(bad))]
        raise SpatialInputError(
            f"coordinates ({where}) of {int(bad.sum())} cell(s) are missing or not finite, first cell {first!r}; "
            "drop those cells first"
        )
    return xy


def _labels(obs: pd.DataFrame, key: str, what: str) -> np.ndarray:
    return label_column(obs, key, what, column_error=SpatialColumnError, error=SpatialInputError)[0]


def _codes(values: np.ndarray, order: list[str]) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(order)}
    return np.fromiter((lookup[v] for v in values), dtype=np.uint32, count=len(values))


def _check_number(v: Any, name: str, *, integer: bool, minimum: float, strict: bool = False) -> Any:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if integer and (isinstance(v, (float, np.floating)) and (not math.isfinite(v) or v != int(v))):
        raise SpatialInputError(f"{name} must be a whole number, got {v}")
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        raise SpatialInputError(f"{name} must not be NaN")
    if v < minimum or (strict and v == minimum):
        raise SpatialInputError(f"{name} must be {'>' if strict else '>='} {minimum}, got {v}")
    return int(v) if integer else float(v)


def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbelow(2**31 - 1) + 1
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}")
    if not -(2**31) < int(seed) < 2**31:
        raise SpatialInputError(f"seed must fit R's 32-bit integer (|seed| < 2^31), got {seed}")
    return int(seed)


def _drop_single_label_groups(
    labels: np.ndarray, groups: np.ndarray, label_what: str
) -> tuple[np.ndarray, list[str]]:
    """Mask of cells to keep: cells of groups with more than one distinct label."""
    frame = pd.DataFrame({"l": labels, "g": groups})
    n = frame.groupby("g", sort=False)["l"].nunique()
    dropped = _collate.collate_sorted(n.index[n < 2])
    keep = ~np.isin(groups, np.asarray(dropped, dtype=object)) if dropped else np.ones(len(labels), bool)
    if dropped:
        warnings.warn(
            f"dropped cell type(s) whose cells all share one {label_what} (as R does; a within-cell-type "
            f"permutation cannot move them): {', '.join(dropped)}",
            SpatialWarning,
            stacklevel=3,
        )
    return keep, dropped


@dataclass
class _Cells:
    """The checked input of a permutation test: labels, cell types and coordinates of the cells
    kept (cell types with more than one label), the label order, and the run options."""

    labels: np.ndarray
    types: np.ndarray
    xy: np.ndarray
    order: list[str]
    dropped: list[str]
    n_perm: int
    n_threads: int | None
    seed: int


def _permutation_input(data: Any, key: str, key_what: str, label_what: str, celltype_key: str, coords: Any,
                       n_perm: Any, progress: Any, n_jobs: Any, seed: Any, who: str) -> _Cells:
    """Check the options shared by :func:`colocalization` and :func:`moran` and read their cells."""
    obs = _obs(data)
    n_perm = _check_number(n_perm, "n_perm", integer=True, minimum=2)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    n_threads = resolve_n_jobs(n_jobs)
    seed = _resolve_seed(seed)
    labels_all = _labels(obs, key, key_what)
    types_all = _labels(obs, celltype_key, "celltype_key")
    xy_all = _coordinates(data, coords)
    keep, dropped = _drop_single_label_groups(labels_all, types_all, label_what)
    labels = labels_all[keep]
    order = _collate.collate_sorted(labels)
    if len(order) < 2:
        raise SpatialInputError(
            f"{who} needs at least two {label_what}s in cell types with more than one {label_what}; "
            f"found {len(order)} ({order})"
        )
    return _Cells(labels, types_all[keep], xy_all[keep], order, dropped, n_perm, n_threads, seed)


def _run(test: Any, n_perm: int, n_threads: int | None, progress: bool, desc: str) -> None:
    if not progress:
        test.run(n_perm, n_threads)
        return
    from tqdm.auto import tqdm

    step = max(1, -(-n_perm // _PROGRESS_STEPS))
    with tqdm(total=n_perm, desc=desc, unit="perm", leave=False, disable=None) as bar:  # quiet off a terminal
        done = 0
        while done < n_perm:
            k = min(step, n_perm - done)
            test.run(k, n_threads)
            done += k
            bar.update(k)


# --------------------------------------------------------------------------------------------
# Public API


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
    obs = _obs(data)
    se = _labels(obs, se_key, "se_key")
    ct = _labels(obs, celltype_key, "celltype_key")
    bad = sorted({s for s in se if "_" in s})
    if bad:
        warnings.warn(
            f"SE label(s) {bad[:5]} contain '_': colocalization() reads a state's SE as the part before the "
            "first '_', as R does, so these SEs would be split",
            SpatialWarning,
            stacklevel=2,
        )
    return pd.Series([f"{a}_{b}" for a, b in zip(se, ct)], index=obs.index, name="CellState", dtype=object)


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
    radius = _check_number(radius, "radius", integer=False, minimum=0.0, strict=True)
    k = _check_number(k, "k", integer=True, minimum=2)
    min_cells = _check_number(min_cells, "min_cells", integer=True, minimum=1)
    if not isinstance(test, (bool, np.bool_)):
        raise TypeError(f"test must be True or False, got {test!r}")
    cells = _permutation_input(data, state_key, "state_key", "cell state", celltype_key, coords, n_perm, progress, n_jobs,
                               seed, "colocalization")
    n_perm, n_threads, seed, dropped = cells.n_perm, cells.n_threads, cells.seed, cells.dropped
    states, types, xy, state_order = cells.labels, cells.types, cells.xy, cells.order
    type_order = _collate.collate_sorted(types)
    n = len(states)
    k_eff = min(k, n)
    core = _core.ColocalizationTest(
        np.ascontiguousarray(xy[:, 0]),
        np.ascontiguousarray(xy[:, 1]),
        _codes(states, state_order),
        len(state_order),
        _codes(types, type_order),
        k_eff - 1,
        radius,
        min_cells,
        seed,
        n_threads,
    )
    s = len(state_order)
    obs_m = core.observed().reshape(s, s)
    kept_per_state = core.kept_per_state()
    empty = [state_order[i] for i in np.flatnonzero(kept_per_state == 0)]
    if empty:
        warnings.warn(
            f"{len(empty)} cell state(s) have no cell with at least min_cells={min_cells} neighbours within "
            f"radius={radius}: their rows are NaN (as in R) and their z-scores 0: {', '.join(empty)}",
            SpatialWarning,
            stacklevel=2,
        )
    _run(core, n_perm, n_threads, progress, "ecorecover.spatial.colocalization: permutations")
    mean, sd = core.moments()
    mean, sd = mean.reshape(s, s), sd.reshape(s, s)
    sd = np.where(sd == 0, 1.0, sd)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (obs_m - mean) / sd
    z[np.isnan(z)] = 0.0

    pvalues = se_z = None
    if test:
        se_of_state = [st.split("_", 1)[0] for st in state_order]
        se_order = _collate.collate_sorted(se_of_state)
        se_codes = _codes(np.asarray(se_of_state, dtype=object), se_order)
        zs = core.coassociation(np.ascontiguousarray(z.ravel()), se_codes, len(se_order), n_perm)
        se_z = pd.Series(zs, index=pd.Index(se_order, name="SE"), name="Zscore")
        pvalues = pd.Series(2.0 * ndtr(-np.abs(zs)), index=se_z.index.copy(), name="Pval")
        if np.isnan(zs).any():
            warnings.warn(
                f"the within-SE test is undefined (NaN) for SE(s) {list(se_z.index[np.isnan(zs)])}: their "
                "permutation null has no spread",
                SpatialWarning,
                stacklevel=2,
            )

    index = pd.Index(state_order, name="state")
    n_kept, n_edges = core.sizes()
    return ColocalizationResult(
        observed=pd.DataFrame(obs_m, index=index, columns=index.copy()),
        zscores=pd.DataFrame(z, index=index.copy(), columns=index.copy()),
        pvalues=pvalues,
        se_zscores=se_z,
        seed=seed,
        radius=radius,
        k=k,
        min_cells=min_cells,
        n_perm=n_perm,
        test=bool(test),
        state_key=state_key,
        celltype_key=celltype_key,
        coords=coords,
        dropped_celltypes=dropped,
        empty_states=empty,
        n_cells=n,
        n_kept=int(n_kept),
        n_edges=int(n_edges),
    )


def moran(
    data: Any,
    *,
    se_key: str = "SE",
    celltype_key: str = "CellType",
    coords: Any = None,
    k: int = 3,
    n_perm: int = 1000,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
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
    k = _check_number(k, "k", integer=True, minimum=1)
    cells = _permutation_input(data, se_key, "se_key", "SE", celltype_key, coords, n_perm, progress, n_jobs, seed, "moran")
    n_perm, n_threads, seed, dropped = cells.n_perm, cells.n_threads, cells.seed, cells.dropped
    ses, types, xy, se_order = cells.labels, cells.types, cells.xy, cells.order
    if k >= len(ses):
        raise SpatialInputError(f"k={k} needs more than k cells; {len(ses)} cell(s) are left")
    core = _core.MoranTest(
        np.ascontiguousarray(xy[:, 0]),
        np.ascontiguousarray(xy[:, 1]),
        _codes(ses, se_order),
        len(se_order),
        _codes(types, _collate.collate_sorted(types)),
        k,
        seed,
        n_threads,
    )
    observed = core.observed()
    _run(core, n_perm, n_threads, progress, "ecorecover.spatial.moran: permutations")
    mean, sd = core.moments()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (observed - mean) / sd
    if (sd == 0).any():
        warnings.warn(
            f"Moran's I of SE(s) {[se_order[i] for i in np.flatnonzero(sd == 0)]} does not vary over the "
            "permutations: z-score is inf/NaN (as in R)",
            SpatialWarning,
            stacklevel=2,
        )
    out = pd.DataFrame({"I": observed, "zscore": z}, index=pd.Index(se_order, name="SE"))
    out.attrs.update(
        {"seed": seed, "k": k, "n_perm": n_perm, "n_cells": int(len(ses)), "dropped_celltypes": list(dropped)}
    )
    return out
