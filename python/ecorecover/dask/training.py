"""The runs of a training ensemble as tasks on a Dask cluster (see :func:`ecorecover.dask.train`).

:class:`DaskRunExecutor` implements :class:`ecorecover.training.ensemble.RunExecutor`: each
prepared cell type is scattered to the cluster once, and every (run, cell type) item is one task.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..training.ensemble import RunFunction, RunItem, RunProgress
from ..training.fit import RunResult
from ..training.plan import Prepared
from . import get_client

__all__ = ["DaskRunExecutor"]


class DaskRunExecutor:
    """Run the (run, cell type) items of a training as tasks on ``client``'s cluster (None: the
    current :class:`dask.distributed.Client`). Results are those of the in-process threads."""

    def __init__(self, client: Any = None) -> None:
        self.client = get_client(client)

    def map_runs(
        self, fn: RunFunction, prepared: Mapping[str, Prepared], items: Sequence[RunItem], *, progress: bool
    ) -> list[RunResult]:
        import distributed  # present: get_client() gave a client

        names = list(prepared)
        scattered = dict(zip(names, self.client.scatter([prepared[c] for c in names], hash=False)))
        futures = [self.client.submit(fn, scattered[it.cell_type], it, pure=False) for it in items]
        if progress:
            bar = RunProgress(items, enabled=True)
            item_of = {f.key: it for f, it in zip(futures, items)}
            try:
                for f in distributed.as_completed(futures):  # type: ignore[no-untyped-call]  # distributed is untyped here
                    bar.done(item_of[f.key])
            finally:
                bar.close()
        results: list[RunResult] = self.client.gather(futures)
        return results
