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

from collections.abc import Mapping
from typing import Any

from .. import recovery as _recovery
from ..recovery.engine import register_client_engine
from ..recovery.inputs import resolve_threads
from ..training import api as _tr
from ._client import get_client
from .recovery import DaskEngine

__all__ = ["DaskEngine", "get_client", "recover", "train"]

register_client_engine(DaskEngine.build)  # recover(..., client=) runs on it


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
    return _recovery.recover(adata, model, client=get_client(client), **kwargs)


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
