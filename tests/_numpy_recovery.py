"""Recovery's former numpy data path, kept as the tests' independent reference for the compiled
gather kernels (``_core.gather_*``), which replaced it in ``ecorecover.recovery``.

Row blocks become float64 CSR restricted to the kept columns; pass 1 sums the scored cells'
non-zeros with ``np.add.at`` (sequential, in cell order), pass 2 their squared deviations; the
raw-count guard repeats pass 1 on ``log2(x + 1)``. Not used by the package.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ecorecover.preprocessing import RAW_COUNT_MAX
from ecorecover.recovery.constants import EXPRESSED, MIN_GENES_EXPRESSED
from ecorecover.recovery.matching import Group
from ecorecover.recovery.statistics import zscore

__all__ = ["Scan", "Stats", "as_csr_block", "features", "log_transform", "reference_statistics", "scan_block", "zscore"]


def _is_range(cols: np.ndarray) -> bool:
    return len(cols) == 0 or (cols[0] == 0 and bool(np.all(np.diff(cols) == 1)))


def as_csr_block(blk: Any, cols: np.ndarray | None) -> sp.csr_matrix:
    """A block of rows (dense or sparse) restricted to columns ``cols`` (None: all), as float64 CSR."""
    if sp.issparse(blk):
        blk = blk.tocsr()
        if cols is not None and (len(cols) != blk.shape[1] or not _is_range(cols)):
            blk = blk[:, cols]
        out = sp.csr_matrix(blk).astype(np.float64, copy=False)
        out.sum_duplicates()
        return out
    blk = np.asarray(blk)
    if cols is not None and (not _is_range(cols) or len(cols) != blk.shape[1]):
        blk = blk[:, cols]
    return sp.csr_matrix(np.asarray(blk, dtype=np.float64))


def _rows(blk: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(blk.shape[0], dtype=np.int64), np.diff(blk.indptr))


@dataclass(frozen=True)
class Scan:
    nonfinite: tuple[int, int, int, float] | None
    negative: tuple[int, int, float] | None
    min: float
    max: float
    implicit_zero: bool


def scan_block(blk: sp.csr_matrix, find_negative: bool) -> Scan:
    """First NaN/inf (row, column, count, value), first negative (row, column, value), range."""
    bad = ~np.isfinite(blk.data)
    nonfinite = None
    if bad.any():
        e = int(np.argmax(bad))
        nonfinite = (int(_rows(blk)[e]), int(blk.indices[e]), int(bad.sum()), float(blk.data[e]))
    negative = None
    if find_negative and blk.nnz and (neg := blk.data < 0).any():
        e = int(np.argmax(neg))
        negative = (int(_rows(blk)[e]), int(blk.indices[e]), float(blk.data[e]))
    mn, mx = (float(blk.data.min()), float(blk.data.max())) if blk.nnz else (np.inf, -np.inf)
    return Scan(nonfinite, negative, mn, mx, bool(blk.nnz < blk.shape[0] * blk.shape[1]))


def log_transform(blk: sp.csr_matrix, fired: bool) -> sp.csr_matrix:
    if fired:
        blk = blk.copy()
        blk.data = np.log2(blk.data + 1.0)
    return blk


@dataclass
class Stats:
    mean: np.ndarray
    sd: np.ndarray | None
    xmin: np.ndarray
    xmax: np.ndarray
    omitted: np.ndarray
    fired: bool


def _pass1(blocks: list[sp.csr_matrix], gor: np.ndarray, scale: bool, size: int, k: int) -> tuple[Any, ...]:
    s, nnz = np.zeros(size), np.zeros(size, dtype=np.int64)
    lo, hi = np.full(size, np.inf), np.full(size, -np.inf)
    omitted = np.zeros(len(gor), dtype=bool)
    a = 0
    for blk in blocks:
        b = a + blk.shape[0]
        grp = gor[a:b]
        if scale:
            expressed = np.bincount(_rows(blk)[blk.data > EXPRESSED], minlength=blk.shape[0])
            omitted[a:b] = (expressed < MIN_GENES_EXPRESSED) & (grp >= 0)
            grp = np.where(omitted[a:b], -1, grp)
        gr = grp[_rows(blk)]
        sel = (gr >= 0) & (blk.data != 0.0)
        flat = gr[sel] * k + blk.indices[sel].astype(np.int64)
        np.add.at(s, flat, blk.data[sel])
        nnz += np.bincount(flat, minlength=size)
        np.minimum.at(lo, flat, blk.data[sel])
        np.maximum.at(hi, flat, blk.data[sel])
        a = b
    return s, nnz, lo, hi, omitted


def reference_statistics(x: Any, kept: np.ndarray, gor: np.ndarray, g_n: int, scale: bool, block: int) -> Stats:
    """Means, sds, ranges and omissions per (group, kept column) slot, with R's raw-count guard."""
    n, k = x.shape[0], len(kept)
    raw = [as_csr_block(x[a : min(n, a + block)], kept) for a in range(0, n, block)]
    scans = [scan_block(b, False) for b in raw]
    mn = min(sc.min for sc in scans)
    mn = min(mn, 0.0) if any(sc.implicit_zero for sc in scans) else mn
    fired = bool(mn >= 0 and max(sc.max for sc in scans) > RAW_COUNT_MAX)
    blocks = [log_transform(b, fired) for b in raw]
    s, nnz, lo, hi, omitted = _pass1(blocks, gor, scale, g_n * k, k)
    eff = np.where(omitted, -1, gor)
    n_t = np.repeat(np.bincount(eff[eff >= 0], minlength=g_n), k).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n_t
    sd = None
    if scale:
        sq = np.zeros(g_n * k)
        a = 0
        for blk in blocks:
            gr = eff[a : a + blk.shape[0]][_rows(blk)]
            sel = (gr >= 0) & (blk.data != 0.0)
            flat = gr[sel] * k + blk.indices[sel].astype(np.int64)
            d = blk.data[sel] - mean[flat]
            np.add.at(sq, flat, d * d)
            a += blk.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            sd = np.sqrt((sq + mean * mean * (n_t - nnz)) / (n_t - 1.0))
    has_zero = nnz < n_t
    xmin = np.where(has_zero, np.minimum(lo, 0.0), lo)
    xmax = np.where(has_zero, np.maximum(hi, 0.0), hi)
    return Stats(mean, sd, xmin, xmax, omitted, fired)


def features(g: Group, z: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """V (cells x features) and feature names as NMFpredict builds them for one run, after its
    zero-variance filter over the run."""
    if g.posneg:
        v = np.concatenate([np.maximum(z, 0.0), np.maximum(-z, 0.0)], axis=1)
        names = [s + "__pos" for s in g.present] + [s + "__neg" for s in g.present]
    else:
        v, names = z, list(g.present)
    keep = ~np.all(v == v[:1], axis=0) if v.shape[0] else np.zeros(v.shape[1], dtype=bool)
    in_w = g.w.index
    idx = [i for i, nm in enumerate(names) if keep[i] and nm in in_w]
    return v[:, idx], [names[i] for i in idx]
