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
from ..recovery.engine import progress_bar
from ..recovery.plan import RunPiece, RunPlan, join_pieces, runs_in_block
from ..recovery.solvers import RunResult, SolveJob, solve_run
from ..recovery.source import RowSource, as_csr_block, dask_columns, is_dask, is_range
from ..recovery.statistics import (
    BlockScan, Moments, Pass1Job, Pass1Part, Pass1Result, Pass2Job, RunModel, fold_squares, log_transform,
    pass1_block, pass2_block, scan_block,
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
        if rows.genes_by_cells:  # a genes x cells ndarray (DataFrame input)
            self.local = np.asarray(x)[rows.cols].T
        elif is_dask(x):
            if x.ndim != 2:
                raise ShapeError(f"the expression matrix must be 2-dimensional, got shape {x.shape}")
            if x.dtype.kind not in "iuf":
                raise TypeError(f"the expression matrix must hold numbers, got dtype {x.dtype}")
            self.dask = dask_columns(x, rows.cols)
        elif sp.issparse(x):
            self.local = sp.csr_matrix(x)[:, rows.cols] if not is_range(rows.cols) else sp.csr_matrix(x)
        elif isinstance(x, np.ndarray):
            self.local = x[:, rows.cols]
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


def _csr(blk: Any, fired: bool) -> sp.csr_matrix:
    return log_transform(as_csr_block(_aligned(blk), None), fired)


def _p1_map(
    blk: Any, grp: npt.NDArray[np.integer], job: Pass1Job,
) -> tuple[BlockScan | None, Pass1Part]:
    raw = as_csr_block(_aligned(blk), None)
    scan = scan_block(raw, job.find_negative) if job.first else None
    return scan, pass1_block(log_transform(raw, job.fired), grp, job.scale, job.n_groups, job.n_cols)


def _p1_small(res: tuple[BlockScan | None, Pass1Part]) -> tuple[BlockScan | None, npt.NDArray[np.bool_] | None]:
    return res[0], res[1].omitted


def _p1_fold(acc: Moments | None, res: tuple[BlockScan | None, Pass1Part], size: int) -> Moments:
    acc = Moments(size) if acc is None else _copy.deepcopy(acc)
    return acc.fold(res[1])


def _p2_map(blk: Any, grp: npt.NDArray[np.integer], mean: F64, k_cols: int, fired: bool) -> tuple[I64, F64]:
    return pass2_block(_csr(blk, fired), grp, mean, k_cols)


def _p2_fold(sq: F64 | None, part: tuple[I64, F64], size: int) -> F64:
    return fold_squares(np.zeros(size) if sq is None else sq.copy(), part)


def _extract(blk: Any, rid: I64, a: int, fired: bool) -> dict[int, RunPiece]:
    return runs_in_block(_csr(blk, fired), rid, a)


def _run_task(pieces: list[RunPiece], job: SolveJob, gi: int, ri: int, model: RunModel) -> RunResult:
    model = RunModel(model.group, _aligned(model.mean), _aligned(model.sd), _aligned(model.const))
    run = join_pieces(pieces)
    return solve_run(job, gi, ri, model, run.x, run.rows, 1)


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
        self, submit_map: Callable[[int], Any], fold: Callable[..., Any], size: int,
        small: Callable[[Any], Any] | None = None,
    ) -> tuple[Any, list[Any]]:
        """Map tasks over the blocks and a fold chain over their results in block order; at
        most ``window`` blocks ahead of the fold. Returns the last fold's result and, when
        ``small`` is given, ``small`` of every map result (gathered)."""
        distributed = _distributed()
        client = self.client
        acc = None
        folds: list[Any] = []
        smalls = []
        for i in range(len(self.bounds)):
            if i >= self.window:
                distributed.wait(folds[i - self.window])
                folds[i - self.window] = None  # keep only the last few running sums
            res = client.submit(*submit_map(i))
            if small is not None:
                smalls.append(client.submit(small, res))
            acc = client.submit(fold, acc, res, size)
            folds.append(acc)
            del res
        out = acc.result() if acc is not None else None
        return out, client.gather(smalls) if small is not None else []

    def _groups_dtype(self, n_groups: int) -> type[np.integer[Any]]:
        return np.int32 if n_groups < 2**31 else np.int64

    def pass1(self, job: Pass1Job, on_scan: Callable[[int, BlockScan], None]) -> Pass1Result:
        gor = job.group_of_row.astype(self._groups_dtype(job.n_groups))
        small_job = Pass1Job(np.zeros(0, dtype=np.int64), job.scale, job.n_groups, job.n_cols, job.first, job.fired,
                             job.find_negative)

        def p1(i: int) -> tuple[Any, ...]:
            a, b = self.bounds[i]
            return _p1_map, self._block(a, b), gor[a:b], small_job

        acc, smalls = self._chain(p1, _p1_fold, job.size, small=_p1_small)
        omitted = np.zeros(self.blocks.n, dtype=bool)
        for (a, b), (scan, om) in zip(self.bounds, smalls):
            if scan is not None:
                on_scan(a, scan)
            if om is not None:
                omitted[a:b] = om
        return Pass1Result(acc if acc is not None else Moments(job.size), omitted)

    def pass2(self, job: Pass2Job) -> F64:
        size = len(job.mean)
        mean = self.client.scatter(job.mean, broadcast=True)
        dtype = self._groups_dtype(int(job.group_of_row.max(initial=0)) + 1)

        def p2(i: int) -> tuple[Any, ...]:
            a, b = self.bounds[i]
            return _p2_map, self._block(a, b), job.group_of_row[a:b].astype(dtype), mean, job.n_cols, job.fired

        sq, _ = self._chain(p2, _p2_fold, size)
        return sq if sq is not None else np.zeros(size)

    def solve(
        self, plan: RunPlan, models: list[RunModel], job: SolveJob, *, fired: bool, progress: bool,
    ) -> list[RunResult]:
        if not plan.runs:
            return []
        distributed = _distributed()
        client = self.client
        last = plan.last_block(self.bounds)  # a run is submitted at its last block
        payloads: dict[int, Any] = {}
        pieces: dict[int, list[Any]] = {}
        pending: set[Any] = set()
        results: list[RunResult] = []
        bar = progress_bar(len(plan.runs), progress, f"ecorecover.recover: runs ({job.mode})")

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
                ext = client.submit(_extract, self._block(a, b), rid, a, fired)
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

