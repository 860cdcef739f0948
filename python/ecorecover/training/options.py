"""The arguments of :func:`ecorecover.train`, checked once into one frozen record.

Every step of the training pipeline reads its settings from a :class:`TrainOptions`. What each
argument accepts is declared in :data:`TRAIN_PARAMS` (checked by :func:`ecorecover.train`'s
``_params.validate_params`` decorator); R's 32-bit seeds, which depend on ``n_runs``, are checked
here, before any data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from .._params import Interval
from ..errors import ParameterError

__all__ = ["TRAIN_PARAMS", "TrainOptions", "check_seed", "r_inf_as_none", "train_options"]


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


#: What each argument of :func:`ecorecover.train` accepts (checked in this order; ``inf``, R's
#: ``Inf``, means None for ``n_features_per_se`` and ``downsample``). Seeds are integers whose
#: ``seed + n_runs - 1`` must also fit R's 32-bit integers (:func:`check_seed`).
TRAIN_PARAMS: dict[str, list[Any]] = {
    "n_features": [Interval(Integral, 1, None)],
    "n_features_per_se": [Interval(Integral, 1, None), None, "inf"],
    "min_cells": [Interval(Integral, 0, None)],
    "downsample": [Interval(Integral, 1, None), None, "inf"],
    "n_runs": [Interval(Integral, 1, None)],
    "seed": [Interval(Integral, None, None)],
    "session_seed": [Interval(Integral, None, None), None],
    "n_jobs": ["n_jobs"],
    "balance_samples": ["boolean"],
    "scale": ["boolean"],
    "progress": ["boolean"],
    "use_raw": ["boolean"],
}


def r_inf_as_none(value: object) -> object:
    """R's ``Inf`` (``float("inf")``) as None, for the counts where None means no limit."""
    return None if isinstance(value, float) and math.isinf(value) and value > 0 else value


def check_seed(value: int, name: str, n_runs: int, where: str = "ecorecover.train()") -> int:
    """An R ``set.seed`` value (an integer) such that ``value + n_runs - 1`` still fits R's
    32-bit integers."""
    out = int(value)
    if not -(2**31) < out or not out + n_runs - 1 < 2**31:
        raise ParameterError(
            f"{where}: {name} .. {name} + n_runs - 1 must fit R's 32-bit integer range, got {name}={out}, n_runs={n_runs}"
        )
    return out


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]  # checked by TRAIN_PARAMS


def train_options(
    *,
    celltype_key: str = "CellType",
    se_key: str = "SE",
    sample_key: str | None = None,
    n_features: object = 300,
    n_features_per_se: object = 50,
    min_cells: object = 20,
    downsample: object = 2500,
    balance_samples: object = True,
    scale: object = True,
    seed: object = 2024,
    n_runs: object = 1,
    n_jobs: object = None,
    progress: object = True,
    session_seed: object = None,
    layer: str | None = None,
    use_raw: object = False,
) -> TrainOptions:
    """:func:`ecorecover.train`'s arguments (same names and defaults; already checked against
    :data:`TRAIN_PARAMS`) as a :class:`TrainOptions`: R's ``Inf`` as None, and the seeds checked
    against R's 32-bit range (:class:`~ecorecover.errors.ParameterError`)."""
    values: dict[str, Any] = dict(
        n_features=n_features, n_features_per_se=r_inf_as_none(n_features_per_se), min_cells=min_cells,
        downsample=r_inf_as_none(downsample), n_runs=n_runs, seed=seed, session_seed=session_seed, n_jobs=n_jobs,
        balance_samples=balance_samples, scale=scale, progress=progress, use_raw=use_raw,
    )
    runs = int(values["n_runs"])
    return TrainOptions(
        celltype_key=celltype_key, se_key=se_key, sample_key=sample_key, n_features=int(values["n_features"]),
        n_features_per_se=_opt_int(values["n_features_per_se"]), min_cells=int(values["min_cells"]),
        downsample=_opt_int(values["downsample"]), balance_samples=bool(balance_samples), scale=bool(scale),
        seed=check_seed(values["seed"], "seed", runs), n_runs=runs, n_jobs=_opt_int(n_jobs),
        progress=bool(progress),
        session_seed=None if session_seed is None else check_seed(values["session_seed"], "session_seed", runs),
        layer=layer, use_raw=bool(use_raw),
    )
