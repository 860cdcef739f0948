"""Row blocks of a sparse matrix stored in an HDF5 file (a backed AnnData), read with bounded memory.

A CSR file keeps each cell's values together: :class:`CsrRows` reads ``indptr`` once, then a
row block as one slice of ``indices`` and one of ``data``, straight from h5py (about 3x less
work than slicing the backed matrix through anndata, which validates and converts each block).
A CSC file keeps each gene's cells together, so rows cannot be sliced from it directly (anndata
would load the whole matrix for every row block). :class:`CscRows` reads, once, the row indices
of the kept genes' columns to find where each row block starts in every column, then reads a
block as one slice of ``indices`` and ``data`` per kept column: a CSC matrix of the block's
rows x the kept genes, which the gather kernels read as it is. Only the kept genes are read.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["Buffers", "CscRows", "CsrRows", "backed_group", "csc_group"]

I64 = npt.NDArray[np.int64]

#: Stored values per row block of a CSC file (bounds the memory of a block: ~12 bytes each).
BLOCK_VALUES = 4_000_000


def backed_group(x: Any, fmt: str) -> Any:
    """The HDF5 group (``data``, ``indices``, ``indptr``) of a backed ``fmt`` ("csr" or "csc")
    matrix, else None."""
    if getattr(x, "format", None) != fmt or sp.issparse(x):
        return None
    group = getattr(x, "group", None)
    if group is None or not all(k in group for k in ("data", "indices", "indptr")):
        return None
    return group


def csc_group(x: Any) -> Any:
    """The HDF5 group of a backed CSC matrix, else None."""
    return backed_group(x, "csc")


class Buffers:
    """Arrays reused from block to block by one reader of consecutive blocks (the blocks read
    ahead take turns in ``slots`` sets): a block read into a set stays valid until the same set
    is read into again. Large arrays are mapped pages of their own (``mmap``), returned to the
    system when freed: block-sized arrays from malloc would stay in its heap after the passes
    (glibc raises its mmap threshold once such an array is freed), raising the peak RSS of
    what follows."""

    def __init__(self, slots: int = 2) -> None:
        self.slots, self._turn = slots, 0
        self._arrays: dict[tuple[int, str], npt.NDArray[Any]] = {}

    def next_slot(self) -> int:
        """The set the next block is read into."""
        self._turn += 1
        return self._turn % self.slots

    def get(self, slot: int, name: str, n: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        """``n`` values of ``dtype`` (contents undefined), from set ``slot``."""
        buf = self._arrays.get((slot, name))
        if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
            self._arrays.pop((slot, name), None)
            buf = _mapped(n + n // 8, np.dtype(dtype))
            self._arrays[(slot, name)] = buf
        return buf[:n]


def _mapped(n: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """``n`` values of ``dtype``: in pages of their own when over 1 MB."""
    if n * dtype.itemsize < 1 << 20:
        return np.empty(n, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, n * dtype.itemsize), dtype=dtype)


def _array(buffers: Buffers | None, slot: int, name: str, n: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    return np.empty(n, dtype=dtype) if buffers is None else buffers.get(slot, name, n, dtype)


class CsrRows:
    """Row blocks of a CSR matrix in ``group`` of ``shape``, read with h5py."""

    def __init__(self, group: Any, shape: tuple[int, int]) -> None:
        self.group, self.shape = group, shape
        self.indptr = np.asarray(group["indptr"][:], dtype=np.int64)  # 8 bytes a row
        if len(self.indptr) != shape[0] + 1:
            raise ValueError(f"the backed CSR matrix's indptr has {len(self.indptr)} entries for {shape[0]} rows")
        self._indices, self._data = group["indices"], group["data"]
        # Column indices are read as int32 whatever their stored type (HDF5 converts them; one
        # out of int32's range is clipped, still out of range, which the kernels report), so
        # scipy keeps the arrays as they are (it would copy int64 ones that fit in int32).
        self._index_dtype = np.dtype(np.int32) if shape[1] < 2**31 else np.dtype(np.int64)

    def read(self, a: int, b: int, buffers: Buffers | None = None) -> sp.csr_matrix:
        """Rows ``a:b`` (all columns), as CSR: the stored values as they are in the file (in
        ``buffers``' next set when given)."""
        p, q = int(self.indptr[a]), int(self.indptr[b])
        if not 0 <= p <= q <= len(self._data):
            raise ValueError(f"the backed CSR matrix's indptr is invalid at rows {a}..{b}")
        slot = buffers.next_slot() if buffers is not None else 0
        indices = _array(buffers, slot, "indices", q - p, self._index_dtype)
        data = _array(buffers, slot, "data", q - p, self._data.dtype)
        if q > p:
            self._indices.read_direct(indices, np.s_[p:q])
            self._data.read_direct(data, np.s_[p:q])
        indptr = self.indptr[a : b + 1] - p
        if indices.dtype == np.int32 and q - p < 2**31:
            indptr = indptr.astype(np.int32)  # the kernels want both index arrays of one type
        elif indices.dtype == np.int32:
            indices = indices.astype(np.int64)
        return sp.csr_matrix((data, indices, indptr), shape=(b - a, self.shape[1]), copy=False)


class CscRows:
    """Row blocks of the kept columns ``cols`` of a CSC matrix in ``group`` of ``shape``."""

    def __init__(self, group: Any, shape: tuple[int, int], cols: I64) -> None:
        self.group, self.shape = group, shape
        self.cols = np.asarray(cols, dtype=np.int64)
        indptr = np.asarray(group["indptr"][:], dtype=np.int64)
        self.start, self.end = indptr[self.cols], indptr[self.cols + 1]
        self.nnz = int((self.end - self.start).sum())
        self._cuts: dict[tuple[int, ...], I64] = {}
        self._bounds: dict[int, list[tuple[int, int]]] = {}

    def bounds(self, values: int) -> list[tuple[int, int]]:
        """Row blocks holding about ``max(values, BLOCK_VALUES)`` stored values each (assuming
        the values spread evenly over the rows)."""
        if values not in self._bounds:
            n = self.shape[0]
            per_row = max(1.0, self.nnz / max(1, n))
            size = int(max(1024, min(n, max(values, BLOCK_VALUES) / per_row)))
            self._bounds[values] = [(a, min(n, a + size)) for a in range(0, n, size)]
        return self._bounds[values]

    def _cut(self, edges: tuple[int, ...]) -> I64:
        """Per kept column, the positions in ``indices`` of the rows ``edges`` (where each
        block starts, and where the last one ends): one read of the kept columns' row indices."""
        if edges not in self._cuts:
            at = np.array(edges, dtype=np.int64)
            cut = np.empty((len(self.cols), len(at)), dtype=np.int64)
            indices = self.group["indices"]
            for j, (s, e) in enumerate(zip(self.start.tolist(), self.end.tolist())):
                rows = np.asarray(indices[s:e])
                if rows.size > 1 and not bool(np.all(rows[1:] > rows[:-1])):
                    raise ValueError(
                        f"the backed CSC matrix's column {int(self.cols[j])} has unsorted or repeated row "
                        "indices; load it into memory (adata.to_memory()) or store it sorted"
                    )
                cut[j] = s + np.searchsorted(rows, at)
            self._cuts = {edges: cut}  # one set of blocks at a time
        return self._cuts[edges]

    def read(self, a: int, b: int, buffers: Buffers | None = None) -> sp.csc_matrix:
        """Rows ``a:b`` x the kept columns (in ``cols`` order), as CSC (in ``buffers``' next set
        when given)."""
        edges: tuple[int, ...] = (a, b)
        for bd in self._bounds.values():
            if (a, b) in bd:
                edges = tuple(p for p, _ in bd) + (bd[-1][1],)
                break
        cut = self._cut(edges)
        i = edges.index(a)
        s, e = cut[:, i], cut[:, i + 1]
        indptr = np.zeros(len(self.cols) + 1, dtype=np.int64)
        np.cumsum(e - s, out=indptr[1:])
        indices_ds, data_ds = self.group["indices"], self.group["data"]
        # Row indices as int32 (converted by HDF5) when they fit, with an int32 indptr: scipy
        # keeps such arrays as they are (it would copy int64 ones that fit in int32).
        small = self.shape[0] < 2**31 and int(indptr[-1]) < 2**31
        slot = buffers.next_slot() if buffers is not None else 0
        indices = _array(buffers, slot, "indices", int(indptr[-1]), np.int32 if small else np.int64)
        data = _array(buffers, slot, "data", int(indptr[-1]), data_ds.dtype)
        for j, (p, q) in enumerate(zip(s.tolist(), e.tolist())):
            if q > p:
                o = int(indptr[j])
                data_ds.read_direct(data, np.s_[p:q], np.s_[o : o + q - p])
                indices_ds.read_direct(indices, np.s_[p:q], np.s_[o : o + q - p])
        indices -= a
        if small:
            indptr = indptr.astype(np.int32)
        out = sp.csc_matrix((data, indices, indptr), shape=(b - a, len(self.cols)), copy=False)
        out.has_canonical_format = True  # rows ascend (checked when cut), no repeats
        return out
