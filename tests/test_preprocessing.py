"""Log-normalisation, scaling, posneg and the zero-variance filter against R (Seurat 4.3)
outputs in tests/fixtures, and against plain NumPy references on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecorecover import preprocessing as pp

from conftest import max_abs_diff, read_matrix

# --- R parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_log_normalize_matches_seurat_bit_for_bit(kind):
    counts = read_matrix("lognorm/counts.tsv")  # genes x cells, as in R
    expected = read_matrix("lognorm/normalizedata.tsv").loc[counts.index, counts.columns]
    x = counts.to_numpy(float).T  # cells x genes
    if kind != "dense":
        x = getattr(sp, f"{kind}_matrix")(x)
    got = pp.log_normalize(x)
    assert (sp.issparse(got) and got.format == kind) or (kind == "dense" and isinstance(got, np.ndarray))
    got = got.toarray() if sp.issparse(got) else got
    assert got.T.tobytes() == np.ascontiguousarray(expected.to_numpy()).tobytes()
    empty = list(counts.columns).index("empty_cell")
    assert not got[empty].any()


def test_numpy_log1p_is_not_good_enough_here():
    """Guard for the reason the kernel exists: numpy's log1p differs from glibc's on these inputs."""
    counts = read_matrix("lognorm/counts.tsv").to_numpy(float)
    tot = counts.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(tot > 0, counts / np.where(tot > 0, tot, 1) * 1e4, 0)
    exact = np.vectorize(math.log1p)(ratio)
    assert np.array_equal(pp.log_normalize(counts.T).T, exact)


@pytest.mark.parametrize("method, fixture", [("sparse", "scale/scaledata_sparse.tsv"), ("dense", "scale/scaledata_dense.tsv")])
@pytest.mark.parametrize("storage", ["dense", "csc", "csr"])
def test_scale_matches_both_seurat_code_paths(method, fixture, storage):
    x = read_matrix("scale/input.tsv")
    expected = read_matrix(fixture).loc[x.index, x.columns].to_numpy().T
    m = x.to_numpy().T  # cells x genes
    if storage != "dense":
        m = getattr(sp, f"{storage}_matrix")(m)
    got = pp.scale(m, method=method)
    diff = max_abs_diff(got, expected)
    assert diff <= 1e-12, diff
    if method == "sparse":  # the sequential-sum formula is R's, bit for bit
        assert np.array_equal(got, expected)
    genes = list(x.index)
    assert not got[:, genes.index("g07_allzero")].any()
    const = got[:, genes.index("g08_const07")]
    assert np.allclose(const, -math.sqrt(149 / 150), atol=1e-12)  # constant non-zero gene is NOT 0
    assert got[:, genes.index("g09_clip")].max() == 10.0
    assert got[:, genes.index("g10_lowtail")].min() < -10.0  # no lower clip


def test_dense_and_sparse_paths_differ_only_in_rounding():
    x = read_matrix("scale/input.tsv").to_numpy().T
    d = max_abs_diff(pp.scale(x, method="dense"), pp.scale(x, method="sparse"))
    assert 0 < d <= 1.8e-15


# --- raw-count guard ------------------------------------------------------------------------


def test_raw_count_guard_fires_and_says_so():
    x = np.array([[0.0, 81.0], [3.0, 1.0]])
    with pytest.warns(pp.RawCountWarning, match="raw counts"):
        y, fired = pp.raw_count_guard(x)
    assert fired and np.array_equal(y, np.log2(x + 1))
    y, fired = pp.raw_count_guard(np.array([[0.0, 80.0]]))
    assert not fired
    y, fired = pp.raw_count_guard(np.array([[-1.0, 500.0]]))
    assert not fired  # a negative value means not counts
    s = sp.csr_matrix(x)
    with pytest.warns(pp.RawCountWarning):
        ys, fired = pp.raw_count_guard(s)
    assert fired and sp.issparse(ys) and np.array_equal(ys.toarray(), np.log2(x + 1))


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.array([[1.0, np.nan]]), ValueError, "non-finite"),
        (np.array([[1.0, np.inf]]), ValueError, "non-finite"),
        (np.array([[1.0, -2.0]]), ValueError, "negative"),
        (np.array([[True, False]]), TypeError, "bool"),
        (np.array([["a", "b"]]), TypeError, "string"),
        (np.ones(3), ValueError, "2-dimensional"),
    ],
)
def test_log_normalize_rejects_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        pp.log_normalize(bad)


def test_sparse_negative_counts_rejected():
    with pytest.raises(ValueError, match="negative"):
        pp.log_normalize(sp.csr_matrix(np.array([[1.0, -1.0]])))


@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_log_normalize_warns_on_already_normalised_data(kind):
    """Issue 13.3: log-normalising log-normalised data ran silently."""
    counts = read_matrix("lognorm/counts.tsv").to_numpy(float).T  # cells x genes, whole counts
    store = (lambda m: m) if kind == "dense" else getattr(sp, f"{kind}_matrix")
    once = pp.log_normalize(store(counts))  # whole numbers: no warning (pytest turns warnings into errors)
    once_dense = once.toarray() if sp.issparse(once) else once
    first = np.argwhere((once_dense != np.floor(once_dense)).T if kind == "csc" else once_dense != np.floor(once_dense))[0]
    i, j = (first[1], first[0]) if kind == "csc" else (first[0], first[1])  # CSC stores values gene by gene
    with pytest.warns(pp.NonIntegerCountsWarning, match=rf"not whole numbers \(first at cell \(row\) {i}, gene \(column\) {j}: "
                      r".*look log-normalised .*already.*Skip the normalisation"):
        twice = pp.log_normalize(once)
    twice = twice.toarray() if sp.issparse(twice) else twice
    assert np.array_equal(twice, pp._log_normalize_matrix(np.ascontiguousarray(once_dense), 1e4, None))  # still computed


def test_log_normalize_non_integer_check_sees_every_value():
    x = np.zeros((3000, 400))  # 1.2e6 values: more than one chunk of the check
    x[::7, ::3] = 2.0
    x[2999, 399] = 0.5  # one fractional count, in the last chunk
    with pytest.warns(pp.NonIntegerCountsWarning, match=r"cell \(row\) 2999, gene \(column\) 399: 0\.5"):
        pp.log_normalize(x)
    x[2999, 399] = 1.0
    pp.log_normalize(x)  # whole numbers in float64 storage: silent


def test_scale_rejects_nan_and_unknown_method():
    with pytest.raises(ValueError, match="non-finite"):
        pp.scale(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="method"):
        pp.scale(np.ones((3, 2)), method="median")


# --- properties against plain NumPy -----------------------------------------------------------


def _numpy_scale_sparse(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    out = np.zeros_like(x)
    for g in range(x.shape[1]):
        col = x[:, g]
        nz = col[col != 0]
        s = 0.0
        for v in nz:
            s += v
        mean = s / n if n else 0.0
        sq = 0.0
        for v in nz:
            sq += (v - mean) * (v - mean)
        var = (sq + mean * mean * (n - nz.size)) / (n - 1) if n > 1 else float("nan")
        if n == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (col - mean) / math.sqrt(var) if var == var else np.full(n, np.nan)
        z = np.where(np.isnan(z), 0.0, z)
        out[:, g] = np.minimum(z, 10.0)
    return out


finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)
shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, shapes, elements=st.one_of(st.just(0.0), finite)))
def test_scale_equals_numpy_reference(x):
    got = pp.scale(x)
    assert got.shape == x.shape
    assert np.array_equal(got, _numpy_scale_sparse(x))
    assert np.array_equal(pp.scale(sp.csc_matrix(x)), got)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, shapes, elements=st.one_of(st.just(0.0), finite)))
def test_posneg_round_trips_and_zero_variance(x):
    pn = pp.posneg(x)
    g = x.shape[1]
    assert pn.shape == (x.shape[0], 2 * g)
    assert (pn >= 0).all()
    assert np.array_equal(pn[:, :g] - pn[:, g:], x)
    assert np.array_equal(pn[:, :g], np.maximum(x, 0)) and np.array_equal(pn[:, g:], np.maximum(-x, 0))
    mask = pp.zero_variance_mask(pn)
    ref = np.array([x.shape[0] == 0 or np.all(c == c[0]) for c in pn.T], dtype=bool)
    assert np.array_equal(mask, ref)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, shapes, elements=st.integers(0, 500).map(float)))
def test_log_normalize_equals_reference_and_storage_agrees(x):
    tot = x.sum(axis=1, keepdims=True)
    ref = np.vectorize(math.log1p)(np.divide(x, tot, out=np.zeros_like(x), where=tot > 0) * 1e4) if x.size else x
    got = pp.log_normalize(x)
    assert np.array_equal(got, ref)
    assert np.array_equal(pp.log_normalize(sp.csr_matrix(x)).toarray(), got)
    assert np.array_equal(pp.log_normalize(sp.csc_matrix(x)).toarray(), got)


def test_posneg_names():
    assert pp.posneg_names(["A", "B"]) == ["A__pos", "B__pos", "A__neg", "B__neg"]
