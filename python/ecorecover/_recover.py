"""Recovery of spatial ecotypes (SEs) in new single-cell data: R's ``RecoverSE`` / ``NMFpredict``.

:func:`recover` applies cell-type-specific recovery models (W matrices, features x SEs) to a
log-normalised cells x genes matrix and returns, for every cell, its SE, its score and the
normalised scores of every SE. ``mode="exact"`` reproduces R SpatialEcoTyper 1.0.4 (METHOD.md
sections 4 and 7): the same per-gene scaling over each cell type's cells, the same contiguous
runs of ``cells_per_run`` cells, the same ``set.seed(39)`` initial H and the same KL
multiplicative H-steps under NMF's connectivity stopping rule (whose iteration count couples
the cells of a run). ``mode="fast"`` solves each cell's convex KL problem on its own with a
projected Newton method in Rust (tens of iterations instead of thousands).

The data are streamed in row blocks: only the genes of the models are read, only the model
genes of one run (exact) or one chunk (fast) are densified at a time, and runs are processed in
parallel threads. Exact per-gene scaling needs each gene's mean and variance over all cells of
a type before any cell is scaled, so the data are read three times (sums, squared deviations,
runs); a backed AnnData (``anndata.read_h5ad(path, backed="r")``) is therefore never loaded
whole, and memory does not grow with the number of cells beyond the outputs.
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _collate, _core
from . import nmf as _nmf
from ._labels import check_label_types
from ._input_data import (
    MatrixSource, check_nonnegative, check_writable, negative_values_error, record_written, select_matrix,
)
from .model import _as_weight_frame
from ._validation import resolve_n_jobs
from .preprocessing import RAW_COUNT_MAX, RawCountWarning
from .rng import RRandom

__all__ = [
    "recover",
    "nmf_predict",
    "RecoveryWarning",
    "GeneMatchError",
    "MIN_CELLS",
    "MIN_GENES_EXPRESSED",
    "MIN_MODEL_GENES",
]

#: A cell type needs at least this many cells to be scored (R's RecoverSE).
MIN_CELLS = 20
#: With ``scale=True``, a cell expressing fewer genes (of any model) than this is not scored.
MIN_GENES_EXPRESSED = 3
#: A model with fewer of its genes in the data than this gives NaN scores in R (here: unscored).
MIN_MODEL_GENES = 5
#: NMFpredict's seed for the initial H.
SEED = 39
#: Values above this count as expressed in the "< 3 genes" rule.
EXPRESSED = 1e-16
#: ScaleData's upper clip.
SCALE_MAX = 10.0

_log = logging.getLogger("ecorecover.recover")
_FEATURE_SUFFIX = re.compile(r"__(pos|neg)$")
_NON_SE = "NonSE"
Mode = Literal["exact", "fast"]


from .errors import GeneMatchError, RecoveryWarning  # noqa: E402  (their home; re-exported here)


# --------------------------------------------------------------------------------------------
# Models


@dataclass
class _Group:
    """One cell type's model, resolved against the data's genes."""

    name: str
    w: pd.DataFrame
    genes: list[str]  # model genes (feature suffix removed), first-seen order
    cols: np.ndarray  # column positions (into the kept columns) of the model genes present
    present: list[str]  # the model genes present in the data, model order
    posneg: bool  # W's first row name contains "__"
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # cells (input rows)
    n_scored: int = 0


def _model_genes(features: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(_FEATURE_SUFFIX.sub("", str(f)) for f in features))


def _check_model(model: Any) -> dict[str, pd.DataFrame]:
    if not isinstance(model, Mapping):
        raise TypeError(
            f"model must be a RecoveryModel or a mapping cell type -> W DataFrame, got {type(model).__name__}"
        )
    if len(model) == 0:
        raise ValueError("model holds no cell types")
    out: dict[str, pd.DataFrame] = {}
    for ct in model:
        w = model[ct]
        if not isinstance(w, pd.DataFrame):
            raise TypeError(
                f"model[{ct!r}] must be a pandas DataFrame (features x SEs, row names = features), "
                f"got {type(w).__name__}"
            )
        if w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(f"model[{ct!r}] is empty ({w.shape[0]} features x {w.shape[1]} SEs)")
        out[str(ct)] = _as_weight_frame(str(ct), w, owner="model", coerce_labels=True)
    return out


def _model_provenance(model: Any, models: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    prov: dict[str, Any] = {"cell_types": list(models), "class": type(model).__name__}
    src = getattr(model, "source", None)
    prov["source"] = "" if src is None else str(src)
    params = getattr(model, "params", None)
    if isinstance(params, Mapping):
        prov["params"] = dict(params)
    return prov


# --------------------------------------------------------------------------------------------
# Data access: row blocks of a cells x genes matrix restricted to some columns


class _Rows:
    """Row blocks (cells) of the input restricted to columns ``cols``, as float64 CSR."""

    def __init__(self, x: Any, cols: np.ndarray, *, genes_by_cells: bool = False) -> None:
        self.cols = np.asarray(cols, dtype=np.int64)
        self.genes_by_cells = genes_by_cells
        if sp.issparse(x) and not genes_by_cells and x.format != "csr":
            # Column access of CSC (or other formats): keep only the needed columns once.
            x = sp.csr_matrix(x.tocsc()[:, self.cols])
            self.cols = np.arange(x.shape[1], dtype=np.int64)
        self.x = x
        self.n = x.shape[1] if genes_by_cells else x.shape[0]

    def block(self, a: int, b: int) -> sp.csr_matrix:
        x = self.x
        if self.genes_by_cells:  # a genes x cells array (R's orientation)
            return _as_csr_block(np.asarray(x[self.cols, a:b]).T, None)
        blk = x[a:b]
        if _is_dask(blk):  # a dask array (e.g. anndata.experimental.read_lazy): read this block only
            return _as_csr_block(_dask_columns(blk, self.cols).compute(), None)
        return _as_csr_block(blk, self.cols)

    def blocks(self, size: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        for a in range(0, self.n, size):
            yield a, self.block(a, min(self.n, a + size))


def _is_dask(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "compute")


def _dask_columns(x: Any, cols: np.ndarray) -> Any:
    """A dask array restricted to columns ``cols`` (left alone when they are all of them)."""
    if _is_range(cols) and len(cols) == x.shape[1]:
        return x
    return x[:, cols]


def _as_csr_block(blk: Any, cols: np.ndarray | None) -> sp.csr_matrix:
    """A block of rows (dense or sparse) restricted to columns ``cols`` (None: all), as float64 CSR."""
    if sp.issparse(blk):
        if cols is not None and (len(cols) != blk.shape[1] or not _is_range(cols)):
            blk = blk.tocsr()[:, cols]
        else:
            blk = blk.tocsr()
    else:
        blk = np.asarray(blk)
        if blk.ndim != 2:
            raise ValueError(f"the expression matrix must be 2-dimensional, got shape {blk.shape}")
        if cols is not None and (not _is_range(cols) or len(cols) != blk.shape[1]):
            blk = blk[:, cols]
    if sp.issparse(blk):
        out = sp.csr_matrix(blk)
        if out.dtype.kind not in "iuf":
            raise TypeError(f"the expression matrix must hold numbers, got dtype {out.dtype}")
        out = out.astype(np.float64, copy=False)
        out.sum_duplicates()
    else:
        if blk.dtype.kind not in "iuf":
            raise TypeError(f"the expression matrix must hold numbers, got dtype {blk.dtype}")
        out = sp.csr_matrix(np.asarray(blk, dtype=np.float64))
    return out


def _is_range(cols: np.ndarray) -> bool:
    return len(cols) == 0 or (cols[0] == 0 and bool(np.all(np.diff(cols) == 1)))


def _block_rows(blk: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored element of a CSR block."""
    return np.repeat(np.arange(blk.shape[0], dtype=np.int64), np.diff(blk.indptr))


# Per-block pieces of the statistics passes. They are shared by the in-process engine and the
# Dask engine (ecorecover.dask): a block's part is computed anywhere, and the parts are folded
# into the accumulators in cell order, so the sums are the same sequential sums whatever runs
# where.


