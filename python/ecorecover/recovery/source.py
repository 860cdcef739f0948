"""Row-block access to the input, in the layout the compiled gather kernels read in place.

Whatever the input is (a dense array in any strides, scipy CSR or CSC, a genes x cells array
from a DataFrame, a backed AnnData's matrix, a dask array), :class:`RowSource` hands out
:class:`Block` s: rows of a kernel-readable matrix (``_core.gather_*``: a 2-d numpy array, or
scipy CSR / CSC, of float64/float32/int64/int32/uint32/uint16 values) and the columns holding
the model genes. An in-memory matrix is one block over its own buffers (no format conversion,
no densifying, CSC stays CSC); a backed or dask matrix is read in consecutive row blocks, so
no more than two blocks of the data are in memory at a time: the next block is read in a thread
while the current one is used (:mod:`.backed` reads CSR and CSC files with h5py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..errors import ShapeError
from .backed import Buffers, CscRows, CsrRows, backed_group

__all__ = [
    "Block", "CsrArrays", "RowSource", "block_size", "dask_columns", "is_dask", "is_range", "kernel_matrix",
]

IntArray = npt.NDArray[np.int64]

#: Value types the gather kernels read as they are; smaller ones are widened exactly to float32.
_KERNEL_DTYPES = {np.dtype(t) for t in (np.float64, np.float32, np.int64, np.int32, np.uint32, np.uint16)}


@dataclass(frozen=True)
class Block:
    """Input rows ``a..b``: rows ``start .. start + b - a`` of ``m`` (kernel-readable), whose
    columns ``cols`` hold the kept genes (in slot order)."""

    m: Any
    start: int
    a: int
    b: int
    cols: IntArray

    @property
    def stop(self) -> int:
        """The row of ``m`` after the block."""
        return self.start + self.b - self.a


@dataclass(frozen=True)
class CsrArrays:
    """A CSR matrix as three arrays (what ``_core.gather_csr`` returns), readable by the kernels
    and by the fast solver without going through scipy."""

    indptr: IntArray
    indices: IntArray
    data: npt.NDArray[np.float64]
    shape: tuple[int, int]
    format: str = "csr"
    has_sorted_indices: bool = True


def _check_values(dtype: np.dtype[Any]) -> None:
    if dtype.kind not in "iuf":
        raise TypeError(f"the expression matrix must hold numbers, got dtype {dtype}")


def _kernel_dtype(dtype: np.dtype[Any]) -> np.dtype[Any] | None:
    """The dtype to convert values to (None: read as they are)."""
    _check_values(dtype)
    native = dtype.newbyteorder("=")
    if native in _KERNEL_DTYPES:
        return None if dtype.isnative else native
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)  # exact widening


def kernel_matrix(x: Any) -> Any:
    """``x`` (cells x genes) as the kernels read it: a numpy array or scipy CSR / CSC matrix is
    returned as it is (other sparse formats become CSR, unusual value types are widened exactly,
    duplicated sparse entries are summed in a copy)."""
    if isinstance(x, CsrArrays):
        return x
    if sp.issparse(x):
        if x.format not in ("csr", "csc"):
            x = x.tocsr()
        conv = _kernel_dtype(x.dtype)
        if x.indices.dtype != x.indptr.dtype or x.indices.dtype not in (np.int32, np.int64):
            x = x.copy()
            x.indices, x.indptr = x.indices.astype(np.int64), x.indptr.astype(np.int64)
        if conv is not None:
            x = x.astype(conv)
        if not x.has_canonical_format:
            x = x.copy()
            x.sum_duplicates()  # the kernels refuse duplicates; summed as scipy does
        return x
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ShapeError(f"the expression matrix must be 2-dimensional, got shape {arr.shape}")
    conv = _kernel_dtype(arr.dtype)
    return arr if conv is None else arr.astype(conv)


class RowSource:
    """Row blocks (cells) of the input; ``cols``: the input columns of the kept genes."""

    def __init__(self, x: Any, cols: npt.ArrayLike, *, genes_by_cells: bool = False) -> None:
        self.cols: IntArray = np.ascontiguousarray(cols, dtype=np.int64)
        self.genes_by_cells = genes_by_cells
        self.x: Any = x
        self.n: int = int(x.shape[1] if genes_by_cells else x.shape[0])
        self._csc: CscRows | None = None
        self._csr: CsrRows | None = None
        self.read_s = 0.0  # seconds spent reading blocks (backed / dask input)
        self.matrix: Any = None  # the whole input, kernel-readable, when it is in memory
        if genes_by_cells:  # a genes x cells array (R's orientation): its transpose, a view
            self.matrix = kernel_matrix(np.asarray(x).T)
        elif sp.issparse(x) or isinstance(x, np.ndarray):
            self.matrix = kernel_matrix(x)
        elif (group := backed_group(x, "csc")) is not None:
            self._csc = CscRows(group, (self.n, int(x.shape[1])), self.cols)
        elif (group := backed_group(x, "csr")) is not None:
            self._csr = CsrRows(group, (self.n, int(x.shape[1])))
        elif not is_dask(x) and not hasattr(x, "shape"):
            raise TypeError(f"the expression matrix must be an array, got {type(x).__name__}")

    @property
    def in_memory(self) -> bool:
        """Whether the whole input is in memory (one block, rows read anywhere)."""
        return self.matrix is not None

    def whole(self) -> Block:
        """All rows, read in place (in-memory input only)."""
        return Block(self.matrix, 0, 0, self.n, self.cols)

    def block(self, a: int, b: int, buffers: Buffers | None = None) -> Block:
        """Rows ``a:b``: a view of an in-memory input, else read (a CSR or CSC file: into
        ``buffers`` when given)."""
        if self.matrix is not None:
            return Block(self.matrix, a, a, b, self.cols)
        t0 = time.perf_counter()
        try:
            return self._read(a, b, buffers)
        finally:
            self.read_s += time.perf_counter() - t0

    def _read(self, a: int, b: int, buffers: Buffers | None) -> Block:
        if self._csc is not None:
            m = kernel_matrix(self._csc.read(a, b, buffers))
            return Block(m, 0, a, b, np.arange(len(self.cols), dtype=np.int64))
        if self._csr is not None:
            return Block(kernel_matrix(self._csr.read(a, b, buffers)), 0, a, b, self.cols)
        blk = self.x[a:b]
        if is_dask(blk):  # a dask array (e.g. anndata.experimental.read_lazy): read this block only
            sub = dask_columns(blk, self.cols)
            cols = self.cols if sub is blk else np.arange(len(self.cols), dtype=np.int64)
            return Block(kernel_matrix(sub.compute()), 0, a, b, cols)
        return Block(kernel_matrix(blk), 0, a, b, self.cols)

    def bounds(self, size: int) -> list[tuple[int, int]]:
        """The row blocks :meth:`blocks` reads (``size`` rows; a CSC file: by stored values)."""
        if self._csc is not None:
            return self._csc.bounds(size * max(1, len(self.cols)))
        return [(a, min(self.n, a + size)) for a in range(0, self.n, size)]

    def blocks(self, size: int) -> Iterator[Block]:
        """Consecutive blocks of about ``size`` rows. Input that is not in memory is read one
        block ahead, in a thread (the kernels release the GIL, h5py mostly does), into two sets
        of arrays used in turn: a block is valid until the next one is asked for."""
        bounds = self.bounds(size)
        if self.matrix is not None or len(bounds) < 2:
            for a, b in bounds:
                yield self.block(a, b)
            return
        buffers = Buffers(slots=2)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecorecover-read") as pool:
            ahead: Future[Block] = pool.submit(self.block, *bounds[0], buffers)
            for i in range(len(bounds)):
                blk = ahead.result()
                if i + 1 < len(bounds):
                    ahead = pool.submit(self.block, *bounds[i + 1], buffers)
                yield blk


def block_size(n_cols: int) -> int:
    """Rows per block: about 4e6 values of the kept columns (32 MB dense)."""
    return int(max(1024, min(65536, 4_000_000 // max(1, n_cols))))


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a dask collection (without importing dask)."""
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "compute")


def dask_columns(x: Any, cols: IntArray) -> Any:
    """A dask array restricted to columns ``cols`` (left alone when they are all of them)."""
    if is_range(cols) and len(cols) == x.shape[1]:
        return x
    return x[:, cols]


def is_range(cols: IntArray) -> bool:
    """Whether ``cols`` is ``0, 1, ..., len - 1``."""
    return len(cols) == 0 or (cols[0] == 0 and bool(np.all(np.diff(cols) == 1)))
