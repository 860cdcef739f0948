"""Running the (run, cell type) pairs of a training, in threads or on any other executor.

A :class:`RunExecutor` maps a run function over :class:`RunItem`\\ s (one run of one cell
type); :class:`ThreadRunExecutor` does it in this process, :mod:`ecorecover.dask` provides one
for a Dask cluster. :func:`fit_cell_types` prepares every cell type, builds the items (seeds
and R's session streams) and collects the results per run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from .._progress import progress_bar, progress_iter
from .fit import RunOptions, RunResult, fit_run
from .plan import Prepared
from .streams import Stream, run_streams

__all__ = [
    "RunExecutor", "RunFunction", "RunItem", "RunProgress", "ThreadRunExecutor", "fit_cell_types", "fit_item",
]


@dataclass(frozen=True)
class RunItem:
    """One run of one cell type: run index, cell type, R's seed and where its W0 starts."""

    run: int
    cell_type: str
    seed: int
    stream: Stream | None = None


#: ``fn(prepared[item.cell_type], item)``: a module-level callable (picklable), see :func:`fit_item`.
RunFunction = Callable[[Prepared, RunItem], RunResult]


class RunExecutor(Protocol):
    """Computes ``[fn(prepared[item.cell_type], item) for item in items]`` somewhere, in order
    (the results must not depend on where: every item is deterministic on its own)."""

    def map_runs(
        self, fn: RunFunction, prepared: Mapping[str, Prepared], items: Sequence[RunItem], *, progress: bool
    ) -> list[RunResult]: ...


def fit_item(prep: Prepared, item: RunItem, *, options: RunOptions) -> RunResult:
    """The run function of training: :func:`ecorecover.training.fit.fit_run` for one item."""
    return fit_run(prep, item.seed, options, item.stream)


class RunProgress:
    """A progress bar over the runs: a run counts when all its cell types are done."""

    def __init__(self, items: Sequence[RunItem], *, enabled: bool) -> None:
        self._left: dict[int, int] = {}
        for it in items:
            self._left[it.run] = self._left.get(it.run, 0) + 1
        self._bar = progress_bar(len(self._left), desc="ecorecover.train: runs", unit="run", enabled=enabled, leave=True)

    def done(self, item: RunItem) -> None:
        """One item finished."""
        self._left[item.run] -= 1
        if self._left[item.run] == 0:
            self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


class ThreadRunExecutor:
    """:class:`RunExecutor` on a pool of ``n_threads`` threads in this process (the Rust core
    releases the GIL)."""

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def map_runs(
        self, fn: RunFunction, prepared: Mapping[str, Prepared], items: Sequence[RunItem], *, progress: bool
    ) -> list[RunResult]:
        with ThreadPoolExecutor(max_workers=self.n_threads) as ex:
            futures = [ex.submit(fn, prepared[it.cell_type], it) for it in items]
            item_of = {f: it for f, it in zip(futures, items)}
            bar = RunProgress(items, enabled=progress)
            try:
                for f in as_completed(futures):
                    bar.done(item_of[f])
            finally:
                bar.close()
            return [f.result() for f in futures]


@dataclass
class CellTypeFits:
    """Every cell type prepared (or turned down, with the reason) and its results per run."""

    prepared: dict[str, Prepared]
    runs: list[dict[str, RunResult]]
    skipped: dict[str, str]


def fit_cell_types(
    prepare: Callable[[str], Prepared | str],
    cell_types: list[str],
    *,
    seeds: list[int],
    session_seed: int | None,
    options: RunOptions,
    executor: RunExecutor | None,
    n_threads: int,
    progress: bool,
) -> CellTypeFits:
    """Prepare every cell type and train it for every seed (run ``r``: ``seeds[r]``, R's session
    seed ``session_seed + r``): the preparation on ``n_threads`` threads, the runs on
    ``executor`` (None: the same threads)."""
    fn: RunFunction = functools.partial(fit_item, options=options)
    with ThreadPoolExecutor(max_workers=n_threads) as ex:
        n = len(cell_types)
        bar: dict[str, Any] = dict(total=n, desc="ecorecover.train: cell types", unit="cell type", enabled=progress, leave=True)
        if len(seeds) == 1 and executor is None and session_seed is None:  # one task per cell type

            def both(c: str) -> tuple[Prepared | str, RunResult | None]:
                p = prepare(c)
                return p, (None if isinstance(p, str) else fn(p, RunItem(0, c, seeds[0])))

            out = CellTypeFits({}, [{}], {})
            for c, (p, res) in zip(cell_types, list(progress_iter(ex.map(both, cell_types), **bar))):
                if isinstance(p, str) or res is None:
                    out.skipped[c] = str(p)
                else:
                    out.prepared[c], out.runs[0][c] = p, res
            return out
        out = CellTypeFits({}, [{} for _ in seeds], {})
        for c, p in zip(cell_types, list(progress_iter(ex.map(prepare, cell_types), **bar))):
            if isinstance(p, str):
                out.skipped[c] = p
            else:
                out.prepared[c] = p
    if not out.prepared:
        return out
    items = _items(out.prepared, seeds, session_seed, options)
    runner = executor if executor is not None else ThreadRunExecutor(n_threads)
    for it, res in zip(items, runner.map_runs(fn, out.prepared, items, progress=progress)):
        out.runs[it.run][it.cell_type] = res
    return out


def _items(
    prepared: Mapping[str, Prepared], seeds: list[int], session_seed: int | None, options: RunOptions
) -> list[RunItem]:
    """The (run, cell type) items, runs in order and R's cell-type order within each run."""
    items: list[RunItem] = []
    for r, s in enumerate(seeds):
        streams = run_streams(prepared, s, None if session_seed is None else session_seed + r, options.draw)
        items.extend(RunItem(r, c, s, streams[c]) for c in prepared)
    return items
