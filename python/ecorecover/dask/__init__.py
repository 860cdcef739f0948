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
import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _recover as _rec
from ..training import api as _tr
from .._validation import resolve_n_jobs

__all__ = ["recover", "train", "get_client"]


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
    resolve_n_jobs(kwargs.get("n_jobs"))  # ignored here, but a bad value is still an error
    return _rec.recover(adata, model, client=get_client(client), **kwargs)


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
    resolve_n_jobs(kwargs.get("n_jobs"))  # before looking for a client
    return _tr.train(adata, client=get_client(client), **kwargs)


# --------------------------------------------------------------------------------------------
# Recovery engine


def _threads(client: Any) -> int:
    return max(1, int(sum(client.nthreads().values())))


class _Source:
    """The input restricted to the kept columns, cut into row blocks that live on the workers:
    a dask array's blocks are read there; an in-memory matrix's blocks are sent there."""

    def __init__(self, rows: _rec._Rows, block_size: int) -> None:
        x = rows.x
        self.dask: Any = None
        self.local: Any = None
        if rows.genes_by_cells:  # a genes x cells ndarray (DataFrame input)
            self.local = np.asarray(x)[rows.cols].T
        elif _rec._is_dask(x):
            if x.ndim != 2:
                raise ValueError(f"the expression matrix must be 2-dimensional, got shape {x.shape}")
            if x.dtype.kind not in "iuf":
                raise TypeError(f"the expression matrix must hold numbers, got dtype {x.dtype}")
            self.dask = _rec._dask_columns(x, rows.cols)
        elif sp.issparse(x):
            self.local = sp.csr_matrix(x)[:, rows.cols] if not _rec._is_range(rows.cols) else sp.csr_matrix(x)
        elif isinstance(x, np.ndarray):
            self.local = x[:, rows.cols]
        else:
            raise TypeError(
                f"recovery on a Dask cluster needs X as a dask array (or numpy / scipy in memory), got "
                f"{type(x).__module__}.{type(x).__name__}; open the file with anndata.experimental.read_lazy "
                "(or read_elem_lazy) so that the workers can read it"
            )
        n = self.local.shape[0] if self.dask is None else self.dask.shape[0]
        chunks = tuple(int(c) for c in self.dask.chunks[0]) if self.dask is not None else _even(n, block_size)
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


# Worker-side functions (module level so that they pickle by reference).


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


def _p1_map(blk: Any, grp: np.ndarray, scale: bool, g_n: int, k_cols: int, first: bool, fired: bool) -> tuple:
    blk = _rec._as_csr_block(_aligned(blk), None)
    scan = bad = None
    if first:
        bad = _rec._first_nonfinite(blk)
        scan = _rec._scan_block(blk)
    part = _rec._pass1_block(_rec._transform(blk, fired), grp, scale, g_n, k_cols)
    return scan, bad, part


def _p1_small(res: tuple) -> tuple:
    scan, bad, part = res
    return scan, bad, part.omitted


def _p1_fold(acc: _rec._Moments1 | None, res: tuple, size: int) -> _rec._Moments1:
    acc = _rec._Moments1(size) if acc is None else _copy.deepcopy(acc)
    return acc.fold(res[2])


def _p2_map(blk: Any, grp: np.ndarray, mean: np.ndarray, k_cols: int, fired: bool) -> tuple[np.ndarray, np.ndarray]:
    blk = _rec._transform(_rec._as_csr_block(_aligned(blk), None), fired)
    return _rec._pass2_block(blk, grp, mean, k_cols)