def _first_nonfinite(blk: sp.csr_matrix) -> tuple[int, int, int, float] | None:
    """(row, kept column, count, value) of the block's first NaN/inf, or None."""
    bad = ~np.isfinite(blk.data)
    if not bad.any():
        return None
    e = int(np.argmax(bad))
    return int(_block_rows(blk)[e]), int(blk.indices[e]), int(bad.sum()), float(blk.data[e])


def _scan_block(blk: sp.csr_matrix) -> tuple[float, float, bool]:
    """(min, max) of the stored values and whether the block has implicit zeros (raw-count guard)."""
    mn, mx = (float(blk.data.min()), float(blk.data.max())) if blk.nnz else (np.inf, -np.inf)
    return mn, mx, bool(blk.nnz < blk.shape[0] * blk.shape[1])


def _transform(blk: sp.csr_matrix, guard_fired: bool) -> sp.csr_matrix:
    if guard_fired:
        blk = blk.copy()
        blk.data = np.log2(blk.data + 1.0)
    return blk


@dataclass
class _Part1:
    """One block's contribution to pass 1 (``flat``: slot group * n_cols + column per value)."""

    omitted: np.ndarray | None  # per row: a scored type's cell expressing < 3 genes (scale only)
    flat: np.ndarray
    vals: np.ndarray
    nnz: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _pass1_block(blk: sp.csr_matrix, grp: np.ndarray, scale: bool, g_n: int, k_cols: int) -> _Part1:
    """Omissions and the non-zero values of the scored cells of a (transformed) block."""
    b = blk.shape[0]
    om = None
    if scale:
        expressed = np.bincount(_block_rows(blk)[blk.data > EXPRESSED], minlength=b)
        om = (expressed < MIN_GENES_EXPRESSED) & (grp >= 0)
        grp = np.where(om, -1, grp)
    gr = grp[_block_rows(blk)]
    sel = (gr >= 0) & (blk.data != 0.0)
    flat = gr[sel] * k_cols + blk.indices[sel].astype(np.int64)
    vals = blk.data[sel]
    lo = np.full(g_n * k_cols, np.inf)
    hi = np.full(g_n * k_cols, -np.inf)
    np.minimum.at(lo, flat, vals)
    np.maximum.at(hi, flat, vals)
    return _Part1(om, flat, vals, np.bincount(flat, minlength=g_n * k_cols), lo, hi)


class _Moments1:
    """Pass-1 accumulators: sums (sequential, in the order parts are folded), counts, min, max."""

    def __init__(self, size: int) -> None:
        self.s = np.zeros(size)
        self.nnz = np.zeros(size, dtype=np.int64)
        self.lo = np.full(size, np.inf)
        self.hi = np.full(size, -np.inf)

    def fold(self, part: _Part1) -> _Moments1:
        np.add.at(self.s, part.flat, part.vals)  # unbuffered: one value after the other
        self.nnz += part.nnz
        np.minimum(self.lo, part.lo, out=self.lo)
        np.maximum(self.hi, part.hi, out=self.hi)
        return self


