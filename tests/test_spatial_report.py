"""The spatial plots (ecorecover.pl.spatial, colocalization_heatmap, marker_heatmap) and the
``ecorecover validate`` report, on the R spatial fixture's cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecorecover
from ecorecover import pl, spatial
from ecorecover.cli import main

from conftest import FIXTURES, read_matrix

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

META = FIXTURES / "spatial" / "input" / "meta.tsv"
#: The fixture has cell types in one state and states without neighbours: R drops them, we warn.
pytestmark = pytest.mark.filterwarnings("ignore::ecorecover.spatial.SpatialWarning")


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return pd.read_csv(META, sep="\t", index_col=0, dtype={"Sample": str, "CellType": str, "SE": str, "CellState": str})


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_spatial_plot_colours_each_se_and_greys_unassigned_cells(meta):
    ax = pl.spatial(meta, se_key="SE", coords=("X", "Y"))
    colls = ax.collections
    ses = sorted(meta["SE"].unique())
    assert len(colls) == len(ses)  # one scatter per label present
    grey = [c for c in colls if np.allclose(c.get_facecolor()[0][:3], 0.78)]
    assert len(grey) == 1 and len(grey[0].get_offsets()) == int((meta["SE"] == "nonSE").sum())
    assert sum(len(c.get_offsets()) for c in colls) == len(meta)
    # the unassigned cells are drawn first, underneath
    assert colls[0] is grey[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(labels) == set(ses)


def test_spatial_plot_one_panel_per_sample(meta):
    m = meta.copy()
    m["Sample"] = np.where(m["X"] < 1250, "left", "right")
    axes = pl.spatial(m, se_key="SE", coords=("X", "Y"), sample_key="Sample", ncols=2)
    titled = [a for a in axes.flat if a.get_title()]
    assert [a.get_title() for a in titled] == ["left", "right"]
    assert sum(len(c.get_offsets()) for a in titled for c in a.collections) == len(m)
    with pytest.raises(KeyError, match="sample_key='nope'"):
        pl.spatial(m, coords=("X", "Y"), sample_key="nope")


def test_colocalization_heatmap_outlines_each_se_and_writes_its_p_value(meta):
    res = spatial.colocalization(meta, coords=("X", "Y"), n_perm=5, seed=1, progress=False)
    ax = pl.colocalization_heatmap(res)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    ses = res.pvalues.index
    assert len(rects) == len(ses)
    # blocks tile the diagonal: their sizes are the number of states per SE
    sizes = sorted(int(r.get_width()) for r in rects)
    per_se = sorted(pd.Series([s.split("_", 1)[0] for s in res.zscores.index]).value_counts().tolist())
    assert sizes == per_se
    texts = [t.get_text() for t in ax.texts]
    for se in ses:
        assert any(t.startswith(f"{se} (") and "p=" in t for t in texts), se
    img = ax.images[0].get_array()
    assert img.shape == res.zscores.shape


def test_marker_heatmap_keeps_nan_rows_blank():
    table = read_matrix("spatial/markers_custom.tsv")
    ax = pl.marker_heatmap(table)
    arr = np.ma.getdata(ax.images[0].get_array())
    assert arr.shape == table.shape
    assert np.isnan(arr[list(table.index).index("setD")]).all()
    with pytest.raises(TypeError, match="marker_expression"):
        pl.marker_heatmap(table.to_numpy())


def _validate(args: list[str]) -> int:
    return main(["validate", "-q", *args])


def test_validate_writes_tables_and_figures_equal_to_the_api(tmp_path, meta):
    out = tmp_path / "report"
    assert _validate([str(META), "--coords", "X", "Y", "--n-perm", "8", "--seed", "3", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["colocalization.png", "colocalization_observed.tsv", "colocalization_se_test.tsv",
                     "colocalization_zscores.tsv", "moran.tsv", "report.json", "spatial.png"]
    res = spatial.colocalization(meta, coords=("X", "Y"), n_perm=8, seed=3, progress=False)
    z = pd.read_csv(out / "colocalization_zscores.tsv", sep="\t", index_col=0, float_precision="round_trip")
    pd.testing.assert_frame_equal(z, res.zscores, check_names=False)
    test = pd.read_csv(out / "colocalization_se_test.tsv", sep="\t", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(test["Pval"].to_numpy(), res.pvalues.to_numpy())
    mo = spatial.moran(meta, coords=("X", "Y"), n_perm=8, seed=3, progress=False)
    got = pd.read_csv(out / "moran.tsv", sep="\t", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(got.to_numpy(), mo.to_numpy())
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["seed"] == 3 and report["params"]["n_perm"] == 8


def test_validate_builds_states_from_se_and_cell_type(tmp_path, meta):
    src = _small_table(tmp_path, meta.drop(columns=["CellState"]))
    out = tmp_path / "r"
    assert _validate([str(src), "--coords", "X", "Y", "--radius", "80", "--min-cells", "2", "--n-perm", "4",
                      "--seed", "1", "--out", str(out)]) == 0
    z = pd.read_csv(out / "colocalization_zscores.tsv", sep="\t", index_col=0)
    corner = pd.read_csv(src, sep="\t", index_col=0)
    multi = corner.groupby("CellType")["SE"].nunique()
    kept = corner[corner["CellType"].isin(multi.index[multi > 1])]
    assert sorted(z.index) == sorted(set(kept["SE"] + "_" + kept["CellType"]))


def _small_table(tmp_path: Path, meta: pd.DataFrame) -> Path:
    """A corner of the fixture's field (few states: quick to draw)."""
    corner = meta[(meta["X"] < 900) & (meta["Y"] < 900)]
    src = tmp_path / "corner.tsv"
    corner.to_csv(src, sep="\t", index_label="cell")
    return src


