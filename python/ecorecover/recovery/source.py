"""Row-block access to the input: blocks of cells restricted to the model genes, as float64 CSR.

Whatever the input is (a dense array, scipy sparse, a backed AnnData's matrix, a dask array, or
a genes x cells array from a DataFrame), :class:`RowSource` hands out consecutive row blocks
holding only the kept columns, so no more than one block of the data is in memory at a time.
:func:`as_csr_block` is the one conversion of a block; the statistics passes and the runs see
nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..errors import ShapeError

__all__ = ["RowSource", "as_csr_block", "block_rows", "block_size", "dask_columns", "is_dask", "is_range"]

IntArray = npt.NDArray[np.int64]


class RowSource:
    """Row blocks (cells) of the input restricted to columns ``cols``, as float64 CSR."""

    def __init__(self, x: Any, cols: npt.ArrayLike, *, genes_by_cells: bool = False) -> None:
        self.cols: IntArray = np.asarray(cols, dtype=np.int64)
        self.genes_by_cells = genes_by_cells
        if sp.issparse(x) and not genes_by_cells and x.format != "csr":
            # Column access of CSC (or other formats): keep only the needed columns once.
            x = sp.csr_matrix(x.tocsc()[:, self.cols])
            self.cols = np.arange(x.shape[1], dtype=np.int64)
        self.x: Any = x
        self.n: int = int(x.shape[1] if genes_by_cells else x.shape[0])

    def block(self, a: int, b: int) -> sp.csr_matrix:
        """Rows ``a:b`` of the kept columns."""
        x = self.x
        if self.genes_by_cells:  # a genes x cells array (R's orientation)
            return as_csr_block(np.asarray(x[self.cols, a:b]).T, None)
        blk = x[a:b]
        if is_dask(blk):  # a dask array (e.g. anndata.experimental.read_lazy): read this block only
            return as_csr_block(dask_columns(blk, self.cols).compute(), None)
        return as_csr_block(blk, self.cols)

    def blocks(self, size: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first row, block) of consecutive blocks of ``size`` rows."""
        for a in range(0, self.n, size):
            yield a, self.block(a, min(self.n, a + size))


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


def as_csr_block(blk: Any, cols: IntArray | None) -> sp.csr_matrix:
    """A block of rows (dense or sparse) restricted to columns ``cols`` (None: all), as float64 CSR."""
    if sp.issparse(blk):
        if cols is not None and (len(cols) != blk.shape[1] or not is_range(cols)):
            blk = blk.tocsr()[:, cols]
        else:
            blk = blk.tocsr()
    else:
        blk = np.asarray(blk)
        if blk.ndim != 2:
            raise ShapeError(f"the expression matrix must be 2-dimensional, got shape {blk.shape}")
        if cols is not None and (not is_range(cols) or len(cols) != blk.shape[1]):
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


def block_rows(blk: sp.csr_matrix) -> IntArray:
    """Row index of every stored element of a CSR block."""
    return np.repeat(np.arange(blk.shape[0], dtype=np.int64), np.diff(blk.indptr))