def _p2_fold(sq: np.ndarray | None, part: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    sq = np.zeros(size) if sq is None else sq.copy()
    np.add.at(sq, part[0], part[1])
    return sq


def _extract(blk: Any, rid: np.ndarray, a: int, fired: bool) -> dict[int, tuple[np.ndarray, sp.csr_matrix]]:
    """The rows of each run in the block: run -> (global rows, CSR of those rows)."""
    blk = _rec._transform(_rec._as_csr_block(_aligned(blk), None), fired)
    out = {}
    for r in np.unique(rid[rid >= 0]):
        local = np.flatnonzero(rid == r)
        out[int(r)] = (local + a, blk[local])
    return out


def _run_task(
    pieces: list[tuple[np.ndarray, sp.csr_matrix]], mode: str, gi: int, ri: int, payload: tuple,
    sum_to_one: bool, details: bool,
) -> _rec._RunResult:
    g, mean, sd, const = payload
    mean, sd, const = _aligned(mean), _aligned(sd), _aligned(const)
    rows = np.concatenate([p[0] for p in pieces])
    x = sp.vstack([p[1] for p in pieces], format="csr")
    return _rec._solve_run(mode, gi, ri, g, x, rows, mean, sd, const, sum_to_one, 1, details)  # type: ignore[arg-type]


class _DaskEngine(_rec._Engine):
    """:class:`ecorecover._recover._Engine` with its passes as tasks on a Dask cluster."""

    def __init__(self, rows: _rec._Rows, groups: list, group_of_row: np.ndarray, *, client: Any, **kw: Any) -> None:
        super().__init__(rows, groups, group_of_row, **kw)
        self.client = get_client(client)
        self.source = _Source(rows, self.block_size)
        self.bounds = self.source.bounds
        self.window = 2 * _threads(self.client)

    def _block(self, a: int, b: int) -> Any:
        return self.source.block(self.client, a, b)

    def _chain(self, n_blocks: int, submit_map: Any, fold: Any, size: int, small: Any = None) -> tuple[Any, list]:
        """Map tasks over the blocks and a fold chain over their results in block order; at
        most ``window`` blocks ahead of the fold. Returns the last fold's result and, when
        ``small`` is given, ``small`` of every map result (gathered)."""
        distributed = _distributed()
        client = self.client
        acc = None
        folds: list[Any] = []
        smalls = []
        for i in range(n_blocks):
            if i >= self.window:
                distributed.wait(folds[i - self.window])
                folds[i - self.window] = None  # keep only the last few running sums
            res = submit_map(i)
            if small is not None:
                smalls.append(client.submit(small, res))
            acc = client.submit(fold, acc, res, size)
            folds.append(acc)
            del res
        out = acc.result() if acc is not None else None
        return out, client.gather(smalls) if small is not None else []

    def statistics(self) -> None:
        client = self.client
        g_n, k_cols = len(self.groups), len(self.rows.cols)
        size = g_n * k_cols
        gor = self.gor.astype(np.int32 if len(self.groups) < 2**31 else np.int64)
        for attempt in range(2):
            first, fired = attempt == 0, self.guard_fired

            def p1(i: int, first: bool = first, fired: bool = fired) -> Any:
                a, b = self.bounds[i]
                return client.submit(_p1_map, self._block(a, b), gor[a:b], self.scale, g_n, k_cols, first, fired)

            acc, smalls = self._chain(len(self.bounds), p1, _p1_fold, size, small=_p1_small)
            if acc is None:
                acc = _rec._Moments1(size)
            self.omitted[:] = False
            mn, mx, any_implicit_zero = np.inf, -np.inf, False
            for (a, b), (scan, bad, om) in zip(self.bounds, smalls):
                if first:
                    if bad is not None:
                        self._raise_nonfinite(a, *bad)
                    mn, mx, any_implicit_zero = min(mn, scan[0]), max(mx, scan[1]), any_implicit_zero or scan[2]
                if om is not None:
                    self.omitted[a:b] = om
            if first:
                self._check_negative(mn)
            if first and self.guard and self._guard_fires(mn, mx, any_implicit_zero):
                self.guard_fired = True
                continue
            break
        self._finish_pass1(acc)
        if not self.scale:
            return
        mean = client.scatter(self.mean, broadcast=True)
        fired = self.guard_fired

        def p2(i: int) -> Any:
            a, b = self.bounds[i]
            return client.submit(_p2_map, self._block(a, b), self._scored_groups(a, b).astype(gor.dtype), mean, k_cols, fired)

        sq, _ = self._chain(len(self.bounds), p2, _p2_fold, size)
        self._finish_pass2(sq if sq is not None else np.zeros(size))

    def run(self) -> None:
        distributed = _distributed()
        client = self.client
        run_of_row, runs = self._plan()
        if not runs:
            return
        # Per run: the blocks holding its rows; a run is submitted at its last block.
        last = np.full(len(runs), -1, dtype=np.int64)
        for i, (a, b) in enumerate(self.bounds):
            rid = run_of_row[a:b]
            last[np.unique(rid[rid >= 0])] = i
        payloads: dict[int, Any] = {}
        pieces: dict[int, list[Any]] = {}
        pending: set[Any] = set()
        bar = _rec._progress_bar(len(runs), self.progress, f"ecorecover.recover: runs ({self.mode})")

        def collect(done: Any) -> None:
            for f in done:
                self.results.append(f.result())
                bar.update(1)

        try:
            for i, (a, b) in enumerate(self.bounds):
                rid = run_of_row[a:b]
                present = np.unique(rid[rid >= 0])
                if present.size == 0:
                    continue
                ext = client.submit(_extract, self._block(a, b), rid, a, self.guard_fired)
                for r in present.tolist():
                    pieces.setdefault(r, []).append(client.submit(operator.getitem, ext, r))
                del ext
                for r in present[last[present] == i].tolist():
                    gi, ri, _ = runs[r]
                    if gi not in payloads:
                        g, mean, sd, const = self._group_args(gi)
                        g = dataclasses.replace(g, rows=np.zeros(0, dtype=np.int64))
                        payloads[gi] = client.scatter((g, mean, sd, const), broadcast=True, hash=False)
                    pending.add(
                        client.submit(
                            _run_task, pieces.pop(r), self.mode, gi, ri, payloads[gi], self.sum_to_one,
                            self.keep_details, pure=False,
                        )
                    )
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
        self.results.sort(key=lambda r: (r.group, r.run))