def test_validate_never_replaces_what_is_not_its_report(tmp_path, meta):
    out = tmp_path / "report"
    src = _small_table(tmp_path, meta)
    args = [str(src), "--coords", "X", "Y", "--radius", "80", "--min-cells", "2", "--n-perm", "2", "--seed", "1",
            "--out", str(out)]
    assert _validate(args) == 0
    before = (out / "report.json").read_text()
    assert _validate(args) == 2  # exists, no --force
    assert (out / "report.json").read_text() == before
    assert _validate([*args[:-2], "--seed", "2", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["results"]["seed"] == 2
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert _validate([*args[:-1], str(other), "--force"]) == 2
    assert (other / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corner.tsv", "mine", "report"]  # no temporary left


def test_validate_bad_input_leaves_nothing(tmp_path, meta, capsys):
    src = tmp_path / "cells.tsv"
    meta.drop(columns=["X"]).to_csv(src, sep="\t", index_label="cell")
    out = tmp_path / "report"
    assert _validate([str(src), "--coords", "X", "Y", "--n-perm", "2", "--out", str(out)]) == 2
    assert "X" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.tsv"]


def test_validate_markers_from_an_h5ad(tmp_path, meta, published_models_dir):
    import anndata as ad
    counts = pd.read_csv(FIXTURES / "spatial" / "input" / "counts.tsv.gz", sep="\t", index_col=0)
    adata = ad.AnnData(X=ecorecover.preprocessing.log_normalize(counts.T.to_numpy(dtype=float)),
                       obs=meta.loc[counts.columns], var=pd.DataFrame(index=counts.index))
    src = tmp_path / "cells.h5ad"
    adata.write_h5ad(src)
    out = tmp_path / "report"
    markers = published_models_dir / "SE_consensus_markers.rds"
    assert _validate([str(src), "--coords", "X", "Y", "--n-perm", "2", "--seed", "1", "--markers", str(markers),
                      "--out", str(out)]) == 0
    got = pd.read_csv(out / "markers.tsv", sep="\t", index_col=0, float_precision="round_trip")
    want = read_matrix("spatial/markers_consensus.tsv")
    np.testing.assert_allclose(got.loc[want.index, want.columns].to_numpy(), want.to_numpy(), atol=1e-9)
    assert (out / "markers.png").stat().st_size > 0
