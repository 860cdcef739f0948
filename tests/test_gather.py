"""The compiled data path (``_core.gather_*``) against recovery's numpy path: the same means,
sds, omissions and run matrices, bit for bit, for dense (C and F order), CSR and CSC inputs of
float and integer types, with implicit and explicit zeros, negative values, the raw-count guard
and the "< 3 genes" omissions."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from _numpy_recovery import Stats, as_csr_block, log_transform, reference_statistics, scan_block, zscore
from _numpy_recovery import features as _features
from ecorecover import _core
from ecorecover.preprocessing import RAW_COUNT_MAX
from ecorecover.recovery.matching import Group


def _data(seed: int, n: int, p: int, *, counts: bool, negative: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, p)) < 0.3
    vals = rng.integers(1, 200, (n, p)).astype(float) if counts else rng.random((n, p)) * 4
    if negative:
        vals[rng.random((n, p)) < 0.05] *= -1
    out = np.where(x, vals, 0.0)
    out[: n // 10] = 0.0  # cells expressing nothing: omitted when scaling
    out[n // 10, :2] = 1.0  # two genes only: omitted too
    return out


def _layouts(x: np.ndarray, dtype: Any) -> dict[str, Any]:
    xd = x.astype(dtype)
    csr = sp.csr_matrix(xd)
    csr.data[::7] = 0  # explicit zeros
    csr32 = sp.csr_matrix((csr.data, csr.indices.astype(np.int32), csr.indptr.astype(np.int32)), shape=x.shape)
    csc = sp.csc_matrix(xd)
    csc.data[::5] = 0
    return {"C": np.ascontiguousarray(xd), "F": np.asfortranarray(xd), "csr": csr, "csr32": csr32, "csc": csc}


def _reference(x: Any, kept: np.ndarray, gor: np.ndarray, g_n: int, scale: bool, block: int) -> Stats:
    return reference_statistics(x, kept, gor, g_n, scale, block)


def _statistics(x: Any, kept: np.ndarray, gor: np.ndarray, g_n: int, scale: bool, block: int) -> dict[str, Any]:
    """The statistics passes as the pipeline should call the kernel (per row block)."""
    n, k = x.shape[0], len(kept)
    for transform in (False, True):
        sums, nnz = np.zeros(g_n * k), np.zeros(g_n * k, dtype=np.int64)
        lo, hi = np.full(g_n * k, np.inf), np.full(g_n * k, -np.inf)
        omitted = np.zeros(n, dtype=bool)
        mn, mx, zero = np.inf, -np.inf, False
        for a in range(0, n, block):
            b = min(n, a + block)
            bad, first, neg, bmn, bmx, bz = _core.gather_pass1(
                x, a, b, kept, gor[a:b], g_n, scale, transform, sums, nnz, lo, hi, omitted[a:b], n_threads=2
            )
            assert bad == 0
            mn, mx, zero = min(mn, bmn), max(mx, bmx), zero or bz
        if transform or not (min(mn, 0.0) if zero else mn) >= 0 or not mx > RAW_COUNT_MAX:
            break
    eff = np.where(omitted, -1, gor)
    n_t = np.repeat(np.bincount(eff[eff >= 0], minlength=g_n), k).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / n_t
    sq = np.zeros(g_n * k)
    if scale:
        for a in range(0, n, block):
            b = min(n, a + block)
            _core.gather_pass2(x, a, b, kept, eff[a:b], mean, transform, sq, n_threads=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt((sq + mean * mean * (n_t - nnz)) / (n_t - 1.0))
    has_zero = nnz < n_t
    return {
        "mean": mean, "sd": sd, "omitted": omitted, "guard": transform,
        "xmin": np.where(has_zero, np.minimum(lo, 0.0), lo), "xmax": np.where(has_zero, np.maximum(hi, 0.0), hi),
    }


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64).view(np.uint64), np.asarray(b, dtype=np.float64).view(np.uint64))


CASES = [
    (np.float64, False, False, True), (np.float32, False, True, True), (np.int32, True, False, True),
    (np.int64, True, False, False), (np.float64, True, False, True), (np.uint16, True, False, True),
]


@pytest.mark.parametrize(("dtype", "counts", "negative", "scale"), CASES)
def test_statistics_are_the_numpy_path_bit_for_bit(dtype: Any, counts: bool, negative: bool, scale: bool) -> None:
    x = _data(int(np.dtype(dtype).itemsize) + counts, 230, 40, counts=counts, negative=negative)
    if not counts and np.dtype(dtype).kind == "f":
        x[x > 0] = x[x > 0] / 3  # values below 80: no guard
    kept = np.array([1, 3, 4, 8, 9, 10, 15, 20, 21, 22, 30, 33, 39], dtype=np.int64)
    gor = np.random.default_rng(1).integers(-1, 3, x.shape[0]).astype(np.int64)
    for name, xl in _layouts(x, dtype).items():
        for block in (37, 1000):
            ref = _reference(xl, kept, gor, 3, scale, block)
            got = _statistics(xl, kept, gor, 3, scale, block)
            assert got["guard"] == ref.fired == (counts and not negative), name
            _same_bits(got["mean"], ref.mean)
            np.testing.assert_array_equal(got["omitted"], ref.omitted)
            _same_bits(got["xmin"], ref.xmin)
            _same_bits(got["xmax"], ref.xmax)
            if scale:
                assert ref.sd is not None
                _same_bits(got["sd"], ref.sd)


def test_scan_finds_what_the_numpy_checks_find() -> None:
    x = _data(5, 60, 12, counts=False, negative=True)
    x[17, 5], x[40, 2], x[41, 9] = np.nan, np.inf, np.nan
    kept = np.arange(1, 12, dtype=np.int64)
    for name, xl in _layouts(x, np.float64).items():
        n = x.shape[0]
        scan = scan_block(as_csr_block(xl[:n] if not sp.issparse(xl) else xl.tocsr(), kept), True)
        assert scan.nonfinite is not None
        r, c, count, value = scan.nonfinite
        z = np.zeros(11)
        bad, first, neg, *_ = _core.gather_pass1(
            xl, 0, n, kept, np.full(n, -1, dtype=np.int64), 1, True, False, z, np.zeros(11, dtype=np.int64),
            z.copy(), z.copy(), np.zeros(n, dtype=bool),
        )
        assert (bad, first[0], first[1]) == (count, r, c), name
        np.testing.assert_equal(first[2], value)
        assert neg == scan.negative, name


def _group(present: list[str], posneg: bool, w_features: list[str], cols: np.ndarray) -> Group:
    w = pd.DataFrame(np.ones((len(w_features), 3)), index=w_features)
    return Group(name="t", w=w, genes=present, cols=cols, present=present, posneg=posneg)


@pytest.mark.parametrize("posneg", [True, False])
@pytest.mark.parametrize("transform", [False, True])
def test_run_matrices_are_the_numpy_path_bit_for_bit(posneg: bool, transform: bool) -> None:
    x = _data(9, 300, 30, counts=True)
    kept = np.array([0, 2, 5, 6, 7, 11, 12, 19, 25, 29], dtype=np.int64)
    gcols = np.array([3, 0, 7, 5, 9, 1], dtype=np.int64)  # model order, into kept
    present = [f"G{i}" for i in range(len(gcols))]
    feats = [f"{g}__pos" for g in present] + [f"{g}__neg" for g in present] if posneg else list(present)
    g = _group(present, posneg, [f for f in feats if f not in ("G2__pos", "G4__neg", "G2")], gcols)
    rows = np.flatnonzero(np.random.default_rng(2).random(300) < 0.3).astype(np.int64)
    rng = np.random.default_rng(3)
    mean, sd = rng.random(len(gcols)) * 3, rng.random(len(gcols)) + 0.05
    sd[2] = 0.0
    in_w = np.array([f in g.w.index for f in feats])
    for name, xl in _layouts(x, np.float64).items():
        dense = as_csr_block(xl.tocsr()[rows] if sp.issparse(xl) else xl[rows], kept)[:, gcols]
        dense = log_transform(dense, transform).toarray()
        for m, s in ((mean, sd), (None, None)):
            if m is None and not posneg:
                continue  # a plain model needs non-negative V, which unscaled data gives anyway
            z = zscore(dense, m, s) if m is not None and s is not None else dense
            v, names = _features(g, z)
            vt, idx = _core.gather_run_v(xl, rows, kept[gcols], m, s, posneg, transform, in_w, n_threads=2)
            assert [feats[i] for i in idx] == names, name
            _same_bits(vt, np.ascontiguousarray(v.T))
            zz = _core.gather_dense(xl, rows, kept[gcols], m, s, transform)
            _same_bits(zz, z)
        p, i, d = _core.gather_csr(xl, rows, kept[gcols], transform)
        _same_bits(sp.csr_matrix((d, i, p), shape=dense.shape).toarray(), dense)


def test_bad_arguments_are_refused() -> None:
    x = np.ones((5, 4))
    rows = np.array([0, 2, 1], dtype=np.int64)
    with pytest.raises(ValueError, match="ascend"):
        _core.gather_dense(x, rows, np.array([0, 1], dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        _core.gather_dense(x, np.array([0], dtype=np.int64), np.array([4], dtype=np.int64))
    with pytest.raises(TypeError, match="dtype"):
        _core.gather_dense(x.astype(np.complex128), np.array([0], dtype=np.int64), np.array([0], dtype=np.int64))
    dup = sp.csr_matrix((np.ones(2), np.array([1, 1]), np.array([0, 2, 2, 2, 2, 2])), shape=(5, 4))
    with pytest.raises(ValueError, match="twice"):
        _core.gather_csr(dup, np.array([0], dtype=np.int64), np.array([1], dtype=np.int64))
