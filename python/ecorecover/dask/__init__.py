"""Recovery and ensembles on a Dask cluster (``pip install ecorecover[dask]``).

:func:`recover` runs :func:`ecorecover.recover` with its work spread over the workers of a
:class:`dask.distributed.Client`, on an AnnData whose ``X`` is a dask array (for example from
``anndata.experimental.read_lazy`` or ``anndata.experimental.read_elem_lazy`` on a zarr store or
an h5ad file). :func:`train` runs :func:`ecorecover.train` with the runs of an ensemble as
tasks. Both give exactly the results of the in-process functions (same bits), whatever the
number of workers and however ``X`` is chunked.

How recovery is split
---------------------
The matrix is cut into row blocks along its row chunks (consecutive chunks are merged up to
about 4 million values of the model genes). Only the model genes of a block are read, on a
worker, and the block never leaves the cluster.

1. Statistics. Exact scaling needs, per cell type and gene, the mean and the standard
   deviation over the type's cells, and R computes them with sequential sums in cell order
   (a tree of partial sums would round differently). Each block's task extracts, in parallel,
   the non-zero values of the scored cells per (cell type, gene) slot, their counts and
   minimum / maximum (and the raw-count guard's min / max and the non-finite check); a chain
   of small fold tasks then adds the values into the running sums block after block, in cell
   order, so the sums are the in-process sums bit for bit. The fold runs where the block's
   values are; only the running sums (a few numbers per slot) move between workers. A second
   pass does the same for the squared deviations.
2. Runs. The cells of each cell type are cut into the same runs as in process; a run's rows
   are cut out of the blocks holding them (on the workers), and each run's H-steps (exact:
   KL multiplicative updates from R's seeded H0; fast: the per-cell solver) are one task.
   The client only receives the per-cell scores.

At most about two blocks and two runs per worker thread are in flight at any time, so the
memory of a worker does not grow with the number of cells.

When to use what
----------------
* **In process** (:func:`ecorecover.recover`, :func:`ecorecover.train` without ``client``):
  one machine, data in memory or backed h5ad / dask ``X`` streamed through the process;
  threads over runs (``n_jobs``). The simplest and, on one machine, the fastest.
* **Dask cluster** (this module, or ``client=`` on the same functions): data larger than one
  machine's disk or memory bandwidth, many cores on several machines, or a cluster you
  already run (``dask-jobqueue`` on Slurm / PBS, Kubernetes, Coiled). Interactive: the
  results come back to your session.
* **Slurm job array** (CLI): batch ensembles without a long-running scheduler:
  ``ecorecover train --runs R --run-index $SLURM_ARRAY_TASK_ID`` per task, then
  ``ecorecover aggregate``; recover per dataset shard with ``ecorecover recover``. Nothing to
  keep alive, each task restartable on its own.

See ``docs/distributed.md``.
"""

from __future__ import annotations

import copy as _copy
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..training import api as _tr
from ..recovery import recover as _recover
from ..recovery.engine import progress_bar, register_client_engine
from ..recovery.inputs import resolve_threads
from ..recovery.plan import RunPiece, RunPlan, join_pieces, runs_in_block
from ..recovery.solvers import RunResult, SolveJob, solve_run
from ..recovery.source import RowSource, as_csr_block, dask_columns, is_dask, is_range
from ..recovery.statistics import (
    BlockScan, Moments, Pass1Job, Pass1Part, Pass1Result, Pass2Job, RunModel, fold_squares, log_transform,
    pass1_block, pass2_block, scan_block,
)

__all__ = ["DaskEngine", "get_client", "recover", "train"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "ecorecover.dask needs dask.distributed: pip install 'ecorecover[dask]' (or 'dask[distributed]')"
        ) from e
    return distributed


def get_client(client: Any = None) -> Any:
    """``client`` itself, or the current :class:`dask.distributed.Client` when ``client`` is None.

    Raises
    ------
    ValueError
        No client is given and none is running in this process.
    TypeError
        ``client`` is not a :class:`dask.distributed.Client`.
    """
    distributed = _distributed()
    if client is None:
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError(
                "no Dask client: pass client=distributed.Client(...) (or start one first); for one machine "
                "without Dask use ecorecover.recover / ecorecover.train directly"
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return client


def recover(adata: Any, model: Mapping[str, Any], *, client: Any = None, **kwargs: Any) -> Any:
    """:func:`ecorecover.recover` on a Dask cluster.

    Parameters
    ----------
    adata
        An AnnData whose ``X`` is a dask array (cells x genes; dense or scipy-sparse chunks),
        e.g. ``anndata.experimental.read_lazy(path)`` or
        ``AnnData(X=anndata.experimental.read_elem_lazy(zarr_group["X"]), obs=..., var=...)``.
        The chunks must be readable on the workers (a zarr store or h5ad file on a shared
        file system or object store). An in-memory X (numpy or scipy) is also accepted: it is
        then cut into blocks that are sent to the workers once.
    model
        As :func:`ecorecover.recover`.
    client
        A :class:`dask.distributed.Client`; None uses the current one.
    **kwargs
        Every other argument of :func:`ecorecover.recover` (``celltype_key``, ``mode``,
        ``cells_per_run``, ``min_score``, ...). ``n_jobs`` is ignored: the parallelism is the
        cluster's (one run per worker thread).

    Returns
    -------
    As :func:`ecorecover.recover`: the same table and the same fields in ``adata``, bit for
    bit the in-process results (exact and fast modes).
    """
    resolve_threads(kwargs.get("n_jobs"))  # ignored here, but a bad value is still an error
    return _recover(adata, model, client=get_client(client), **kwargs)


def train(adata: Any, *, client: Any = None, **kwargs: Any) -> Any:
    """:func:`ecorecover.train` with the runs as tasks on a Dask cluster.

    Gene selection and scaling (shared by the runs) are done once per cell type in this
    process; each (run, cell type) pair is then a task on the cluster. The model equals the
    in-process ``train(..., n_runs=...)`` bit for bit.

    Parameters
    ----------
    adata
        As :func:`ecorecover.train` (in memory).
    client
        A :class:`dask.distributed.Client`; None uses the current one.
    **kwargs
        Every other argument of :func:`ecorecover.train` (``n_runs``, ``seed``, ...).
    """
    resolve_threads(kwargs.get("n_jobs"))  # before looking for a client
    return _tr.train(adata, client=get_client(client), **kwargs)


# --------------------------------------------------------------------------------------------
# Recovery engine: ecorecover.recovery.engine.Engine on a cluster


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
                raise ValueError(f"the expression matrix must be 2-dimensional, got shape {x.shape}")
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


register_client_engine(DaskEngine.build)
