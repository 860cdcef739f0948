"""Training with its intermediate results, for tests: ``train`` built from the same public
steps of :mod:`ecorecover.training` that :func:`ecorecover.train` runs, also returning the
:class:`~ecorecover.training.api.Training` (prepared cell types, cells and genes per run)."""

from __future__ import annotations

from typing import Any

from ecorecover.model import RecoveryModel
from ecorecover.training.api import Training, dask_executor, run_training
from ecorecover.training.assemble import build_model
from ecorecover.training.options import train_options


def train_with_plan(data: Any, *, meta: Any = None, client: Any = None, **kw: Any) -> tuple[RecoveryModel, Training]:
    """``ecorecover.train(data, progress=False, **kw)`` and its :class:`Training`."""
    options = train_options(**{"progress": False, **kw})
    training = run_training(data, options, meta=meta, executor=None if client is None else dask_executor(client))
    return build_model(training.fits, options, training.params), training
