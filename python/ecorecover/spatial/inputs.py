"""The checked input of the spatial permutation tests: labels, coordinates, options, and the run.

Reads the cells' labels, cell types and 2-d coordinates (from an AnnData or a DataFrame),
checks the options shared by :func:`~ecorecover.spatial.colocalization` and
:func:`~ecorecover.spatial.moran`, drops cell types whose cells share one label (as R does), and
runs a core permutation test with an optional progress bar.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .. import _collate
from .._labels import label_column
from .._validation import resolve_n_jobs
from ..errors import EcorecoverError, ParameterError, ParameterTypeError
from .._progress import progress_bar
from .._warnings import warn

__all__ = [
    "Cells",
    "SpatialColumnError",
    "SpatialInputError",
    "SpatialParameterError",
    "SpatialWarning",
    "check_number",
    "codes",
    "coordinates",
    "labels",
    "obs_of",
    "permutation_input",
    "run_permutations",
]

#: Permutations per call into the core when a progress bar is shown.
_PROGRESS_STEPS = 100


class SpatialInputError(EcorecoverError, ValueError):
    """The data cannot be used for a spatial statistic (columns, coordinates, labels, parameters)."""


class SpatialParameterError(SpatialInputError, ParameterError):
    """A parameter of a spatial statistic is out of its range (also a :class:`ParameterError`)."""


class SpatialColumnError(SpatialInputError, KeyError):
    """A column or ``.obsm`` key named by an argument is missing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SpatialWarning(UserWarning):
    """Something was dropped as R drops it (cell types in one state, states without neighbours)."""


def obs_of(data: Any) -> pd.DataFrame:
    """The per-cell metadata: ``data`` itself (a DataFrame) or its ``.obs`` (an AnnData)."""
    if isinstance(data, pd.DataFrame):
        return data
    obs = getattr(data, "obs", None)
    if isinstance(obs, pd.DataFrame):
        return obs
    raise ParameterTypeError(f"data must be an AnnData or a DataFrame of per-cell metadata, got {type(data).__name__}")


def coordinates(data: Any, coords: Any = None) -> np.ndarray:
    """The cells' 2-d coordinates (n x 2 float64) that ``coords`` names.

    ``coords``: a pair of column names (of the DataFrame or ``adata.obs``), or an ``.obsm`` key;
    default ``obsm["spatial"]`` when present, else the columns ``"X"``, ``"Y"``.
    """
    obs = obs_of(data)
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
            raise ParameterTypeError(f"coords must be an .obsm key or a pair of column names, got {coords!r}")
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


def labels(obs: pd.DataFrame, key: str, what: str) -> np.ndarray:
    """The labels of column ``key`` as strings (missing labels refused)."""
    return label_column(obs, key, what, column_error=SpatialColumnError, error=SpatialInputError)[0]


def codes(values: np.ndarray, order: list[str]) -> np.ndarray:
    """``values`` as uint32 positions in ``order``."""
    lookup = {v: i for i, v in enumerate(order)}
    return np.fromiter((lookup[v] for v in values), dtype=np.uint32, count=len(values))


def check_number(v: Any, name: str, *, integer: bool, minimum: float, strict: bool = False) -> Any:
    """``v`` as an int (``integer``) or a float, at least ``minimum`` (above it with ``strict``)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
        raise ParameterTypeError(f"{name} must be a number, got {type(v).__name__}")
    if integer and (isinstance(v, (float, np.floating)) and (not math.isfinite(v) or v != int(v))):
        raise SpatialParameterError(f"{name} must be a whole number, got {v}")
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        raise SpatialParameterError(f"{name} must not be NaN")
    if v < minimum or (strict and v == minimum):
        raise SpatialParameterError(f"{name} must be {'>' if strict else '>='} {minimum}, got {v}")
    return int(v) if integer else float(v)


def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbelow(2**31 - 1) + 1
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ParameterTypeError(f"seed must be an integer or None, got {type(seed).__name__}")
    if not -(2**31) < int(seed) < 2**31:
        raise SpatialParameterError(f"seed must fit R's 32-bit integer (|seed| < 2^31), got {seed}")
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
        warn(
            f"dropped cell type(s) whose cells all share one {label_what} (as R does; a within-cell-type "
            f"permutation cannot move them): {', '.join(dropped)}",
            SpatialWarning,
        )
    return keep, dropped


@dataclass
class Cells:
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


def permutation_input(data: Any, key: str, key_what: str, label_what: str, celltype_key: str, coords: Any,
                      n_perm: Any, progress: Any, n_jobs: Any, seed: Any, who: str) -> Cells:
    """Check the options shared by :func:`colocalization` and :func:`moran` and read their cells."""
    obs = obs_of(data)
    n_perm = check_number(n_perm, "n_perm", integer=True, minimum=2)
    n_threads = resolve_n_jobs(n_jobs)
    seed = _resolve_seed(seed)
    labels_all = labels(obs, key, key_what)
    types_all = labels(obs, celltype_key, "celltype_key")
    xy_all = coordinates(data, coords)
    keep, dropped = _drop_single_label_groups(labels_all, types_all, label_what)
    kept = labels_all[keep]
    order = _collate.collate_sorted(kept)
    if len(order) < 2:
        raise SpatialInputError(
            f"{who} needs at least two {label_what}s in cell types with more than one {label_what}; "
            f"found {len(order)} ({order})"
        )
    return Cells(kept, types_all[keep], xy_all[keep], order, dropped, n_perm, n_threads, seed)


class _Test(Protocol):
    """A core permutation test: ``run`` draws and evaluates more permutations."""

    def run(self, n_perm: int, n_threads: int | None) -> None: ...


def run_permutations(test: _Test, n_perm: int, n_threads: int | None, progress: bool, desc: str) -> None:
    if not progress:
        test.run(n_perm, n_threads)
        return
    step = max(1, -(-n_perm // _PROGRESS_STEPS))
    bar = progress_bar(n_perm, desc=desc, unit="perm")
    try:
        done = 0
        while done < n_perm:
            k = min(step, n_perm - done)
            test.run(k, n_threads)
            done += k
            bar.update(k)
    finally:
        bar.close()