def _pass2_block(blk: sp.csr_matrix, grp: np.ndarray, mean: np.ndarray, k_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Slots and squared deviations from the mean of the non-zeros of the scored cells."""
    gr = grp[_block_rows(blk)]
    sel = (gr >= 0) & (blk.data != 0.0)
    flat = gr[sel] * k_cols + blk.indices[sel].astype(np.int64)
    d = blk.data[sel] - mean[flat]
    return flat, d * d


# --------------------------------------------------------------------------------------------
# The engine: statistics passes, runs, kernels


@dataclass
class _RunResult:
    group: int
    run: int
    rows: np.ndarray
    scores: np.ndarray | None  # cells x k (W's column order), sum-to-one (or raw)
    n_features: int
    n_iter: int
    max_v: float
    detail: dict[str, Any] | None = None
    failure: str | None = None
    nnz_v: int = 0


class _Engine:
    """Shared implementation of :func:`recover` and :func:`nmf_predict`.

    ``rows``: the input; ``group_of_row``: index into ``groups`` per cell (-1: not scored).
    """

    def __init__(
        self,
        rows: _Rows,
        groups: list[_Group],
        group_of_row: np.ndarray,
        *,
        scale: bool,
        cells_per_run: int,
        mode: Mode,
        threads: int,
        guard: bool,
        block_size: int,
        cell_ids: Sequence[str],
        gene_names: Sequence[str],
        sum_to_one: bool = True,
        keep_details: bool = False,
        progress: bool = False,
        refuse_negative: Any = None,
    ) -> None:
        self.rows, self.groups, self.gor = rows, groups, group_of_row
        self.scale, self.cpr, self.mode, self.threads = scale, cells_per_run, mode, threads
        self.guard, self.block_size = guard, block_size
        self.cell_ids, self.gene_names = cell_ids, gene_names
        self.sum_to_one, self.keep_details, self.progress = sum_to_one, keep_details, progress
        self.refuse_negative = refuse_negative  # (value, where) -> error for negative input, or None
        self.guard_fired = False
        self.omitted = np.zeros(rows.n, dtype=bool)  # "< 3 genes" cells of scored types
        self.results: list[_RunResult] = []

    # -- pass 1 and 2: per (cell type, gene) moments over the cells kept -----------------------

    def _check_block(self, a: int, blk: sp.csr_matrix) -> None:
        bad = _first_nonfinite(blk)
        if bad is not None:
            self._raise_nonfinite(a, *bad)
        if self.refuse_negative is not None and blk.nnz and (neg := blk.data < 0).any():
            e = int(np.argmax(neg))
            r, c = int(_block_rows(blk)[e]), int(blk.indices[e])
            self._check_negative(float(blk.data[e]), f" at cell {self.cell_ids[a + r]!r}, gene {self.gene_names[c]!r}")

    def _check_negative(self, value: float, where: str = "") -> None:
        """Refuse negative input (scaled data) when the caller asked for it (AnnData input)."""
        if self.refuse_negative is not None and value < 0:
            err = self.refuse_negative(value, where)
            if err is not None:
                raise err

    def _raise_nonfinite(self, a: int, r: int, c: int, count: int, value: float) -> None:
        raise ValueError(
            f"the expression matrix holds {count} non-finite value(s) (NaN or inf) in this "
            f"block, first at cell {self.cell_ids[a + r]!r}, gene {self.gene_names[c]!r}: "
            f"{value!r}; remove or impute them first"
        )

    def _transform(self, blk: sp.csr_matrix) -> sp.csr_matrix:
        return _transform(blk, self.guard_fired)

    def _guard_fires(self, mn: float, mx: float, any_implicit_zero: bool) -> bool:
        """R's raw-count guard on the model genes (min >= 0, max > 80): warn and return True."""
        if any_implicit_zero:
            mn = min(mn, 0.0)
        if mn >= 0 and mx > RAW_COUNT_MAX:
            warnings.warn(
                f"the expression matrix (model genes) looks like raw counts (min >= 0, max {mx:g} > "
                f"{RAW_COUNT_MAX:g}); applying log2(x + 1) as R SpatialEcoTyper does. Pass "
                "log-normalised data (ecorecover.preprocessing.log_normalize) to avoid this.",
                RawCountWarning,
                stacklevel=5,
            )
            return True
        return False

    def statistics(self) -> None:
        g_n, k_cols = len(self.groups), len(self.rows.cols)
        # Pass 1: omissions, sums of non-zeros (sequential, in cell order), counts, min/max.
        for attempt in range(2):
            acc = _Moments1(g_n * k_cols)
            self.omitted[:] = False
            mn, mx, any_implicit_zero = np.inf, -np.inf, False
            for a, blk in self.rows.blocks(self.block_size):
                if attempt == 0:
                    self._check_block(a, blk)
                    bmn, bmx, bz = _scan_block(blk)
                    mn, mx, any_implicit_zero = min(mn, bmn), max(mx, bmx), any_implicit_zero or bz
                blk = self._transform(blk)
                part = _pass1_block(blk, self.gor[a : a + blk.shape[0]], self.scale, g_n, k_cols)
                if part.omitted is not None:
                    self.omitted[a : a + blk.shape[0]] = part.omitted
                acc.fold(part)
            if attempt == 0 and self.guard and self._guard_fires(mn, mx, any_implicit_zero):
                self.guard_fired = True
                continue
            break
        self._finish_pass1(acc)
        if not self.scale:
            return
        # Pass 2: squared deviations of the non-zeros, sequential in cell order.
        sq = np.zeros(g_n * k_cols)
        for a, blk in self.rows.blocks(self.block_size):
            blk = self._transform(blk)
            b = blk.shape[0]
            flat, dd = _pass2_block(blk, self._scored_groups(a, a + b), self.mean, k_cols)
            np.add.at(sq, flat, dd)
        self._finish_pass2(sq)

    def _scored_groups(self, a: int, b: int) -> np.ndarray:
        """Group per row of rows a..b, -1 for the cells not scored ("< 3 genes")."""
        return np.where(self.omitted[a:b], -1, self.gor[a:b])

    def _finish_pass1(self, acc: _Moments1) -> None:
        k_cols = len(self.rows.cols)
        g_n = len(self.groups)
        n_kept = np.zeros(g_n, dtype=np.int64)
        for gi, g in enumerate(self.groups):
            keep = ~self.omitted[g.rows]
            g.rows = g.rows[keep]
            g.n_scored = int(keep.sum())
            n_kept[gi] = g.n_scored
        n_t = np.repeat(n_kept, k_cols).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = acc.s / n_t
        self.mean = mean
        self._n_t, self._nnz = n_t, acc.nnz
        # Range of each gene over the type's cells (for fast mode's zero-variance filter).
        has_zero = acc.nnz < n_t
        self.xmin = np.where(has_zero, np.minimum(acc.lo, 0.0), acc.lo)
        self.xmax = np.where(has_zero, np.maximum(acc.hi, 0.0), acc.hi)

    def _finish_pass2(self, sq: np.ndarray) -> None:
        n_t, mean = self._n_t, self.mean
        n_zeros = (n_t - self._nnz).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = (sq + mean * mean * n_zeros) / (n_t - 1.0)
        self.sd = np.sqrt(var)

    def _constant_features(self, g: _Group, sl: slice) -> tuple[np.ndarray, np.ndarray]:
        """Per model gene: is its positive / negative feature (or, without posneg, the gene)
        constant over the cell type's scored cells? The scaling is monotone, so the range of
        the feature follows from the gene's minimum and maximum."""
        lo, hi = self.xmin[sl][g.cols], self.xmax[sl][g.cols]
        if self.scale:
            mean, sd = self.mean[sl][g.cols], self.sd[sl][g.cols]
            lo, hi = _zscore(lo[None, :], mean, sd)[0], _zscore(hi[None, :], mean, sd)[0]
        if not g.posneg:
            c = lo == hi
            return c, c
        pos = np.maximum(hi, 0.0) == np.maximum(lo, 0.0)
        neg = np.maximum(-lo, 0.0) == np.maximum(-hi, 0.0)
        return pos, neg

    # -- pass 3: runs -----------------------------------------------------------------------------

    def _group_args(self, gi: int) -> tuple[_Group, np.ndarray, np.ndarray | None, Any]:
        """(group, mean, sd or None, constant features) of group ``gi``'s model genes."""
        g = self.groups[gi]
        k_cols = len(self.rows.cols)
        sl = slice(gi * k_cols, (gi + 1) * k_cols)
        mean = self.mean[sl][g.cols]
        sd = self.sd[sl][g.cols] if self.scale else None
        return g, mean, sd, self._constant_features(g, sl)

    def _plan(self) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Run id per input row (-1: none) and, per run, (group, run index, size)."""
        run_of_row = np.full(self.rows.n, -1, dtype=np.int64)
        runs: list[tuple[int, int, int]] = []
        for gi, g in enumerate(self.groups):
            n = g.n_scored
            if n == 0 or g.cols.size < MIN_MODEL_GENES:
                continue
            if self.mode == "exact":
                n_runs = math.ceil(n / self.cpr)
                base, extra = divmod(n, n_runs)
                sizes = [base + 1 if i < extra else base for i in range(n_runs)]
            else:
                size = _FAST_CHUNK
                sizes = [min(size, n - i) for i in range(0, n, size)]
            start = 0
            for ri, sz in enumerate(sizes):
                run_of_row[g.rows[start : start + sz]] = len(runs)
                runs.append((gi, ri, sz))
                start += sz
        return run_of_row, runs

    def run(self) -> None:
        run_of_row, runs = self._plan()
        if not runs:
            return
        n_workers = max(1, min(self.threads, len(runs)))
        kernel_threads = max(1, self.threads // n_workers)
        buffers: dict[int, list[sp.csr_matrix]] = {}
        buf_rows: dict[int, list[np.ndarray]] = {}
        filled = np.zeros(len(runs), dtype=np.int64)
        pending: set[Future[_RunResult]] = set()
        bar = _progress_bar(len(runs), self.progress, f"ecorecover.recover: runs ({self.mode})")
        # The workers' kernels never see Ctrl-C (only the main thread does): cancelling this token
        # stops the ones still running within milliseconds when the loop below is left early.
        cancel = _core.CancelToken()

        def collect(done: set[Future[_RunResult]]) -> None:
            for f in done:
                self.results.append(f.result())
                bar.update(1)

        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            try:
                for a, blk in self.rows.blocks(self.block_size):
                    b = blk.shape[0]
                    rid = run_of_row[a : a + b]
                    if not (rid >= 0).any():
                        continue
                    blk = self._transform(blk)
                    for r in np.unique(rid[rid >= 0]):
                        local = np.flatnonzero(rid == r)
                        buffers.setdefault(int(r), []).append(blk[local])
                        buf_rows.setdefault(int(r), []).append(local + a)
                        filled[r] += len(local)
                        gi, ri, size = runs[r]
                        if filled[r] == size:
                            x = sp.vstack(buffers.pop(int(r)), format="csr")
                            rows = np.concatenate(buf_rows.pop(int(r)))
                            g, mean, sd, const = self._group_args(gi)
                            pending.add(
                                pool.submit(
                                    cancel.run, _solve_run, self.mode, gi, ri, g, x, rows, mean, sd, const,
                                    self.sum_to_one, kernel_threads, self.keep_details,
                                )
                            )
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
        self.results.sort(key=lambda r: (r.group, r.run))


_FAST_CHUNK = 4096


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI, batch jobs)
            return tqdm(total=total, desc=desc, unit="run", leave=False, disable=None)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass

    class _Null:
        def update(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    return _Null()


def _zscore(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Seurat ScaleData's value for x given the gene's mean and sd: NaN -> 0, > 10 -> 10."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - mean) / sd
    z[np.isnan(z)] = 0.0
    z[z > SCALE_MAX] = SCALE_MAX
    return z


def _features(g: _Group, z: np.ndarray, const: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """V (cells x features) and feature names as NMFpredict builds them for one run."""
    if g.posneg:
        v = np.concatenate([np.maximum(z, 0.0), np.maximum(-z, 0.0)], axis=1)
        names = [s + "__pos" for s in g.present] + [s + "__neg" for s in g.present]
    else:
        v, names = z, list(g.present)
    if const is None:  # zero-variance filter over the run
        keep = ~np.all(v == v[:1], axis=0) if v.shape[0] else np.zeros(v.shape[1], dtype=bool)
    else:
        keep = ~np.concatenate([const, const]) if g.posneg else ~const
    in_w = g.w.index
    idx = [i for i, nm in enumerate(names) if keep[i] and nm in in_w]
    return v[:, idx], [names[i] for i in idx]


def _sum_to_one(h: np.ndarray) -> np.ndarray:
    """Divide each cell's scores (rows of ``h``, cells x k) by their sum as R's ``colSums``
    computes it: accumulated in order in x87 long double, rounded to double (a correctly
    rounded sum differs in the last bit for ~1 cell in 4000 on the fixtures, a plain double
    sum for ~40%)."""
    with warnings.catch_warnings():
        return _core.sum_to_one_rows(np.ascontiguousarray(h, dtype=np.float64), 1)


def _solve_run(
    mode: Mode, gi: int, ri: int, g: _Group, x: sp.csr_matrix, rows: np.ndarray, mean: np.ndarray,
    sd: np.ndarray | None, const: Any, sum_to_one: bool, threads: int, details: bool,
) -> _RunResult:
    """One run: ``x`` holds the run's cells (in order) x the kept columns (transformed)."""
    fn = _exact_run if mode == "exact" else _fast_run
    return fn(gi, ri, g, x[:, g.cols], rows, mean, sd, const, sum_to_one, threads, details)


def _exact_run(
    gi: int, ri: int, g: _Group, x: sp.csr_matrix, rows: np.ndarray, mean: np.ndarray, sd: np.ndarray | None,
    const: Any, sum_to_one: bool, threads: int, details: bool,
) -> _RunResult:
    dense = x.toarray()
    z = _zscore(dense, mean, sd) if sd is not None else dense
    v, feats = _features(g, z)
    if not feats:
        return _RunResult(gi, ri, rows, None, 0, 0, 0.0, failure="no_features")
    if not g.posneg and v.size and float(v.min()) < 0:
        raise _plain_model_negative(g)
    vt = np.ascontiguousarray(v.T)  # features x cells
    w = np.ascontiguousarray(g.w.loc[feats].to_numpy())
    m, k = w.shape
    n = vt.shape[1]
    max_v = float(vt.max()) if vt.size else 0.0
    top = max(max_v, 1.0)
    rng = RRandom(SEED)
    rng.runif(m * k, max=top)  # NMF::rnmf draws W first: thrown away
    h0 = np.minimum(rng.runif(k * n, max=top), float(np.abs(vt).max())).reshape((k, n), order="F")
    h, n_iter = _nmf.update_h(vt, w, h0, n_jobs=threads)
    ht = h.T
    scores = _sum_to_one(ht) if sum_to_one else ht.copy()
    det = {"features": feats, "H0": h0, "H_raw": h, "n_iter": n_iter} if details else None
    return _RunResult(gi, ri, rows, scores, m, int(n_iter), max_v, det, nnz_v=int(np.count_nonzero(vt)))


def _plain_model_negative(g: _Group) -> ValueError:
    return ValueError(
            f"model[{g.name!r}] names plain genes (no '__pos'/'__neg' features), so R feeds the scaled "
            "data to NMF without posneg, but it has negative values; NMF needs non-negative input "
            "(use scale=False with such a model, or a posneg model)"
    )


def _fast_run(
    gi: int, ri: int, g: _Group, x: sp.csr_matrix, rows: np.ndarray, mean: np.ndarray, sd: np.ndarray | None,
    const: tuple[np.ndarray, np.ndarray], sum_to_one: bool, threads: int, details: bool,
) -> _RunResult:
    from .nmf import solve_h_fast

    gpos, gneg, n_feat = _fast_model(g, const)
    if n_feat == 0:  # as exact mode: nothing to score the cells with (not 1/k each)
        return _RunResult(gi, ri, rows, None, 0, 0, float("nan"), failure="no_features")
    try:
        h, iters = solve_h_fast(
            x, gpos, gneg, mean=None if sd is None else mean, sd=sd, posneg=g.posneg, scale_max=SCALE_MAX, n_jobs=threads
        )
    except ValueError as exc:
        if not g.posneg and "negative" in str(exc):
            raise _plain_model_negative(g) from exc
        raise
    scores = _sum_to_one(h) if sum_to_one else h
    det = {"iterations": iters} if details else None
    return _RunResult(gi, ri, rows, scores, n_feat, int(iters.max(initial=0)), float("nan"), det)


def _fast_model(g: _Group, const: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per model gene present, W's row for its positive / negative feature (a NaN row: absent
    from W, or constant over the cell type's cells, which the zero-variance filter drops)."""
    pos_const, neg_const = const
    k = g.w.shape[1]
    wv = g.w.to_numpy()
    pos_i = {nm: i for i, nm in enumerate(g.w.index)}
    npres = len(g.present)
    gpos = np.full((npres, k), np.nan)
    gneg = np.full((npres, k), np.nan)
    for j, gene in enumerate(g.present):
        if g.posneg:
            if not pos_const[j] and (i := pos_i.get(gene + "__pos")) is not None:
                gpos[j] = wv[i]
            if not neg_const[j] and (i := pos_i.get(gene + "__neg")) is not None:
                gneg[j] = wv[i]
        elif not pos_const[j] and (i := pos_i.get(gene)) is not None:
            gpos[j] = wv[i]
    n_feat = int(np.isfinite(gpos[:, 0]).sum() + np.isfinite(gneg[:, 0]).sum())
    return gpos, gneg, n_feat


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_options(cells_per_run: Any, mode: Any, n_jobs: Any) -> int:
    if isinstance(cells_per_run, bool) or not isinstance(cells_per_run, (int, np.integer)) or cells_per_run < 1:
        raise ValueError(f"cells_per_run must be a positive integer, got {cells_per_run!r}")
    if mode not in ("exact", "fast"):
        raise ValueError(f"mode must be 'exact' or 'fast', got {mode!r}")
    threads = resolve_n_jobs(n_jobs)
    if threads is None:
        import os

        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(threads))


def _unique_names(names: Sequence[str], what: str) -> dict[str, int]:
    """name -> first position; duplicated names warn (R keeps the first match)."""
    pos: dict[str, int] = {}
    dups: list[str] = []
    for i, nm in enumerate(names):
        if nm in pos:
            dups.append(nm)
        else:
            pos[nm] = i
    if dups:
        warnings.warn(
            f"{len(dups)} duplicated {what} (e.g. {dups[:3]}); the first occurrence of each is used",
            RecoveryWarning,
            stacklevel=3,
        )
    return pos


def _labels(values: Any, n: int, what: str) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index)):
        arr = values.to_numpy(dtype=object)
    else:
        arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{what} has {len(arr)} labels but the data have {n} cells; give one cell type per cell")
    check_label_types(arr, what)
    return np.array(
        [None if (x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))) else str(x) for x in arr],
        dtype=object,
    )


