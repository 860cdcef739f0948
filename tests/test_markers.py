"""Marker gene-set expression against R SpatialEcoTyper's ``AverageMarkerExpression``
(tests/fixtures/spatial) and the reader of R gene-set lists."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import ecorecover
from ecorecover.markers import MarkerWarning
from ecorecover.preprocessing import log_normalize

import rds_bytes
from conftest import FIXTURES, max_abs_diff, read_matrix

CUSTOM = {
    "setA": ["CD4", "IL7R", "CCR7", "SELL"],
    "setB": ["CD8A", "GZMB", "PRF1", "NKG7"],
    "setC": ["PECAM1", "CDH5", "VWF"],
    "setD": "NOT_A_GENE",
}


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    """The spatial fixture's counts, log-normalised (sparse, as R's NormalizeData), SE in obs."""
    counts = read_matrix("spatial/input/counts.tsv.gz")
    meta = pd.read_csv(FIXTURES / "spatial/input/meta.tsv", sep="\t", index_col=0, float_precision="round_trip")
    x = log_normalize(sp.csr_matrix(counts.to_numpy().T.astype(np.float64)), n_jobs=1)
    return ad.AnnData(x, obs=meta.reindex(counts.columns), var=pd.DataFrame(index=counts.index))


def _assert_matches(got: pd.DataFrame, path: str) -> None:
    want = read_matrix(path)
    assert list(got.index) == list(want.index)
    assert list(got.columns) == list(want.columns)  # nonSE, SE1, SE10, ... (ICU order)
    np.testing.assert_array_equal(np.isnan(got.to_numpy()), want.isna().to_numpy())
    ok = ~want.isna().to_numpy()
    assert max_abs_diff(got.to_numpy()[ok], want.to_numpy()[ok]) <= 1e-9


def test_custom_sets_match_r_with_an_na_row_for_a_set_without_genes(adata):
    with pytest.warns(MarkerWarning, match="'setD'"):
        got = ecorecover.marker_expression(adata, groupby="SE", genesets=CUSTOM)
    _assert_matches(got, "spatial/markers_custom.tsv")


def test_dense_input_and_a_layer_give_the_same_result(adata):
    dense = ad.AnnData(np.zeros(adata.shape), obs=adata.obs, var=adata.var)
    dense.layers["lognorm"] = adata.X.toarray()
    with pytest.warns(MarkerWarning):
        got = ecorecover.marker_expression(dense, genesets=CUSTOM, layer="lognorm")
    _assert_matches(got, "spatial/markers_custom.tsv")


def test_consensus_markers_match_r(adata, published_models_dir: Path):
    path = published_models_dir / "SE_consensus_markers.rds"
    if not path.exists():
        pytest.skip(f"{path} not found (published models are not shipped)")
    sets = ecorecover.read_r_markers(path)
    assert list(sets) == [f"SE{i}" for i in range(1, 10)]
    assert sets["SE1"][:3] == ["FOS", "EGR1", "DUSP1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ecorecover.marker_expression(adata, genesets=sets)
    _assert_matches(got, "spatial/markers_consensus.tsv")


def test_genes_never_expressed_do_not_dilute_a_set(adata):
    zero = ad.AnnData(sp.hstack([adata.X, sp.csr_matrix((adata.n_obs, 1))]).tocsr(), obs=adata.obs)
    zero.var_names = list(adata.var_names) + ["SILENT"]
    a = ecorecover.marker_expression(zero, genesets={"s": ["CD4", "IL7R", "SILENT"], "t": ["CD8A"]})
    b = ecorecover.marker_expression(zero, genesets={"s": ["CD4", "IL7R"], "t": ["CD8A"]})
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    with pytest.warns(MarkerWarning, match="'only'"):
        c = ecorecover.marker_expression(zero, genesets={"only": ["SILENT"], "t": ["CD8A"]})
    assert c.loc["only"].isna().all() and not c.loc["t"].isna().any()


def test_z_scores_are_centred_with_unit_sd_and_clipped(adata):
    got = ecorecover.marker_expression(adata, genesets={k: v for k, v in CUSTOM.items() if k != "setD"})
    np.testing.assert_allclose(got.mean(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(got.std(axis=1, ddof=1), 1.0, rtol=1e-13)
    assert (got.to_numpy() <= 10).all()


def test_nonse_group_is_dropped(adata):
    obs = adata.obs.copy()
    se = obs["SE"].astype(str)
    obs["SE"] = se.where(se != "SE4", "NonSE")
    relabelled = ad.AnnData(adata.X, obs=obs, var=adata.var)
    sets = {"A": CUSTOM["setA"], "B": CUSTOM["setB"]}
    got = ecorecover.marker_expression(relabelled, genesets=sets)
    assert "NonSE" not in got.columns and "SE4" not in got.columns
    without = adata[(se != "SE4").to_numpy()].copy()
    ref = ecorecover.marker_expression(without, genesets=sets)
    assert list(got.columns) == list(ref.columns)
    assert max_abs_diff(got, ref) <= 1e-12


# -- read_r_markers (.rds files built by tests/rds_bytes.py: no .rds writer needed) ---------------
def _write(tmp_path: Path, obj: bytes, name: str = "sets.rds") -> Path:
    return rds_bytes.write_rds(tmp_path / name, obj)


def test_read_r_markers_round_trips_a_named_list_of_character_vectors(tmp_path):
    obj = rds_bytes.named_list({"b": rds_bytes.strings(["X", "Y"]), "a": rds_bytes.strings(["Z"]),
                                "c": rds_bytes.strings(["Q", None])})
    assert ecorecover.read_r_markers(_write(tmp_path, obj)) == {"b": ["X", "Y"], "a": ["Z"], "c": ["Q"]}


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (rds_bytes.strings(["X", "Y"]), "named list of character vectors"),
        (rds_bytes.vector([rds_bytes.strings(["X"]), rds_bytes.strings(["Y"])]), "unnamed list"),
        (rds_bytes.data_frame({"a": rds_bytes.integer([1, 2])}, nrow=2), "named list of character vectors"),
        (rds_bytes.named_list({"a": rds_bytes.real([1.0, 2.0])}), "must hold gene names"),
        (rds_bytes.named_list({"a": rds_bytes.named_list({"x": rds_bytes.strings(["X"])})}),
         "must be a character vector"),
        (rds_bytes.named_list({}), "empty"),
    ],
    ids=["character-vector", "unnamed-list", "data.frame", "numeric-set", "nested-list", "empty-list"],
)
def test_read_r_markers_rejects_other_structures(tmp_path, obj, match):
    p = _write(tmp_path, obj)
    with pytest.raises(ValueError, match=match):
        ecorecover.read_r_markers(p)


@pytest.mark.parametrize(("second_name", "match"), [("a", r"names gene-set name\(s\) \['a'\] more than once"), ("", "element 2")],
                         ids=["duplicated", "empty"])
def test_read_r_markers_rejects_duplicated_or_missing_names(tmp_path, second_name, match):
    # names(x) <- c("a", "a") or c("a", ""): R writes such names as they are
    obj = rds_bytes.named_list([("a", rds_bytes.strings(["X"])), (second_name, rds_bytes.strings(["Y"]))])
    with pytest.raises(ValueError, match=match):
        ecorecover.read_r_markers(_write(tmp_path, obj))


def test_read_r_markers_refuses_byte_code(tmp_path):
    p = _write(tmp_path, rds_bytes.i32(rds_bytes.BCODESXP, 1))  # compiled R code, declaring 1 entry
    with pytest.raises(ecorecover.ModelFileError, match=r"cannot read .*sets\.rds as an R \.rds file: .*byte code"):
        ecorecover.read_r_markers(p)


def test_read_r_markers_rejects_non_rds_and_missing_files(tmp_path):
    bad = tmp_path / "bad.rds"
    bad.write_bytes(b"not an R file at all\x00\x01")
    with pytest.raises(ValueError, match="cannot read .* as an R .rds file"):
        ecorecover.read_r_markers(bad)
    with pytest.raises(FileNotFoundError, match="gene-set file not found"):
        ecorecover.read_r_markers(tmp_path / "absent.rds")


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_is_named(adata):
    with pytest.raises(KeyError, match="'Cluster' is not a column of adata.obs"):
        ecorecover.marker_expression(adata, groupby="Cluster", genesets=CUSTOM)
    with pytest.raises(KeyError, match="is not a layer of adata"):
        ecorecover.marker_expression(adata, genesets=CUSTOM, layer="nope")
    with pytest.raises(ValueError, match="genesets is empty"):
        ecorecover.marker_expression(adata, genesets={})
    with pytest.raises(TypeError, match="read_r_markers"):
        ecorecover.marker_expression(adata, genesets="SE_consensus_markers.rds")
    with pytest.raises(ValueError, match="must hold gene names"):
        ecorecover.marker_expression(adata, genesets={"s": ["CD4", 7]})
    with pytest.raises(TypeError, match="AnnData"):
        ecorecover.marker_expression(adata.X, genesets=CUSTOM)
    scaled = ad.AnnData(adata.X.toarray() - 0.5, obs=adata.obs, var=adata.var)
    with pytest.raises(ValueError, match="negative values"):
        ecorecover.marker_expression(scaled, genesets=CUSTOM)
    obs = adata.obs.copy()
    obs["SE"] = obs["SE"].astype(object)
    obs.iloc[3, obs.columns.get_loc("SE")] = None
    with pytest.raises(ValueError, match="1 missing label"):
        ecorecover.marker_expression(ad.AnnData(adata.X, obs=obs, var=adata.var), genesets=CUSTOM)
    obs["SE"] = np.where(np.arange(adata.n_obs) % 2, "NonSE", "SE1")
    with pytest.raises(ValueError, match="at least 2 groups"):
        ecorecover.marker_expression(ad.AnnData(adata.X, obs=obs, var=adata.var), genesets=CUSTOM)


def test_raw_counts_are_refused(adata):
    raw = ad.AnnData(np.round(np.expm1(adata.X.toarray())), obs=adata.obs, var=adata.var)
    with pytest.raises(ValueError, match="looks like raw counts"):
        ecorecover.marker_expression(raw, genesets={"s": ["CD4"]})
