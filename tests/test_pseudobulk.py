"""Pseudo-bulks against R SpatialEcoTyper's ``CreatePseudobulks`` (tests/fixtures/spatial) and
R's ``rnorm`` / ``sample(replace = TRUE)`` underneath."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import ecorecover
from ecorecover import _core
from ecorecover.rng import RRandom

from conftest import FIXTURES, max_abs_diff, read_matrix


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    """Genes x cells raw counts of the spatial fixture (R's orientation)."""
    return read_matrix("spatial/input/counts.tsv.gz")


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "spatial/input/meta.tsv", sep="\t", index_col=0, float_precision="round_trip")


@pytest.fixture(scope="module")
def adata(counts: pd.DataFrame, meta: pd.DataFrame) -> ad.AnnData:
    a = ad.AnnData(
        sp.csr_matrix(np.zeros((counts.shape[1], counts.shape[0]))),
        obs=meta.reindex(counts.columns),
        var=pd.DataFrame(index=counts.index),
    )
    a.layers["counts"] = sp.csr_matrix(counts.to_numpy().T.astype(np.float32))
    return a


# -- R's random numbers ------------------------------------------------------------------------
def test_rnorm_matches_r_to_the_last_bit():
    # R 4.2.2: set.seed(1); print(rnorm(5), digits = 17)
    want = [-0.62645381074233242, 0.18364332422208224, -0.83562861241004716, 1.5952808021377916, 0.32950777181536051]
    assert RRandom(1).rnorm(5).tolist() == want
    r = RRandom(1)
    shifted = r.rnorm(3, mean=2.0, sd=0.5)
    np.testing.assert_array_equal(shifted, 2.0 + 0.5 * np.array(want[:3]))


def test_qnorm_is_as241_across_the_tails():
    import scipy.stats as scipy_stats
    p = np.concatenate([np.linspace(1e-6, 1 - 1e-6, 2001), 10.0 ** -np.arange(7, 300, 7.5), [0.075, 0.925, 0.5]])
    got = _core.qnorm(p)
    np.testing.assert_allclose(got, scipy_stats.norm.ppf(p), rtol=1e-14, atol=1e-15)
    assert _core.qnorm([0.0, 1.0]).tolist() == [-np.inf, np.inf]
    assert np.isnan(_core.qnorm([1.5, -0.1])).all()


def test_sample_with_replacement_matches_r():
    # R 4.2.2: set.seed(123); sample(10, 5, replace = TRUE)
    assert RRandom(123).sample_int_replace(10, 5).tolist() == [3, 3, 10, 2, 6]
    with pytest.raises(ValueError, match="n >= 1"):
        RRandom(1).sample_int_replace(0, 3)


# -- CreatePseudobulks -------------------------------------------------------------------------
def _assert_matches_r(fractions: pd.DataFrame, mixtures: pd.DataFrame) -> None:
    r_frac = read_matrix("spatial/pseudobulk_fracs.tsv")
    r_mix = read_matrix("spatial/pseudobulk_mixtures.tsv.gz")
    assert list(fractions.index) == list(r_frac.index)
    assert list(fractions.columns) == list(r_frac.columns)  # nonSE, SE1, SE10, ... (ICU order)
    assert list(mixtures.index) == list(r_mix.index)
    assert list(mixtures.columns) == list(r_mix.columns)
    assert max_abs_diff(fractions, r_frac) <= 1e-12
    assert max_abs_diff(mixtures, r_mix) <= 1e-9


def test_pseudobulks_match_r_from_a_genes_by_cells_frame(counts, meta):
    fractions, mixtures = ecorecover.pseudobulks(counts, meta["SE"], n_mixtures=30, seed=3)
    _assert_matches_r(fractions, mixtures)
    assert fractions.attrs["seed"] == mixtures.attrs["seed"] == 3


def test_pseudobulks_match_r_from_anndata_layer_and_obs_column(adata):
    fractions, mixtures = ecorecover.pseudobulks(adata, "SE", n_mixtures=30, seed=3, layer="counts")
    _assert_matches_r(fractions, mixtures)


def test_pseudobulks_match_r_from_a_sparse_frame_with_groups_in_another_order(counts, meta):
    sparse = counts.astype(pd.SparseDtype("float64", 0.0))
    groups = meta["SE"].iloc[::-1]  # matched by cell id, not by position
    fractions, mixtures = ecorecover.pseudobulks(sparse, groups, n_mixtures=30, seed=3)
    _assert_matches_r(fractions, mixtures)