@dataclass
class _Input:
    x: Any
    genes_by_cells: bool
    cell_ids: list[str]
    genes: list[str]
    adata: Any  # the AnnData, or None
    var: pd.DataFrame | None = None  # the chosen matrix's var (AnnData)
    where: str = "a genes x cells DataFrame"
    src: MatrixSource | None = None

    def negative_error(self, value: float, where: str = "") -> ValueError | None:
        """The error for negative values in an AnnData's matrix (None for a DataFrame: R's input)."""
        return None if self.src is None else negative_values_error(self.src, value, where)


def _align(celltypes: Any, cell_ids: list[str]) -> Any:
    """A Series indexed by the cell ids is matched by id; a Series with a default
    (0..n-1) index, or any other sequence, by position. A Series indexed by other labels is
    an error rather than a silent positional match."""
    if isinstance(celltypes, pd.Series) and len(celltypes) == len(cell_ids):
        if isinstance(celltypes.index, pd.RangeIndex) and celltypes.index.start == 0 and celltypes.index.step == 1:
            return celltypes
        idx = [str(i) for i in celltypes.index]
        if idx == cell_ids:
            return celltypes
        if set(idx) == set(cell_ids) and len(set(idx)) == len(idx):
            return celltypes.set_axis(idx).reindex(cell_ids)
        known = set(cell_ids)
        stray = next(i for i in idx if i not in known) if not set(idx) <= known else None
        raise ValueError(
            "celltypes is a Series whose index does not match the cell ids"
            + (f" (e.g. {stray!r} is not a cell id)" if stray is not None else " (duplicated ids)")
            + "; index it by cell id, or pass a list/array to match by position"
        )
    return celltypes


