"""Recovery's engine on a Dask cluster: :class:`ecorecover.recovery.engine.Engine` with the
row blocks' parts and the runs as tasks (see :mod:`ecorecover.dask` for how the work is split).

Each task applies one of recovery's per-block functions (the same ones the in-process engine
calls) to a block that lives on a worker; the folds run in cell order, so the results are the
in-process ones bit for bit.
"""

from __future__ import annotations

import copy as _copy
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..errors import ShapeError
from ..recovery.engine import runs_bar
from ..recovery.plan import RunPiece, RunPlan, join_pieces, runs_in_block
from ..recovery.solvers import RunResult, SolveJob, solve_run
from ..recovery.source import Block, CsrArrays, RowSource, dask_columns, is_dask, kernel_matrix
from ..recovery.statistics import (
    BlockScan, Moments, Pass1Job, Pass1Result, Pass2Job, RunModel, pass1_block, pass2_block,
)
from ._client import _distributed, get_client

__all__ = ["DaskEngine"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _threads(client: Any) -> int:
    return max(1, int(sum(client.nthreads().values())))


class _Blocks:
    """The input restricted to the kept columns, cut into row blocks that live on the workers:
    a dask array's blocks are read there; an in-memory matrix's blocks are sent there."""

    def __init__(self, rows: RowSource, block_size: int) -> None:
        x = rows.x
        self.dask: Any = None
        self.local: Any = None
        self.cols = np.arange(len(rows.cols), dtype=np.int64)
        if rows.in_memory:  # numpy / scipy (or a DataFrame's genes x cells array): kept columns once
            self.local = rows.matrix[:, rows.cols]
        elif is_dask(x):
            if x.ndim != 2:
                raise ShapeError(f"the expression matrix must be 2-dimensional, got shape {x.shape}")
            if x.dtype.kind not in "iuf":
                raise TypeError(f"the expression matrix must hold numbers, got dtype {x.dtype}")
            self.dask = dask_columns(x, rows.cols)
            if self.dask is x:
                self.cols = rows.cols
        else:
            raise TypeError(
                f"recovery on a Dask cluster needs X as a dask array (or numpy / scipy in memory), got "
                f"{type(x).__module__}.{type(x).__name__}; open the file with anndata.experimental.read_lazy "
                "(or read_elem_lazy) so that the workers can read it"
            )
        self.n = int(self.local.shape[0] if self.dask is None else self.dask.shape[0])
        chunks = tuple(int(c) for c in self.dask.chunks[0]) if self.dask is not None else _even(self.n, block_size)
        self.bounds = _bounds(chunks, block_size)

    def block(self, client: Any, a: int, b: int) -> Any:
        """A future of rows a..b (kept columns) on a worker."""
        if self.dask is not None:
            return client.compute(self.dask[a:b])
        blk = self.local[a:b]
        return client.scatter(blk if sp.issparse(blk) else np.ascontiguousarray(blk), hash=False)


def _even(n: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, n - a) for a in range(0, n, size))


def _bounds(chunks: tuple[int, ...], block_size: int) -> list[tuple[int, int]]:
    """Row blocks along the row chunks: consecutive chunks merged up to ``block_size`` rows."""
    out: list[tuple[int, int]] = []
    a = b = 0
    for c in chunks:
        if b > a and b - a + c > block_size:
            out.append((a, b))
            a = b
        b += c
    if b > a:
        out.append((a, b))
    return out


# Worker-side functions (module level so that they pickle by reference): each is one of
# recovery's per-block functions applied to a block that lives on the worker.


def _aligned(a: Any) -> Any:
    """``a`` with its arrays aligned: small arrays sent between processes can arrive at odd
    addresses, which the Rust kernels (and scipy's C++ routines) do not accept."""
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        return a if a.flags.aligned and a.flags.c_contiguous else np.array(a, order="C")
    if isinstance(a, tuple):
        return tuple(_aligned(v) for v in a)
    if sp.issparse(a):
        if a.format in ("csr", "csc") and not all(v.flags.aligned for v in (a.data, a.indices, a.indptr)):
            a = a.copy()
        return a
    return a


def _block(data: Any, a: int, b: int, cols: I64) -> Block:
    return Block(kernel_matrix(_aligned(data)), 0, a, b, _aligned(cols))


P1State = tuple[Moments, BlockScan, npt.NDArray[np.bool_]]


def _p1_fold(prev: P1State | None, data: Any, a: int, b: int, cols: I64, grp: I64, job: Pass1Job) -> P1State:
    """Pass 1 over a block, carrying the running sums of the blocks before it."""
    acc = Moments(job.size) if prev is None else _copy.deepcopy(prev[0])
    omitted = np.zeros(b - a, dtype=bool)
    scan = pass1_block(_block(data, a, b, cols), _aligned(grp), job, acc, omitted, 1)
    return acc, scan, omitted


def _p1_small(state: P1State) -> tuple[BlockScan, npt.NDArray[np.bool_]]:
    return state[1], state[2]


def _p2_fold(sq: F64 | None, data: Any, a: int, b: int, cols: I64, grp: I64, job: Pass2Job) -> F64:
    out = np.zeros(len(job.mean)) if sq is None else sq.copy()
    job = Pass2Job(job.group_of_row, _aligned(job.mean), job.n_cols, job.fired)
    return pass2_block(_block(data, a, b, cols), _aligned(grp), job, out, 1)


def _extract(
    data: Any, a: int, b: int, cols: I64, rid: I64, runs: list[Any], group_cols: list[I64], fired: bool,
) -> dict[int, RunPiece]:
    return runs_in_block(_block(data, a, b, cols), _aligned(rid), runs, [_aligned(c) for c in group_cols], fired, 1)


