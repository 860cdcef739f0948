"""ecorecover.spatial against R SpatialEcoTyper 1.0.4's Colocalization and ComputeNormalizedMoranI
(tests/fixtures/spatial, calls in calls.txt), plus bad input and determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES, max_abs_diff, read_matrix
from ecorecover import spatial
from ecorecover.spatial import SpatialInputError, SpatialWarning

# The cell types whose cells are all in one state / one SE in the fixture data.
SINGLE = ["Epithelial", "Malignant"]


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "spatial/input/meta.tsv", sep="\t", index_col=0, float_precision="round_trip")


def _coloc(meta: pd.DataFrame, **kw):
    args = dict(coords=("X", "Y"), state_key="CellState", celltype_key="CellType", progress=False)
    args.update(kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = spatial.colocalization(meta, **args)
    return res, [str(w.message) for w in rec if issubclass(w.category, SpatialWarning)]


@pytest.fixture(scope="module")
def coloc_r50(meta):
    return _coloc(meta, radius=50, k=200, min_cells=10, n_perm=50, test=True, seed=1)


def test_colocalization_observed_matches_r(coloc_r50):
    res, _ = coloc_r50
    ref = read_matrix("spatial/coloc_observed.tsv.gz")
    assert list(res.observed.index) == list(ref.index)
    assert list(res.observed.columns) == list(ref.columns)
    a, b = res.observed.to_numpy(), ref.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-12
    # R's NaN rows keep 0 in the columns of states that are never a neighbour.
    assert (res.observed.loc["SE1_Plasma", "SE4_Fibroblast"] == 0) and np.isnan(res.observed.loc["SE1_Plasma", "nonSE_B"])


def test_colocalization_zscores_and_test_match_r(coloc_r50):
    res, msgs = coloc_r50
    ref = read_matrix("spatial/coloc_zscores.tsv.gz")
    assert list(res.zscores.index) == list(ref.index) and list(res.zscores.columns) == list(ref.columns)
    assert max_abs_diff(res.zscores, ref) <= 1e-9
    p = read_matrix("spatial/coloc_pvalues.tsv")
    assert list(res.pvalues.index) == list(p.index) == list(res.se_zscores.index)
    assert max_abs_diff(res.se_zscores, p["Zscore"]) <= 1e-9
    assert max_abs_diff(res.pvalues, p["Pval"]) <= 1e-9
    # relative agreement of the tiny p-values too
    assert np.max(np.abs(res.pvalues.to_numpy() / p["Pval"].to_numpy() - 1)) < 1e-9
    assert res.seed == 1 and res.n_perm == 50 and res.test_table.columns.tolist() == ["Pval", "Zscore"]
    # What R drops is named.
    assert res.dropped_celltypes == SINGLE
    assert any("Epithelial, Malignant" in m for m in msgs)
    assert res.empty_states == ["SE1_Plasma", "SE4_Fibroblast", "SE7_DC", "SE9_DC", "SE9_Plasma"]
    assert any("SE7_DC" in m and "NaN" in m for m in msgs)


def test_colocalization_second_call_without_test_matches_r(meta):
    res, _ = _coloc(meta, radius=30, k=50, min_cells=5, n_perm=20, test=False, seed=11)
    ref = read_matrix("spatial/coloc_zscores_r30_k50_min5.tsv.gz")
    assert list(res.zscores.index) == list(ref.index)
    assert max_abs_diff(res.zscores, ref) <= 1e-9
    assert res.pvalues is None and res.se_zscores is None and res.test_table is None


def test_colocalization_same_for_one_and_two_threads(meta):
    a, _ = _coloc(meta, radius=30, k=50, min_cells=5, n_perm=23, seed=5, n_jobs=1)
    b, _ = _coloc(meta, radius=30, k=50, min_cells=5, n_perm=23, seed=5, n_jobs=2, progress=True)
    pd.testing.assert_frame_equal(a.zscores, b.zscores, check_exact=True)
    pd.testing.assert_frame_equal(a.observed, b.observed, check_exact=True)
    pd.testing.assert_series_equal(a.pvalues, b.pvalues, check_exact=True)


def test_colocalization_random_seed_is_recorded_and_reproduces(meta):
    a, _ = _coloc(meta, radius=30, k=20, min_cells=5, n_perm=5, test=True)
    assert isinstance(a.seed, int)
    b, _ = _coloc(meta, radius=30, k=20, min_cells=5, n_perm=5, test=True, seed=a.seed)
    pd.testing.assert_frame_equal(a.zscores, b.zscores, check_exact=True)
    pd.testing.assert_series_equal(a.se_zscores, b.se_zscores, check_exact=True)


def test_colocalization_reads_anndata_obsm(meta):
    import anndata as ad
    obs = meta.drop(columns=["X", "Y"])
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = meta[["X", "Y"]].to_numpy()
    a, _ = _coloc(adata, coords=None, radius=30, k=20, min_cells=5, n_perm=4, seed=3)
    b, _ = _coloc(meta, radius=30, k=20, min_cells=5, n_perm=4, seed=3)
    pd.testing.assert_frame_equal(a.zscores, b.zscores, check_exact=True)


def test_cell_states_builds_r_labels(meta):
    s = spatial.cell_states(meta, se_key="SE", celltype_key="CellType")
    assert s.name == "CellState" and list(s.index) == list(meta.index)
    assert (s == meta["CellState"]).all()


def test_moran_matches_r(meta):
    with pytest.warns(SpatialWarning, match="Epithelial, Malignant"):
        df = spatial.moran(meta, coords=("X", "Y"), se_key="SE", celltype_key="CellType", k=3, n_perm=50, seed=2,
                           progress=False)
    obs = read_matrix("spatial/moran_observed.tsv")
    z = read_matrix("spatial/moran_zscores.tsv")
    assert list(df.index) == list(obs.index) == list(z.index)
    assert list(df.columns) == ["I", "zscore"]
    assert max_abs_diff(df["I"], obs["I"]) <= 1e-12
    assert max_abs_diff(df["zscore"], z["zscore"]) <= 1e-9
    assert df.attrs["seed"] == 2 and df.attrs["dropped_celltypes"] == SINGLE


def test_moran_threads_and_random_seed(meta):
    kw = dict(coords=("X", "Y"), k=4, n_perm=17, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpatialWarning)
        a = spatial.moran(meta, seed=9, n_jobs=1, **kw)
        b = spatial.moran(meta, seed=9, n_jobs=2, **kw)
        c = spatial.moran(meta, **kw)
        d = spatial.moran(meta, seed=c.attrs["seed"], **kw)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(c, d, check_exact=True)


# --------------------------------------------------------------------------------------------
# Bad input


def _small() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "X": rng.uniform(0, 100, n),
            "Y": rng.uniform(0, 100, n),
            "CellType": np.repeat(["A", "B"], n // 2),
            "SE": np.tile(["SE1", "SE2", "SE3"], n // 3),
        },
        index=[f"c{i}" for i in range(n)],
    ).assign(CellState=lambda d: d.SE + "_" + d.CellType)


@pytest.mark.parametrize(
    "change, kw, exc, match",
    [
        (lambda d: d.drop(columns="X"), {}, KeyError, "coordinate column"),
        (lambda d: d.drop(columns="CellState"), {}, KeyError, "state_key='CellState'"),
        (lambda d: d.drop(columns="CellType"), {}, KeyError, "celltype_key='CellType'"),
        (lambda d: d.assign(X=np.where(np.arange(60) == 7, np.nan, d.X)), {}, ValueError, "c7"),
        (lambda d: d.assign(Y=np.where(np.arange(60) == 3, np.inf, d.Y)), {}, ValueError, "not finite"),
        (lambda d: d.assign(X="a"), {}, ValueError, "must be numbers"),
        (lambda d: d.assign(CellState=d.CellState.where(np.arange(60) != 5)), {}, ValueError, "missing label"),
        (lambda d: d.assign(CellState="SE1_A"), {}, ValueError, "at least two cell states"),
        (lambda d: d, {"radius": 0}, ValueError, "radius must be > 0"),
        (lambda d: d, {"radius": -3.0}, ValueError, "radius"),
        (lambda d: d, {"radius": float("nan")}, ValueError, "radius"),
        (lambda d: d, {"k": 0}, ValueError, "k must be >= 2"),
        (lambda d: d, {"k": 2.5}, ValueError, "whole number"),
        (lambda d: d, {"n_perm": 1}, ValueError, "n_perm"),
        (lambda d: d, {"min_cells": -1}, ValueError, "min_cells"),
        (lambda d: d, {"min_cells": 0}, ValueError, "min_cells must be >= 1"),
        (lambda d: d, {"seed": 2**31}, ValueError, "seed"),
        (lambda d: d, {"seed": 1.5}, TypeError, "seed"),
        (lambda d: d, {"coords": "spatial"}, KeyError, "obsm"),
        (lambda d: d, {"coords": ("X",)}, TypeError, "coords"),
        (lambda d: d, {"n_jobs": 0}, ValueError, "n_jobs"),
    ],
)
def test_colocalization_bad_input(change, kw, exc, match):
    d = change(_small())
    args = dict(radius=30.0, k=10, min_cells=1, n_perm=3, seed=1, progress=False)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpatialWarning)
        with pytest.raises(exc, match=match):
            spatial.colocalization(d, **args)


def test_errors_are_specific_subclasses():
    with pytest.raises(SpatialInputError):
        spatial.colocalization(_small(), radius=0, progress=False)
    with pytest.raises(spatial.SpatialColumnError):
        spatial.moran(_small(), se_key="nope", progress=False)
    with pytest.raises(TypeError, match="AnnData or a DataFrame"):
        spatial.moran(np.zeros((3, 3)), progress=False)


@pytest.mark.parametrize(
    "change, kw, exc, match",
    [
        (lambda d: d.drop(columns="SE"), {}, KeyError, "se_key='SE'"),
        (lambda d: d.assign(SE="SE1"), {}, ValueError, "at least two SEs"),
        (lambda d: d, {"k": 0}, ValueError, "k must be >= 1"),
        (lambda d: d, {"k": 60}, ValueError, "more than k cells"),
        (lambda d: d.assign(Y=np.nan), {}, ValueError, "not finite"),
    ],
)
def test_moran_bad_input(change, kw, exc, match):
    args = dict(k=3, n_perm=3, seed=1, progress=False)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpatialWarning)
        with pytest.raises(exc, match=match):
            spatial.moran(change(_small()), **args)


def test_single_state_cell_types_are_dropped_with_a_warning():
    d = _small()
    d.loc[d.CellType == "B", "CellState"] = "SE1_B"
    with pytest.warns(SpatialWarning, match="dropped cell type.*: B"):
        res = spatial.colocalization(d, radius=30.0, k=10, min_cells=1, n_perm=3, seed=1, progress=False)
    assert res.dropped_celltypes == ["B"] and res.n_cells == 30
    assert not any(s.endswith("_B") for s in res.observed.index)