def _read_input(
    adata: Any, celltype_key: str, celltypes: Any, gene_symbols: str | None, layer: str | None = None,
    use_raw: bool = False,
) -> tuple[_Input, np.ndarray]:
    try:
        import anndata
    except ImportError:  # pragma: no cover - anndata is a dependency
        anndata = None
    if anndata is not None and isinstance(adata, anndata.AnnData):
        src = select_matrix(adata, layer=layer, use_raw=use_raw)
        cell_ids = [str(c) for c in adata.obs_names]
        if gene_symbols is None:
            genes = src.var_names
        else:
            if gene_symbols not in src.var.columns:
                raise KeyError(
                    f"gene_symbols={gene_symbols!r} is not a column of the var of {src.where} "
                    f"(columns: {list(src.var.columns)})"
                )
            genes = [str(g) for g in src.var[gene_symbols]]
        if celltypes is None:
            if celltype_key not in adata.obs.columns:
                raise KeyError(
                    f"celltype_key={celltype_key!r} is not a column of adata.obs (columns: "
                    f"{list(adata.obs.columns)}); pass the cell-type column's name or celltypes="
                )
            labels = _labels(adata.obs[celltype_key], adata.n_obs, f"adata.obs[{celltype_key!r}]")
        else:
            labels = _labels(_align(celltypes, cell_ids), adata.n_obs, "celltypes")
        return _Input(src.x, False, cell_ids, genes, adata, src.var, src.where, src), labels
    if layer is not None or use_raw:
        raise ValueError("layer= and use_raw= choose a matrix of an AnnData; a DataFrame input is the matrix itself")
    if isinstance(adata, pd.DataFrame):
        if gene_symbols is not None:
            raise ValueError("gene_symbols names a column of adata.var; with a DataFrame input, name its rows by gene")
        if celltypes is None:
            raise ValueError(
                "a genes x cells DataFrame needs celltypes= (one cell-type label per column), as R's RecoverSE"
            )
        cell_ids = [str(c) for c in adata.columns]
        genes = [str(g) for g in adata.index]
        labels = _labels(_align(celltypes, cell_ids), len(cell_ids), "celltypes")
        kinds = {d.kind for d in adata.dtypes}
        if not kinds <= set("iuf"):
            raise TypeError(f"the expression DataFrame must hold numbers only, got dtypes {sorted(set(map(str, adata.dtypes)))}")
        return _Input(adata.to_numpy(dtype=np.float64), True, cell_ids, genes, None), labels
    raise TypeError(
        f"adata must be an AnnData (cells x genes) or a genes x cells pandas DataFrame, got {type(adata).__name__}"
    )


def _duplicated_ids(ids: Sequence[str]) -> None:
    idx = pd.Index(ids)
    if idx.has_duplicates:
        d = list(dict.fromkeys(idx[idx.duplicated()]))
        raise ValueError(
            f"cell ids must be unique, found {len(d)} duplicated (e.g. {d[:3]}); "
            "call adata.obs_names_make_unique() first"
        )


class _Names:
    """Gene name of a kept column, for messages."""

    def __init__(self, genes: Sequence[str], kept: Sequence[int]) -> None:
        self.genes, self.kept = genes, kept

    def __getitem__(self, i: int) -> str:
        return self.genes[self.kept[i]]


