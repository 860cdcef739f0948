"""The arguments of :func:`ecorecover.train`, checked once into one frozen record.

Every step of the training pipeline reads its settings from a :class:`TrainOptions`; the checks
(types, ranges, R's 32-bit seeds) run here, before any data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import resolve_n_jobs
from ..errors import ParameterError, ParameterTypeError

__all__ = ["TrainOptions", "check_count", "check_seed", "train_options"]


@dataclass(frozen=True)
class TrainOptions:
    """The checked arguments of :func:`ecorecover.train` (see there); ``None`` stands for R's
    ``Inf`` in ``n_features_per_se`` and ``downsample``."""

    celltype_key: str = "CellType"
    se_key: str = "SE"
    sample_key: str | None = None
    n_features: int = 300
    n_features_per_se: int | None = 50
    min_cells: int = 20
    downsample: int | None = 2500
    balance_samples: bool = True
    scale: bool = True
    seed: int = 2024
    n_runs: int = 1
    n_jobs: int | None = None
    progress: bool = True
    session_seed: int | None = None
    layer: str | None = None
    use_raw: bool = False

    @property
    def seeds(self) -> list[int]:
        """The ``set.seed`` value of each run: ``seed + r`` for run ``r``."""
        return [self.seed + r for r in range(self.n_runs)]

    def session_seed_of(self, run: int) -> int | None:
        """R's session seed before run ``run`` (``session_seed + r``), or None."""
        return None if self.session_seed is None else self.session_seed + run


def check_count(value: object, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An integer ``>= minimum``; with ``allow_none``, None or ``inf`` (R's ``Inf``) give None."""
    if value is None and allow_none:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0 and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        extra = " or None" if allow_none else ""
        raise ParameterTypeError(f"{name} must be an integer{extra}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _count(value: object, name: str, *, minimum: int = 1) -> int:
    out = check_count(value, name, minimum=minimum)
    assert out is not None  # allow_none is False
    return out


def check_seed(value: object, name: str, n_runs: int) -> int:
    """An R ``set.seed`` value such that ``value + n_runs - 1`` still fits R's 32-bit integers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    out = int(value)
    if not -(2**31) < out or not out + n_runs - 1 < 2**31:
        raise ParameterError(
            f"{name} .. {name} + n_runs - 1 must fit R's 32-bit integer range, got {name}={out}, n_runs={n_runs}"
        )
    return out


def train_options(
    *,
    celltype_key: str = "CellType",
    se_key: str = "SE",
    sample_key: str | None = None,
    n_features: object = 300,
    n_features_per_se: object = 50,
    min_cells: object = 20,
    downsample: object = 2500,
    balance_samples: bool = True,
    scale: bool = True,
    seed: object = 2024,
    n_runs: object = 1,
    n_jobs: int | None = None,
    progress: bool = True,
    session_seed: object = None,
    layer: str | None = None,
    use_raw: bool = False,
) -> TrainOptions:
    """Check :func:`ecorecover.train`'s arguments (same names and defaults) into a
    :class:`TrainOptions`; raises :class:`~ecorecover.errors.ParameterError` (a ``ValueError``)
    or :class:`~ecorecover.errors.ParameterTypeError` (a ``TypeError``) naming the argument."""
    n_features_ = _count(n_features, "n_features")
    per_se = check_count(n_features_per_se, "n_features_per_se", allow_none=True)
    min_cells_ = _count(min_cells, "min_cells", minimum=0)
    downsample_ = check_count(downsample, "downsample", allow_none=True)
    runs = _count(n_runs, "n_runs")
    first = check_seed(seed, "seed", runs)
    session = None if session_seed is None else check_seed(session_seed, "session_seed", runs)
    resolve_n_jobs(n_jobs)  # raises on 0, on too many and on non-integers
    return TrainOptions(
        celltype_key=celltype_key, se_key=se_key, sample_key=sample_key, n_features=n_features_,
        n_features_per_se=per_se, min_cells=min_cells_, downsample=downsample_,
        balance_samples=bool(balance_samples), scale=bool(scale), seed=first, n_runs=runs,
        n_jobs=None if n_jobs is None else int(n_jobs), progress=bool(progress), session_seed=session,
        layer=layer, use_raw=bool(use_raw),
    )