def test_mixture_is_the_fraction_weighted_mean_of_group_profiles():
    """With identical cells within a group, a mixture's CP10k is sum(n_g * cp_g) / sum(n_g)."""
    rng = np.random.default_rng(0)
    profiles = rng.integers(0, 30, size=(4, 25)).astype(float)  # 4 groups x 25 genes
    sizes = [5, 3, 7, 2]
    x = np.vstack([np.repeat(p[None, :], n, axis=0) * (1 + i % 2) for i, (p, n) in enumerate(zip(profiles, sizes))])
    labels = np.repeat(["b", "A", "c", "a"], sizes)
    cells = [f"cell{i}" for i in range(x.shape[0])]
    df = pd.DataFrame(x.T, index=[f"g{j}" for j in range(25)], columns=cells)
    frac, mix = ecorecover.pseudobulks(df, pd.Series(labels, index=cells), n_mixtures=12, cells_per_mixture=50, seed=11)
    assert list(frac.columns) == ["a", "A", "b", "c"]
    np.testing.assert_allclose(frac.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    cp = {g: profiles[i] / profiles[i].sum() * 1e4 for i, g in enumerate(["b", "A", "c", "a"])}
    n = np.round(frac.to_numpy() * 50)
    expected = (n @ np.vstack([cp[g] for g in frac.columns])) / n.sum(axis=1, keepdims=True)
    expected = np.log1p(expected / expected.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(mix.to_numpy().T, expected, rtol=1e-13, atol=1e-13)


def test_same_seed_same_draws_and_random_seed_is_recorded(counts, meta):
    small = counts.iloc[:40, :600]
    groups = meta["SE"]
    a = ecorecover.pseudobulks(small, groups, n_mixtures=8, cells_per_mixture=100, seed=5)
    b = ecorecover.pseudobulks(small, groups, n_mixtures=8, cells_per_mixture=100, seed=5)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    c = ecorecover.pseudobulks(small, groups, n_mixtures=8, cells_per_mixture=100, seed=6)
    assert not np.array_equal(a[0].to_numpy(), c[0].to_numpy())
    d = ecorecover.pseudobulks(small, groups, n_mixtures=8, cells_per_mixture=100)
    seed = d[0].attrs["seed"]
    assert isinstance(seed, int) and d[1].attrs["seed"] == seed
    e = ecorecover.pseudobulks(small, groups, n_mixtures=8, cells_per_mixture=100, seed=seed)
    pd.testing.assert_frame_equal(d[1], e[1], check_exact=True)


def test_output_feeds_nmf_generate_w(counts, meta):
    frac, mix = ecorecover.pseudobulks(counts.iloc[:60], meta["SE"], n_mixtures=20, cells_per_mixture=200, seed=1)
    w = ecorecover.nmf_generate_w(frac, mix, n_features=40, n_features_per_se=None, seed=1)
    assert list(w.columns) == list(frac.columns)
    assert np.isfinite(w.to_numpy()).all() and (w.to_numpy() >= 0).all()


# -- bad input ----------------------------------------------------------------------------------
def _tiny() -> tuple[pd.DataFrame, pd.Series]:
    cells = [f"c{i}" for i in range(9)]
    df = pd.DataFrame(np.arange(27.0).reshape(3, 9) % 5, index=["g1", "g2", "g3"], columns=cells)
    return df, pd.Series(list("xyzxyzxyz"), index=cells)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_mixtures": 0}, ValueError, "n_mixtures must be >= 1"),
        ({"n_mixtures": 10_001}, ValueError, "n_mixtures must be <= 10000"),
        ({"n_mixtures": 2.5}, TypeError, "n_mixtures must be an integer"),
        ({"cells_per_mixture": 0}, ValueError, "cells_per_mixture must be >= 1"),
        ({"cells_per_mixture": True}, TypeError, "cells_per_mixture must be an integer"),
        ({"seed": 2**31}, ValueError, "seed"),
        ({"layer": "counts"}, TypeError, "layer applies to AnnData"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, match):
    df, groups = _tiny()
    with pytest.raises(exc, match=match):
        ecorecover.pseudobulks(df, groups, **{"seed": 1, **kwargs})


def test_bad_counts_and_groups_are_named(adata):
    df, groups = _tiny()
    with pytest.raises(ValueError, match="groups is empty"):
        ecorecover.pseudobulks(df, pd.Series([], dtype=str), seed=1)
    with pytest.raises(ValueError, match="no label for 1 of the 9 cells"):
        ecorecover.pseudobulks(df, groups.iloc[1:], seed=1)
    with pytest.raises(ValueError, match="at least 3 groups"):
        ecorecover.pseudobulks(df, pd.Series(list("xyxyxyxyx"), index=df.columns), seed=1)
    with pytest.raises(TypeError, match="Series indexed by cell id"):
        ecorecover.pseudobulks(df, list(groups), seed=1)
    with pytest.raises(TypeError, match="only when counts is an AnnData"):
        ecorecover.pseudobulks(df, "SE", seed=1)
    neg = df.copy()
    neg.iloc[1, 4] = -1
    with pytest.raises(ValueError, match="negative value"):
        ecorecover.pseudobulks(neg, groups, seed=1)
    nan = df.copy()
    nan.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ecorecover.pseudobulks(nan, groups, seed=1)
    with pytest.raises(ValueError, match="counts is empty"):
        ecorecover.pseudobulks(df.iloc[:0], groups, seed=1)
    dup = df.copy()
    dup.columns = ["c0"] * 9
    with pytest.raises(ValueError, match="duplicated cell ids"):
        ecorecover.pseudobulks(dup, groups, seed=1)
    with pytest.raises(TypeError, match="AnnData .* or a pandas DataFrame"):
        ecorecover.pseudobulks(df.to_numpy(), groups, seed=1)
    with pytest.raises(KeyError, match="not a column of adata.obs"):
        ecorecover.pseudobulks(adata, "no_such_column", seed=1, layer="counts")
    with pytest.raises(KeyError, match="is not a layer of adata"):
        ecorecover.pseudobulks(adata, "SE", seed=1, layer="raw")