def _block_size(n_cols: int) -> int:
    """Rows per block: about 4e6 values of the kept columns (32 MB dense)."""
    return int(max(1024, min(65536, 4_000_000 // max(1, n_cols))))


# --------------------------------------------------------------------------------------------
# Public API


#: The columns recover() writes besides one per SE (an SE must not be named like them).
OUTPUT_COLUMNS = ("CellType", "InitSE", "SE", "PredScore", "scored")
#: Warn when more than this share of a model's genes is missing from the data.
MISSING_GENES_WARN = 0.10


def _check_se_names(models: Mapping[str, pd.DataFrame]) -> None:
    """SE names that are also output columns would crash or duplicate headers: refuse them first."""
    for ct, w in models.items():
        clash = [str(se) for se in w.columns if str(se) in OUTPUT_COLUMNS]
        if clash:
            raise ValueError(
                f"model[{ct!r}] has an SE named {clash[0]!r}, which is also a column of recover()'s table "
                f"{list(OUTPUT_COLUMNS)}; rename the SE (e.g. model[{ct!r}].rename(columns={{{clash[0]!r}: "
                f"'SE_{clash[0]}'}}))"
            )


def _case_hint(missing: Sequence[str], genes: Sequence[str]) -> str:
    """A note when missing model genes match data genes up to case (mouse symbols, lower case)."""
    lower: dict[str, str] = {}
    for g in genes:
        lower.setdefault(g.lower(), g)
    pairs = [(m, lower[m.lower()]) for m in missing if m.lower() in lower]
    if not pairs:
        return ""
    eg = ", ".join(f"{d!r} for {m!r}" for m, d in pairs[:3])
    return (
        f"; {len(pairs)} of them match data genes up to letter case (e.g. {eg}): rename the data's genes "
        "(e.g. to upper case) or the model's features to match"
    )


def _gene_report(ct: str, genes: list[str], present: list[str], data_genes: Sequence[str], n_ct: int) -> dict[str, Any]:
    """genes_found entry of a cell type; warns when over 10% of the model's genes are missing."""
    have = set(present)
    missing = [g for g in genes if g not in have]
    frac = len(present) / len(genes)
    if n_ct > 0 and len(missing) > MISSING_GENES_WARN * len(genes):
        warnings.warn(
            f"only {len(present)} of the {len(genes)} genes of the {ct!r} model ({100 * frac:.1f}%) are in the "
            f"data; missing e.g. {missing[:6]} (all listed in uns[key_added]['genes_found'][{ct!r}]['missing']). "
            "Its scores rest on the genes found; check for renamed genes (e.g. IL8 = CXCL8)"
            + _case_hint(missing, data_genes),
            RecoveryWarning,
            stacklevel=3,
        )
    return {"found": len(present), "total": len(genes), "fraction": frac, "missing": missing}


def _no_gene_error(union: list[str], inp: _Input, gene_symbols: str | None) -> GeneMatchError:
    hint = (
        f"; adata.var has columns {list(inp.var.columns)[:10]}: if one holds gene symbols, pass gene_symbols="
        if inp.adata is not None and gene_symbols is None
        else ""
    )
    where = "var_names" if inp.adata is not None and gene_symbols is None else "genes"
    return GeneMatchError(
        f"none of the {len(union)} model genes is found in the data: the model uses identifiers like "
        f"{union[:5]}, the data's {where} look like {inp.genes[:5]}{hint}{_case_hint(union, inp.genes)}"
    )


def _groups(
    models: dict[str, pd.DataFrame], labels: np.ndarray, inp: _Input, gene_symbols: str | None,
    counts: pd.Series, unscored: dict[str, int],
) -> tuple[list[_Group], np.ndarray, list[int], dict[str, dict[str, Any]]]:
    """The scored cell types (model, enough cells, enough genes), the group of every cell, the
    kept columns and the genes found per cell type (R: ``dat[rownames(dat) %in% model genes, ]``)."""
    gene_pos = _unique_names(inp.genes, "gene names in the data")
    model_genes = {ct: _model_genes(w.index) for ct, w in models.items()}
    union = list(dict.fromkeys(g for ct in models for g in model_genes[ct]))
    kept = sorted(gene_pos[g] for g in union if g in gene_pos)
    if not kept:
        raise _no_gene_error(union, inp, gene_symbols)
    kept_pos = {c: i for i, c in enumerate(kept)}
    groups: list[_Group] = []
    genes_found: dict[str, dict[str, Any]] = {}
    group_of_row = np.full(len(labels), -1, dtype=np.int64)
    for ct, w in models.items():
        present = [g for g in model_genes[ct] if g in gene_pos]
        n_ct = int(counts.get(ct, 0))
        genes_found[ct] = _gene_report(ct, model_genes[ct], present, inp.genes, n_ct)
        if n_ct == 0:
            continue
        if n_ct < MIN_CELLS:
            unscored["too_few_cells"] += n_ct
            continue
        if len(present) < MIN_MODEL_GENES:
            warnings.warn(
                f"{n_ct} {ct!r} cells are not scored: only {len(present)} of the model's genes are in the "
                f"data (at least {MIN_MODEL_GENES} needed; R returns NaN scores)",
                RecoveryWarning,
                stacklevel=3,
            )
            unscored["too_few_model_genes"] += n_ct
            continue
        g = _Group(
            name=ct, w=w, genes=model_genes[ct], present=present,
            cols=np.array([kept_pos[gene_pos[x]] for x in present], dtype=np.int64),
            posneg="__" in str(w.index[0]),
        )
        g.rows = np.flatnonzero(labels == ct)
        group_of_row[g.rows] = len(groups)
        groups.append(g)
    return groups, group_of_row, kept, genes_found


def _warn_unmodelled(models: Mapping[str, Any], labels: np.ndarray, counts: pd.Series, unscored: dict[str, int]) -> None:
    small = [ct for ct in models if ct in counts.index and int(counts[ct]) < MIN_CELLS]
    if small:
        warnings.warn(
            f"{unscored['too_few_cells']} cells of cell types with fewer than {MIN_CELLS} cells are not scored "
            f"(scores 0, SE {_NON_SE!r}, scored False): " + ", ".join(f"{ct} ({int(counts[ct])})" for ct in small),
            RecoveryWarning,
            stacklevel=3,
        )
    no_model = [ct for ct in counts.index if ct not in models]
    n_unlabelled = int(sum(1 for x in labels if x is None))
    unscored["no_model"] = int(sum(int(counts[ct]) for ct in no_model)) + n_unlabelled
    if unscored["no_model"]:
        warnings.warn(
            f"{unscored['no_model']} cells have no model for their cell type and are not scored (scores 0, SE "
            f"{_NON_SE!r}, scored False): " + ", ".join(f"{ct} ({int(counts[ct])})" for ct in no_model[:10])
            + (f"{', ' if no_model else ''}unlabelled ({n_unlabelled})" if n_unlabelled else ""),
            RecoveryWarning,
            stacklevel=3,
        )


def _warn_no_features(failed: dict[str, list[int]], cells_per_run: int, mode: str) -> None:
    """One warning for all runs left without a model feature (cells_per_run=1 makes thousands)."""
    if not failed:
        return
    n_cells = sum(sum(v) for v in failed.values())
    n_runs = sum(len(v) for v in failed.values())
    what = f"in {n_runs} run(s) " if mode == "exact" else ""
    tip = (
        f"; with cells_per_run={cells_per_run} every feature is constant over a run: use a larger cells_per_run"
        if mode == "exact" and cells_per_run < 3
        else " (the model's features are constant over these cells, or none of them is in W)"
    )
    warnings.warn(
        f"{n_cells} cells {what}are not scored (scores 0, SE {_NON_SE!r}, scored False): no model feature is "
        "left after the zero-variance filter: " + ", ".join(f"{ct} ({sum(v)})" for ct, v in failed.items()) + tip,
        RecoveryWarning,
        stacklevel=3,
    )


def _assemble(
    engine: _Engine, groups: list[_Group], models: Mapping[str, pd.DataFrame], labels: np.ndarray,
    inp: _Input, min_score: float, collation: _collate.Collation, unscored: dict[str, int],
) -> tuple[pd.DataFrame, np.ndarray, list[str], pd.DataFrame]:
    """(table, scores, SE names, runs table): scores over R's sorted union of SE names."""
    n = len(labels)
    se_names = _collate.collate_sorted({se for w in models.values() for se in w.columns}, collation)
    se_col = {se: i for i, se in enumerate(se_names)}
    scores = np.zeros((n, len(se_names)))
    scored = np.zeros(n, dtype=bool)
    failed: dict[str, list[int]] = {}
    run_rows = []
    for r in engine.results:
        g = groups[r.group]
        if r.scores is None:
            unscored[r.failure or "no_features"] += len(r.rows)
            failed.setdefault(g.name, []).append(len(r.rows))
        else:
            cols = np.array([se_col[se] for se in g.w.columns])
            scores[r.rows[:, None], cols[None, :]] = np.nan_to_num(r.scores, nan=0.0)
            scored[r.rows] = True
        run_rows.append(
            {
                "CellType": g.name, "run": r.run + 1, "n_cells": len(r.rows),
                "first_cell": inp.cell_ids[r.rows[0]], "last_cell": inp.cell_ids[r.rows[-1]],
                "n_features": r.n_features, "n_iter": r.n_iter, "max_V": r.max_v, "nnz_V": r.nnz_v,
            }
        )
    _warn_no_features(failed, engine.cpr, engine.mode)
    best = scores.argmax(axis=1) if len(se_names) else np.zeros(n, dtype=np.int64)
    pred = scores[np.arange(n), best]
    init = np.asarray(se_names, dtype=object)[best]
    se = np.where((pred < float(min_score)) | (pred == 0), _NON_SE, init).astype(object)
    index = pd.Index(inp.cell_ids)
    out = pd.concat(
        [
            pd.DataFrame({"CellType": labels, "InitSE": init, "SE": se, "PredScore": pred}, index=index),
            pd.DataFrame(scores, index=index, columns=se_names),
        ],
        axis=1,
    )
    out["scored"] = scored
    runs_df = pd.DataFrame(
        run_rows,
        columns=["CellType", "run", "n_cells", "first_cell", "last_cell", "n_features", "n_iter", "max_V", "nnz_V"],
    )
    return out, scores, list(se_names), runs_df


def _output_keys(key_added: str) -> list[tuple[str, str]]:
    return [
        ("obs", key_added), ("obs", key_added + "_score"), ("obs", key_added + "_scored"),
        ("obsm", key_added + "_scores"), ("uns", key_added),
    ]


def _write(target: Any, key_added: str, out: pd.DataFrame, scores: np.ndarray, se_names: list[str], info: dict) -> None:
    target.obs[key_added] = pd.Categorical(out["SE"].to_numpy())
    target.obs[key_added + "_score"] = out["PredScore"].to_numpy()
    target.obs[key_added + "_scored"] = out["scored"].to_numpy()
    target.obsm[key_added + "_scores"] = pd.DataFrame(scores, index=target.obs_names, columns=se_names)
    target.uns[key_added] = info
    record_written(target, _output_keys(key_added))


def _check_recover_args(min_score: Any, cells_per_run: Any, mode: Any, n_jobs: Any, collation: Any, key_added: Any) -> int:
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float, np.integer, np.floating)) or not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be a number in [0, 1] (scores sum to 1 per cell), got {min_score!r}")
    threads = _check_options(cells_per_run, mode, n_jobs)
    if collation not in ("icu", "C"):
        raise ValueError(f"collation must be 'icu' or 'C', got {collation!r}")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}")
    return threads


