"""Row blocks of a CSC matrix stored in an HDF5 file (a backed AnnData), read with bounded memory.

A CSC file keeps each gene's cells together, so rows cannot be sliced from it directly (anndata
would load the whole matrix for every row block). :class:`CscRows` reads, once, the row indices
of the kept genes' columns to find where each row block starts in every column, then reads a
block as one slice of ``indices`` and ``data`` per kept column: a CSC matrix of the block's
rows x the kept genes, which the gather kernels read as it is. Only the kept genes are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["CscRows", "csc_group"]

I64 = npt.NDArray[np.int64]

#: Stored values per row block of a CSC file (bounds the memory of a block: ~12 bytes each).
BLOCK_VALUES = 4_000_000


def csc_group(x: Any) -> Any:
    """The HDF5 group (``data``, ``indices``, ``indptr``) of a backed CSC matrix, else None."""
    if getattr(x, "format", None) != "csc" or sp.issparse(x):
        return None
    group = getattr(x, "group", None)
    if group is None or not all(k in group for k in ("data", "indices", "indptr")):
        return None
    return group


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

    def read(self, a: int, b: int) -> sp.csc_matrix:
        """Rows ``a:b`` x the kept columns (in ``cols`` order), as CSC."""
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
        indices = np.empty(int(indptr[-1]), dtype=np.int64)
        data = np.empty(int(indptr[-1]), dtype=data_ds.dtype)
        for j, (p, q) in enumerate(zip(s.tolist(), e.tolist())):
            if q > p:
                o = int(indptr[j])
                data_ds.read_direct(data, np.s_[p:q], np.s_[o : o + q - p])
                indices[o : o + q - p] = indices_ds[p:q]
        indices -= a
        out = sp.csc_matrix((data, indices, indptr), shape=(b - a, len(self.cols)), copy=False)
        out.has_canonical_format = True  # rows ascend (checked when cut), no repeats
        return out