def _run_task(pieces: list[RunPiece], job: SolveJob, gi: int, ri: int, model: RunModel) -> RunResult:
    model = RunModel(model.group, _aligned(model.mean), _aligned(model.sd), _aligned(model.const), model.features,
                     _aligned(model.in_w))
    cells, rows = join_pieces([RunPiece(_aligned(p.rows), _aligned_csr(p.x)) for p in pieces])
    return solve_run(job, gi, ri, model, cells, rows, 1)


def _aligned_csr(x: CsrArrays) -> CsrArrays:
    return CsrArrays(_aligned(x.indptr), _aligned(x.indices), _aligned(x.data), x.shape)


class DaskEngine:
    """:class:`ecorecover.recovery.engine.Engine` with the blocks' parts and the runs as tasks on
    a Dask cluster (see the module docstring)."""

    def __init__(self, source: RowSource, block_size: int, client: Any) -> None:
        self.client = get_client(client)
        self.blocks = _Blocks(source, block_size)
        self.bounds = self.blocks.bounds
        self.window = 2 * _threads(self.client)

    @classmethod
    def build(cls, source: RowSource, block_size: int, threads: int, client: Any) -> DaskEngine:
        """The engine for ``recover(..., client=client)`` (``threads``: the cluster's, ignored)."""
        return cls(source, block_size, client)

    def _block(self, a: int, b: int) -> Any:
        return self.blocks.block(self.client, a, b)

    def _chain(
        self, fold: Callable[..., Any], args: Callable[[int], tuple[Any, ...]], small: Callable[[Any], Any] | None = None,
    ) -> tuple[Any, list[Any]]:
        """A fold chain over the blocks in block order: ``fold(previous, block, a, b, cols,
        *args(i))``, each block read on a worker; at most ``window`` blocks ahead of the fold.
        Returns the last fold's result and, when ``small`` is given, ``small`` of every fold
        (gathered)."""
        distributed = _distributed()
        client = self.client
        acc = None
        folds: list[Any] = []
        smalls = []
        for i, (a, b) in enumerate(self.bounds):
            if i >= self.window:
                distributed.wait(folds[i - self.window])
                folds[i - self.window] = None  # keep only the last few running sums
            acc = client.submit(fold, acc, self._block(a, b), a, b, self.blocks.cols, *args(i), pure=False)
            if small is not None:
                smalls.append(client.submit(small, acc))
            folds.append(acc)
        out = acc.result() if acc is not None else None
        return out, client.gather(smalls) if small is not None else []

    def pass1(self, job: Pass1Job, on_scan: Callable[[int, BlockScan], None]) -> Pass1Result:
        small_job = Pass1Job(np.zeros(0, dtype=np.int64), job.scale, job.n_groups, job.n_cols, job.first, job.fired,
                             job.find_negative)

        def args(i: int) -> tuple[Any, ...]:
            a, b = self.bounds[i]
            return job.group_of_row[a:b], small_job

        state, smalls = self._chain(_p1_fold, args, small=_p1_small)
        omitted = np.zeros(self.blocks.n, dtype=bool)
        for (a, b), (scan, om) in zip(self.bounds, smalls):
            if job.first:
                on_scan(a, scan)
            omitted[a:b] = om
        return Pass1Result(state[0] if state is not None else Moments(job.size), omitted)

    def pass2(self, job: Pass2Job) -> F64:
        size = len(job.mean)
        small_job = Pass2Job(np.zeros(0, dtype=np.int64), job.mean, job.n_cols, job.fired)

        def args(i: int) -> tuple[Any, ...]:
            a, b = self.bounds[i]
            return job.group_of_row[a:b], small_job

        sq, _ = self._chain(_p2_fold, args)
        return sq if sq is not None else np.zeros(size)

    def solve(
        self, plan: RunPlan, models: list[RunModel], job: SolveJob, *, fired: bool, progress: bool,
    ) -> list[RunResult]:
        if not plan.runs:
            return []
        distributed = _distributed()
        client = self.client
        last = plan.last_block(self.bounds)  # a run is submitted at its last block
        group_cols = [m.group.cols for m in models]
        payloads: dict[int, Any] = {}
        pieces: dict[int, list[Any]] = {}
        pending: set[Any] = set()
        results: list[RunResult] = []
        bar = runs_bar(plan, job, progress)

        def collect(done: Any) -> None:
            for f in done:
                results.append(f.result())
                bar.update(1)

        try:
            for i, (a, b) in enumerate(self.bounds):
                rid = plan.run_of_row[a:b]
                present = np.unique(rid[rid >= 0])
                if present.size == 0:
                    continue
                ext = client.submit(_extract, self._block(a, b), a, b, self.blocks.cols, rid, plan.runs, group_cols, fired)
                for r in present.tolist():
                    pieces.setdefault(r, []).append(client.submit(operator.getitem, ext, r))
                del ext
                for r in present[last[present] == i].tolist():
                    gi, ri, _ = plan.runs[r]
                    if gi not in payloads:
                        payloads[gi] = client.scatter(models[gi], broadcast=True, hash=False)
                    pending.add(client.submit(_run_task, pieces.pop(r), job, gi, ri, payloads[gi], pure=False))
                    while len(pending) >= self.window:
                        done = distributed.wait(pending, return_when="FIRST_COMPLETED")
                        pending = set(done.not_done)
                        collect(done.done)
            done = distributed.wait(pending)
            pending = set()
            collect(done.done)
        finally:
            for f in pending:
                f.cancel()
            bar.close()
        return sorted(results, key=lambda r: (r.group, r.run))