def recover(
    adata: Any,
    model: Mapping[str, pd.DataFrame],
    *,
    celltype_key: str = "CellType",
    min_score: float = 0.0,
    scale: bool = True,
    cells_per_run: int = 1000,
    mode: Mode = "exact",
    n_jobs: int | None = None,
    key_added: str = "SE_recovered",
    copy: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    gene_symbols: str | None = None,
    celltypes: Any = None,
    collation: _collate.Collation = "icu",
    layer: str | None = None,
    use_raw: bool = False,
    client: Any = None,
) -> Any:
    """Recover each cell's spatial ecotype (SE) with cell-type-specific recovery models.

    R SpatialEcoTyper's ``RecoverSE(dat, celltypes, Ws, min.score, ncell.per.run, scale)``.

    Parameters
    ----------
    adata
        An AnnData, cells x genes, log-normalised (dense, sparse or backed; only the model genes
        are read, in row blocks), or a genes x cells :class:`pandas.DataFrame` as in R (then
        ``celltypes`` is required). The matrix must hold log-normalised expression (not scaled:
        recovery scales each gene per cell type itself); an AnnData matrix with negative values
        is refused (it looks like ``sc.pp.scale`` output; see ``layer`` / ``use_raw``). A
        DataFrame is taken as it is, as R does.
    model
        A :class:`~ecorecover.RecoveryModel` or any mapping cell type -> W DataFrame (features x
        SEs, features named ``GENE__pos`` / ``GENE__neg`` or plain genes), as R's list of W.
    celltype_key
        Column of ``adata.obs`` holding the cell types (ignored when ``celltypes`` is given).
    min_score
        A cell whose best score is below this (or 0) gets SE ``"NonSE"``.
    scale
        Scale each gene over each cell type's cells (Seurat ScaleData) before recovery; cells
        expressing fewer than 3 genes of the models are then left unscored (as R).
    cells_per_run
        Exact mode: cells per NMF run (R's ``ncell.per.run``): the cells of a type are split into
        ``ceil(n / cells_per_run)`` contiguous runs of as-equal-as-possible size.
    mode
        ``"exact"`` reproduces R (iteration counts couple the cells of a run); ``"fast"`` solves
        every cell's KL problem to convergence on its own (SQP with an active-set QP, Rust),
        much faster, with the same SE for >= 99.5% of cells in our tests.
    n_jobs
        Threads (None or -1: all cores). Results do not depend on it.
    key_added
        Prefix of what is written into ``adata`` (see Returns). The default ``"SE_recovered"``
        differs from ``"SE"``, where :func:`ecorecover.train`, :func:`ecorecover.loocv` and
        :func:`ecorecover.metrics` read the true labels, so recovery never replaces them.
    copy
        Return a new AnnData holding the results instead of writing into ``adata``.
    overwrite
        Replace existing ``adata`` keys that ecorecover did not write. Keys an earlier
        ecorecover call wrote (listed in ``adata.uns["ecorecover"]["written_keys"]``) are
        replaced with a warning; any other existing key is refused (``ValueError``, before any
        work) unless ``overwrite=True``.
    progress
        Show a progress bar (tqdm) over runs.
    gene_symbols
        Column of ``adata.var`` holding gene symbols, when ``var_names`` are other identifiers
        (e.g. Ensembl IDs) and the model uses symbols.
    celltypes
        Cell-type labels, one per cell (as R's ``celltypes``); overrides ``celltype_key``. A
        Series indexed by the cell ids is matched by id, anything else by position.
    layer, use_raw
        Read the expression from ``adata.layers[layer]`` or from ``adata.raw`` (its ``X`` and
        ``var_names``) instead of ``adata.X``, as scanpy does (e.g. ``use_raw=True`` after
        ``sc.pp.scale``, which keeps the log-normalised data in ``raw``).
    collation
        How SE names are sorted for the score columns: ``"icu"`` as R in any normal locale
        (``nonSE < NonSE < SE01``), ``"C"`` as R under ``LC_COLLATE=C``. It decides the column
        order and so the InitSE of unscored cells (all-zero scores: the first column).
    client
        A :class:`dask.distributed.Client`: run the statistics passes and the runs as tasks on
        that Dask cluster (see :mod:`ecorecover.dask`; needs ``ecorecover[dask]``). ``X`` is
        then best a dask array (``anndata.experimental.read_lazy``) whose chunks the workers
        read themselves. Results are identical to the in-process ones. Without a client, a
        dask ``X`` is read block by block into this process.

    Returns
    -------
    pandas.DataFrame
        One row per cell in input order, indexed by cell id: ``CellType``, ``InitSE`` (best SE),
        ``SE`` (``InitSE``, or ``"NonSE"`` when the score is 0 or below ``min_score``),
        ``PredScore``, then one column per SE with the normalised scores (0 where not scored)
        and ``scored`` (bool). These columns are R's ``RecoverSE`` table, value for value: a
        cell that is not scored (no model for its cell type, fewer than 20 cells of its type,
        fewer than 3 model genes expressed, no model feature left) has all-zero scores,
        ``PredScore`` 0, ``SE`` ``"NonSE"`` and, as in R, the first SE column as ``InitSE``;
        ``scored`` is False only for these cells, so count or plot SEs over ``scored`` cells.
        ``df.attrs["ecorecover"]`` holds the run summary (also in ``uns``). When ``adata`` is an
        AnnData it also gets ``obs[key_added]`` (SE), ``obs[key_added + "_score"]``,
        ``obs[key_added + "_scored"]``, ``obsm[key_added + "_scores"]`` and ``uns[key_added]``
        (parameters, model provenance, genes found per cell type with the missing ones listed,
        unscored cells and why, runs with their iteration counts);
        with ``copy=True`` a new AnnData holding them is returned instead and ``adata`` is left
        untouched.

    Raises
    ------
    ValueError
        No modelled cell type in the data, label count mismatch, duplicated cell ids, NaN/inf in
        the model genes of the data, negative values in an AnnData's matrix, a model with
        non-finite weights, an SE named like an output column, an existing ``adata`` key that
        ecorecover did not write (without ``overwrite``).
    GeneMatchError
        No model gene at all is found in the data (a ``KeyError``; try ``gene_symbols``).

    Warns
    -----
    RecoveryWarning
        Cells left unscored (cell types without a model or with fewer than 20 cells, cells
        expressing fewer than 3 model genes, models with fewer than 5 genes in the data, runs
        without a model feature: one warning with the count), models with over 10% of their
        genes missing from the data (naming some, and a letter-case mismatch when there is one),
        and keys of an earlier ecorecover call being replaced.
    RawCountWarning
        The model genes of the data look like raw counts (R's guard applies ``log2(x + 1)``).

    Notes
    -----
    Progress and timings (cells per cell type, runs, seconds per pass) are logged to the
    ``"ecorecover.recover"`` logger at INFO level; the progress bar is off when stderr is not
    a terminal.
    """
    threads = _check_recover_args(min_score, cells_per_run, mode, n_jobs, collation, key_added)
    models = _check_model(model)
    _check_se_names(models)
    inp, labels = _read_input(adata, celltype_key, celltypes, gene_symbols, layer, use_raw)
    if copy and inp.adata is None:
        raise ValueError("copy=True returns an AnnData; it needs an AnnData input")
    if inp.adata is not None:
        check_writable(inp.adata, _output_keys(key_added), overwrite=overwrite, category=RecoveryWarning)
    if inp.src is not None and (sp.issparse(inp.x) or isinstance(inp.x, np.ndarray)):
        # scaled data refused up front when the matrix is in memory (backed / dask: in pass 1)
        check_nonnegative(inp.src, inp.x, inp.cell_ids, inp.genes)
    _duplicated_ids(inp.cell_ids)
    n = len(inp.cell_ids)
    counts = pd.Series(labels, dtype=object).value_counts(dropna=True)
    if not any(ct in counts.index for ct in models):
        raise ValueError(
            f"no cell type of the model is present in the data: the model has {list(models)}, the data's "
            f"cell types are {list(counts.index[:20])}{' ...' if len(counts) > 20 else ''}"
            + (f" (from adata.obs[{celltype_key!r}])" if celltypes is None and inp.adata is not None else "")
        )
    unscored = dict.fromkeys(("no_model", "too_few_cells", "too_few_genes_expressed", "too_few_model_genes", "no_features"), 0)
    groups, group_of_row, kept, genes_found = _groups(models, labels, inp, gene_symbols, counts, unscored)
    _warn_unmodelled(models, labels, counts, unscored)
    _log.info("%d cells, %d genes read of %d (%s); cell types scored: %s", n, len(kept), len(inp.genes), inp.where,
              ", ".join(f"{g.name} ({len(g.rows)})" for g in groups) or "none")
    rows = _Rows(inp.x, np.array(kept, dtype=np.int64), genes_by_cells=inp.genes_by_cells)
    engine_kw: dict[str, Any] = dict(
        scale=bool(scale), cells_per_run=int(cells_per_run), mode=mode, threads=threads, guard=True,
        block_size=_block_size(len(kept)), cell_ids=inp.cell_ids, gene_names=_Names(inp.genes, kept),
        progress=progress, refuse_negative=inp.negative_error,
    )
    if client is None:
        engine = _Engine(rows, groups, group_of_row, **engine_kw)
    else:  # the same engine with its passes as tasks on a Dask cluster
        from .dask import _DaskEngine

        engine = _DaskEngine(rows, groups, group_of_row, client=client, **engine_kw)
    timings = _run_engine(engine, groups, labels, unscored)
    out, scores, se_names, runs_df = _assemble(engine, groups, models, labels, inp, min_score, collation, unscored)
    # Models from load_published_models carry R's default-branch post-processing
    # (RecoverSE(Ws = NULL)): SE_CellStates pairs and the SE01..SE11 renaming of SE.
    post = _published_postprocess(model)
    if post is not None:
        out = post(out)
    info: dict[str, Any] = {
        "params": {
            "celltype_key": celltype_key if celltypes is None else "",
            "min_score": float(min_score), "scale": bool(scale), "cells_per_run": int(cells_per_run),
            "mode": mode, "collation": collation, "gene_symbols": gene_symbols or "",
            "matrix": inp.where, "n_cells": n, "raw_count_guard_fired": bool(engine.guard_fired),
            "published_postprocess": post is not None,
        },
        "model": _model_provenance(model, models),
        "genes_found": genes_found,
        "unscored": {**unscored, "total": int(sum(unscored.values()))},
        "se_names": list(se_names),
        "runs": runs_df,
        "timings": timings,
    }
    try:
        from importlib.metadata import version

        info["ecorecover_version"] = version("ecorecover")
    except Exception:  # pragma: no cover
        info["ecorecover_version"] = "unknown"
    # DataFrame.attrs must stay plain data: pandas compares attrs with == when it concatenates
    # frames (e.g. in repr), which a DataFrame value would make ambiguous. The runs table goes
    # there as records; uns keeps the DataFrame.
    out.attrs["ecorecover"] = {**info, "runs": runs_df.to_dict("records")}
    if inp.adata is None:
        return out
    target = inp.adata.copy() if copy else inp.adata
    _write(target, key_added, out, scores, se_names, info)
    return target if copy else out


