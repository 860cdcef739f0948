"""Where recovery's work runs: the :class:`Engine` interface, and the in-process engine.

The pipeline asks an engine for three things over the input's row blocks: pass 1 and pass 2 of
the statistics (:mod:`~ecorecover.recovery.statistics`) and the runs
(:mod:`~ecorecover.recovery.solvers`). An engine decides where each block's part is computed;
it always uses the same per-block functions and folds the parts in cell order, so every engine
gives the same bits. :class:`ThreadEngine` reads the blocks in this process and solves runs in
a thread pool; :mod:`ecorecover.dask` registers an engine for a Dask client
(:func:`register_client_engine`), which :func:`make_engine` picks when ``client`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .. import _core
from .._progress import Progress, progress_bar
from .plan import RunCells, RunPiece, RunPlan, join_pieces, runs_in_block
from .solvers import RunResult, SolveJob, solve_run
from .source import Block, RowSource
from .statistics import (
    BlockScan, Moments, Pass1Job, Pass1Result, Pass2Job, RunModel, pass1_block, pass2_block,
)

__all__ = [
    "Engine", "EngineFactory", "Progress", "ThreadEngine", "make_engine", "register_client_engine", "runs_bar",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Engine(Protocol):
    """What the recovery pipeline needs of an execution engine (see the module docstring)."""

    def pass1(self, job: Pass1Job, on_scan: Callable[[int, BlockScan], None]) -> Pass1Result:
        """Pass 1 over every block. With ``job.first``, ``on_scan(first row, scan)`` is called
        for every block in cell order (it raises on bad data)."""
        ...

    def pass2(self, job: Pass2Job) -> F64:
        """Pass 2 over every block: the squared deviations per slot, folded in cell order."""
        ...

    def solve(
        self, plan: RunPlan, models: list[RunModel], job: SolveJob, *, fired: bool, progress: bool,
    ) -> list[RunResult]:
        """Every run of ``plan``; the results sorted by (group, run)."""
        ...


#: Builds an engine from the input's row source, its block size, the thread count and a client.
EngineFactory = Callable[[RowSource, int, int, Any], Engine]
_client_engine: list[EngineFactory] = []


def register_client_engine(factory: EngineFactory) -> None:
    """Make ``factory`` the engine of ``recover(..., client=...)`` (done by :mod:`ecorecover.dask`)."""
    _client_engine[:] = [factory]


def make_engine(source: RowSource, block_size: int, threads: int, client: Any = None) -> Engine:
    """The in-process engine, or (``client`` given) the registered client engine."""
    if client is None:
        return ThreadEngine(source, block_size, threads)
    if not _client_engine:
        raise ImportError("client= runs recovery on Dask: import ecorecover.dask (pip install 'ecorecover[dask]')")
    return _client_engine[0](source, block_size, threads, client)


def runs_bar(plan: RunPlan, job: SolveJob, enabled: bool) -> Progress:
    """The progress bar over the runs of ``plan`` that every engine shows (made by
    :func:`ecorecover._progress.progress_bar`: nothing when not ``enabled`` or off a terminal)."""
    return progress_bar(len(plan.runs), desc=f"ecorecover.recover: runs ({job.mode})", unit="run", enabled=enabled)


class ThreadEngine:
    """Blocks read in this process, in order (an in-memory input is one block, read in place);
    runs solved in a pool of ``threads`` threads."""

    def __init__(self, source: RowSource, block_size: int, threads: int) -> None:
        self.source, self.block_size, self.threads = source, block_size, threads

    def _blocks(self) -> Iterator[Block]:
        if self.source.in_memory:
            yield self.source.whole()
        else:
            yield from self.source.blocks(self.block_size)

    def pass1(self, job: Pass1Job, on_scan: Callable[[int, BlockScan], None]) -> Pass1Result:
        acc = Moments(job.size)
        omitted = np.zeros(self.source.n, dtype=bool)
        for blk in self._blocks():
            grp = job.group_of_row[blk.a : blk.b]
            scan = pass1_block(blk, grp, job, acc, omitted[blk.a : blk.b], self.threads)
            if job.first:
                on_scan(blk.a, scan)
        return Pass1Result(acc, omitted)

    def pass2(self, job: Pass2Job) -> F64:
        sq: F64 = np.zeros(len(job.mean))
        for blk in self._blocks():
            pass2_block(blk, job.group_of_row[blk.a : blk.b], job, sq, self.threads)
        return sq

    def _run_cells(self, plan: RunPlan, models: list[RunModel], fired: bool) -> Iterator[tuple[int, RunCells, I64]]:
        """(run, its cells, its input rows) in the order the runs complete."""
        src = self.source
        if src.in_memory:  # every run read in place, straight from the input
            for r, (gi, _, _) in enumerate(plan.runs):
                yield r, RunCells(src.matrix, plan.rows[r], src.cols[models[gi].group.cols], fired), plan.rows[r]
            return
        group_cols = [m.group.cols for m in models]
        pieces: dict[int, list[RunPiece]] = {}
        filled = np.zeros(len(plan.runs), dtype=np.int64)
        for blk in src.blocks(self.block_size):
            rid = plan.run_of_row[blk.a : blk.b]
            if not (rid >= 0).any():
                continue
            for r, piece in runs_in_block(blk, rid, plan.runs, group_cols, fired, self.threads).items():
                pieces.setdefault(r, []).append(piece)
                filled[r] += len(piece.rows)
                if filled[r] == plan.runs[r].size:
                    cells, rows = join_pieces(pieces.pop(r))
                    yield r, cells, rows

    def solve(
        self, plan: RunPlan, models: list[RunModel], job: SolveJob, *, fired: bool, progress: bool,
    ) -> list[RunResult]:
        if not plan.runs:
            return []
        n_workers = max(1, min(self.threads, len(plan.runs)))
        kernel_threads = max(1, self.threads // n_workers)
        pending: set[Future[RunResult]] = set()
        results: list[RunResult] = []
        bar = runs_bar(plan, job, progress)
        # The workers' kernels never see Ctrl-C (only the main thread does): cancelling this token
        # stops the ones still running within milliseconds when the loop below is left early.
        cancel = _core.CancelToken()

        def collect(done: set[Future[RunResult]]) -> None:
            for f in done:
                results.append(f.result())
                bar.update(1)

        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            try:
                for r, cells, rows in self._run_cells(plan, models, fired):
                    gi, ri, _ = plan.runs[r]
                    pending.add(pool.submit(cancel.run, solve_run, job, gi, ri, models[gi], cells, rows, kernel_threads))
                    while len(pending) >= 2 * n_workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        collect(done)
                done, pending = wait(pending)
                collect(done)
            finally:
                cancel.cancel()
                for f in pending:
                    f.cancel()
                bar.close()
        return sorted(results, key=lambda r: (r.group, r.run))