def _run_engine(engine: _Engine, groups: list[_Group], labels: np.ndarray, unscored: dict[str, int]) -> dict[str, float]:
    """The statistics passes and the runs; returns their timings (also logged)."""
    timings = {"statistics_s": 0.0, "runs_s": 0.0}
    if not groups:
        return timings
    t0 = time.perf_counter()
    engine.statistics()
    timings["statistics_s"] = time.perf_counter() - t0
    omitted = int(engine.omitted.sum())
    if omitted:
        by_type = pd.Series(labels[engine.omitted]).value_counts()
        warnings.warn(
            f"{omitted} cells express fewer than {MIN_GENES_EXPRESSED} model genes and are not scored "
            "(scores 0, SE 'NonSE', scored False): " + ", ".join(f"{ct} ({c})" for ct, c in by_type.items()),
            RecoveryWarning,
            stacklevel=3,
        )
    unscored["too_few_genes_expressed"] = omitted
    t0 = time.perf_counter()
    engine.run()
    timings["runs_s"] = time.perf_counter() - t0
    _log.info("statistics passes %.2f s; %d runs (%s mode) %.2f s", timings["statistics_s"], len(engine.results),
              engine.mode, timings["runs_s"])
    return timings


def _published_postprocess(model: Any) -> Any:
    """R's default-branch post-processing when ``model`` carries it (else None)."""
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping) or "postprocess" not in params:
        return None
    from .io import apply_published_postprocess

    return lambda table: apply_published_postprocess(table, params)


def nmf_predict(
    w: pd.DataFrame,
    x: Any,
    *,
    scale: bool = True,
    cells_per_run: int = 1000,
    sum_to_one: bool = True,
    mode: Mode = "exact",
    n_jobs: int | None = None,
    return_runs: bool = False,
) -> Any:
    """R SpatialEcoTyper's ``NMFpredict(W, testdat, scale, ncell.per.run, sum2one)``: scores of
    every SE (columns of ``w``) for every cell of ``x`` with one recovery model.

    Parameters
    ----------
    w
        The model: features x SEs DataFrame (``GENE__pos`` / ``GENE__neg`` rows, or genes).
    x
        Cells x genes: a DataFrame (index = cell ids, columns = genes) or an AnnData. Unlike
        :func:`recover` there is no raw-count guard, and the "< 3 genes" rule (with ``scale``)
        counts every gene of ``x``.
    scale, cells_per_run, mode, n_jobs
        As in :func:`recover`.
    sum_to_one
        Normalise each cell's scores to sum to 1 (R's ``sum2one``).
    return_runs
        Also return, per run, a dict with ``cells``, ``n_iter`` and (exact mode) ``features``
        (V's rows in R's order), ``H0`` and ``H_raw`` (SEs x cells, before normalisation).

    Returns
    -------
    pandas.DataFrame
        Scored cells (with ``scale``, those expressing fewer than 3 genes are omitted, as R) x
        SEs, in ``w``'s column order; with ``return_runs``, ``(scores, runs)``.
    """
    threads = _check_options(cells_per_run, mode, n_jobs)
    w = _check_model({"W": w})["W"]
    try:
        import anndata
    except ImportError:  # pragma: no cover
        anndata = None
    if anndata is not None and isinstance(x, anndata.AnnData):
        cell_ids, genes, mat = [str(c) for c in x.obs_names], [str(g) for g in x.var_names], x.X
    elif isinstance(x, pd.DataFrame):
        cell_ids, genes = [str(c) for c in x.index], [str(g) for g in x.columns]
        mat = x.to_numpy(dtype=np.float64)
    else:
        raise TypeError(f"x must be a cells x genes DataFrame or an AnnData, got {type(x).__name__}")
    _duplicated_ids(cell_ids)
    gene_pos = _unique_names(genes, "gene names in x")
    mgenes = _model_genes(w.index)
    present = [g for g in mgenes if g in gene_pos]
    if not present:
        raise GeneMatchError(
            f"none of the model's {len(mgenes)} genes is in x: the model uses identifiers like {mgenes[:5]}, "
            f"x has columns like {genes[:5]}"
        )
    n = len(cell_ids)
    g = _Group(
        name="W", w=w, genes=mgenes, present=present,
        cols=np.array([gene_pos[p] for p in present], dtype=np.int64), posneg="__" in str(w.index[0]),
    )
    g.rows = np.arange(n, dtype=np.int64)
    if len(present) < MIN_MODEL_GENES:
        warnings.warn(
            f"only {len(present)} of the model's genes are in x (at least {MIN_MODEL_GENES} needed): "
            "scores are NaN, as R",
            RecoveryWarning,
            stacklevel=2,
        )
        out = pd.DataFrame(np.nan, index=cell_ids, columns=list(w.columns))
        return (out, []) if return_runs else out
    engine = _Engine(
        _Rows(mat, np.arange(len(genes), dtype=np.int64)), [g], np.zeros(n, dtype=np.int64), scale=bool(scale),
        cells_per_run=int(cells_per_run), mode=mode, threads=threads, guard=False, block_size=_block_size(len(genes)),
        cell_ids=cell_ids, gene_names=genes, sum_to_one=sum_to_one, keep_details=return_runs,
    )
    engine.statistics()
    if engine.omitted.any():
        warnings.warn(
            f"{int(engine.omitted.sum())} cells express fewer than {MIN_GENES_EXPRESSED} genes and are omitted, as R",
            RecoveryWarning,
            stacklevel=2,
        )
    engine.run()
    parts, idx, runs = [], [], []
    for r in engine.results:
        if r.scores is None:
            continue
        parts.append(r.scores)
        idx.extend(cell_ids[i] for i in r.rows)
        if return_runs:
            d = dict(r.detail or {})
            d["cells"] = [cell_ids[i] for i in r.rows]
            d["n_iter"] = r.n_iter
            runs.append(d)
    vals = np.vstack(parts) if parts else np.zeros((0, w.shape[1]))
    out = pd.DataFrame(vals, index=idx, columns=list(w.columns))
    return (out, runs) if return_runs else out
