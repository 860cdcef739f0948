"""User traps of recovery and validation (issues 13 and 14): each ends in a clear error, a
warning that names the fix, or a safe default. One test per trap, named after it."""

from __future__ import annotations

import io
import logging
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import read_matrix, read_table

import ecorecover as er
from ecorecover import preprocessing as pp
from ecorecover.recovery import OUTPUT_COLUMNS, GeneMatchError, RecoveryWarning, recover
from ecorecover.validation import ValidationWarning, loocv, metrics


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, sp.csr_matrix]:
    counts = read_matrix("recover/input/counts.tsv.gz")  # genes x cells
    meta = read_table("recover/input/meta.tsv")
    return counts, meta, pp.log_normalize(sp.csr_matrix(counts.to_numpy().T))


@pytest.fixture(scope="module")
def dc(data) -> ad.AnnData:
    """The 123 DC cells, 7 Malignant cells (no model) and the 15 NK cells (< 20: not scored)."""
    counts, meta, x = data
    ct = meta["CellType"].to_numpy()
    rows = np.sort(np.concatenate([np.flatnonzero(ct == "DC"), np.flatnonzero(ct == "Malignant")[:7], np.flatnonzero(ct == "NK")]))
    obs = pd.DataFrame({"CellType": ct[rows]}, index=list(counts.columns[rows]))
    return ad.AnnData(x[rows], obs=obs, var=pd.DataFrame(index=list(counts.index)))


@pytest.fixture(scope="module")
def models() -> dict[str, pd.DataFrame]:
    return {ct: read_matrix(f"train/sample/{ct}.tsv.gz") for ct in ("DC", "NK")}


@pytest.fixture(scope="module")
def sim() -> ad.AnnData:
    from ecorecover.simulate import simulate

    a = simulate(n_cells=900, n_samples=3, n_genes=120, cell_types=2, n_se=3, effect=0.8, seed=3)
    a.X = pp.log_normalize(a.X)
    return a


def _rec(*args, **kw):
    """recover() with its warnings recorded: (result, messages)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = recover(*args, progress=False, **kw)
    return res, [str(w.message) for w in rec if issubclass(w.category, RecoveryWarning)]


def _scaled(x: sp.csr_matrix) -> np.ndarray:
    """Per-gene z-scores over all cells, as sc.pp.scale leaves X."""
    d = x.toarray()
    sd = d.std(axis=0)
    return (d - d.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


# ------------------------------------------------------------------------------------------
# Issue 13


def test_labels_overwritten(dc, models, sim):
    a = dc.copy()
    a.obs["SE"] = pd.Categorical(np.where(np.arange(a.n_obs) % 2, "SE01", "SE02"))  # the user's truth
    truth = a.obs["SE"].copy()
    res, _ = _rec(a, models, mode="fast")
    pd.testing.assert_series_equal(a.obs["SE"], truth)  # recovery never replaces the labels
    assert (a.obs["SE_recovered"].astype(str) == res["SE"]).all()
    written = a.uns["ecorecover"]["written_keys"]
    assert written["obs"] == ["SE_recovered", "SE_recovered_score", "SE_recovered_scored"]
    assert written["obsm"] == ["SE_recovered_scores"] and written["uns"] == ["SE_recovered"]
    # A key ecorecover did not write is refused before any work, naming the fix.
    with pytest.raises(ValueError, match=r"adata.obs\['SE'\] already exist.*not written by ecorecover.*overwrite=True"):
        recover(a, models, key_added="SE", mode="fast", progress=False)
    pd.testing.assert_series_equal(a.obs["SE"], truth)
    assert "SE_score" not in a.obs
    # Re-running replaces the keys of the earlier call, with a warning.
    _, msgs = _rec(a, models, mode="fast")
    assert any(m.startswith("replacing adata.obs['SE_recovered']") and "earlier ecorecover call" in m for m in msgs)
    # overwrite=True replaces the user's column on request.
    _rec(a, models, mode="fast", key_added="SE", overwrite=True)
    assert (a.obs["SE"].astype(str) == res["SE"]).all()
    # The same rule for loocv.
    b = sim.copy()
    b.obs["cvPred"] = "mine"
    with pytest.raises(ValueError, match=r"adata.obs\['cvPred'\] already exist.*overwrite=True"):
        loocv(b, repeats=1, progress=False)
    assert (b.obs["cvPred"] == "mine").all()
    se = b.obs["SE"].copy()
    out = loocv(b, repeats=1, progress=False, key_added="cv")
    pd.testing.assert_series_equal(b.obs["SE"], se)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        loocv(b, repeats=1, progress=False, key_added="cv")
    assert any(r.category is ValidationWarning and str(r.message).startswith("replacing adata.obs['cv']") for r in rec)
    assert metrics(out, pred_key="cv").shape[0] == se.nunique()


def test_scaled_input_accepted(dc, models, sim, tmp_path):
    ref, _ = _rec(dc.copy(), models, mode="fast")
    a = dc.copy()
    a.layers["lognorm"] = a.X.copy()
    a.raw = a  # log-normalised data kept in raw, as scanpy users do before sc.pp.scale
    a.X = _scaled(a.X)
    with pytest.raises(
        ValueError,
        match=r"adata.X holds negative values \(e.g. -[0-9.e-]+ at cell '.+', gene '.+'\): it looks like scaled or "
        r"centred data.*usually in adata.raw \(\d+ genes\): pass use_raw=True; a layer: pass layer= one of \['lognorm'\]",
    ):
        recover(a, models, mode="fast", progress=False)
    got, _ = _rec(a.copy(), models, mode="fast", use_raw=True)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    got2, _ = _rec(a.copy(), models, mode="fast", layer="lognorm")
    pd.testing.assert_frame_equal(got2, ref, check_exact=True)
    assert got.attrs["ecorecover"]["params"]["matrix"] == "adata.raw.X"
    with pytest.raises(KeyError, match=r"layer='counts' is not a layer of adata \(layers: \['lognorm'\]\)"):
        recover(a, models, layer="counts", progress=False)
    with pytest.raises(ValueError, match="pass one of them"):
        recover(a, models, layer="lognorm", use_raw=True, progress=False)
    # Matrices streamed in blocks (a dask array, a backed file) are refused in the first pass.
    import dask.array as da
    lazy = ad.AnnData(da.from_array(np.asarray(a.X), chunks=(40, 250)), obs=a.obs.copy(), var=a.var.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecoveryWarning)
        with pytest.raises(ValueError, match=r"adata.X holds negative values \(e.g. -[0-9.e-]+ at cell '.+', gene"):
            recover(lazy, models, progress=False)
        ad.AnnData(np.asarray(a.X), obs=a.obs.copy(), var=a.var.copy()).write_h5ad(tmp_path / "scaled.h5ad")
        backed = ad.read_h5ad(tmp_path / "scaled.h5ad", backed="r")
        with pytest.raises(ValueError, match="adata.X holds negative values"):
            recover(backed, models, progress=False)
        backed.file.close()
    # train and loocv refuse it too, and read raw / a layer the same way.
    s = sim.copy()
    s.raw = s
    s.X = _scaled(sp.csr_matrix(s.X))
    with pytest.raises(ValueError, match=r"adata.X holds negative values.*use_raw=True"):
        er.train(s, sample_key="Sample", progress=False)
    with pytest.raises(ValueError, match=r"adata.X holds negative values.*use_raw=True"):
        loocv(s, repeats=1, progress=False)
    m_raw = er.train(s, sample_key="Sample", progress=False, use_raw=True)
    m_ref = er.train(sim, sample_key="Sample", progress=False)
    assert list(m_raw) == list(m_ref)
    assert all(m_raw[c].equals(m_ref[c]) for c in m_ref)
    cv_raw = loocv(s, repeats=1, progress=False, use_raw=True)
    cv_ref = loocv(sim.copy(), repeats=1, progress=False)
    assert cv_raw["cvPred"].equals(cv_ref["cvPred"]) and cv_raw.attrs["ecorecover"]["params"]["matrix"] == "adata.raw.X"


def test_unscored_cells_look_scored(dc, models):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from ecorecover import pl

    a = dc.copy()
    res, msgs = _rec(a, models)
    ct = res["CellType"]
    omitted = res.attrs["ecorecover"]["unscored"]["too_few_genes_expressed"]
    # R's columns are kept: unscored cells have InitSE = the first SE column and score 0 ...
    unscored = ct.isin(["Malignant", "NK"]).to_numpy()
    assert (res.loc[unscored, "InitSE"] == res.columns[4]).all() and (res.loc[unscored, "PredScore"] == 0).all()
    # ... and the new flag tells them apart from scored cells.
    assert not res.loc[unscored, "scored"].any()
    assert int((~res["scored"]).sum()) == unscored.sum() + omitted
    assert (res["scored"] == (res[res.attrs["ecorecover"]["se_names"]].sum(axis=1) > 0)).all()
    assert (a.obs["SE_recovered_scored"].to_numpy() == res["scored"].to_numpy()).all()
    assert any("15 cells of cell types with fewer than 20 cells" in m and "scored False" in m for m in msgs)
    # Plots do not count them under an SE: a crosstab of InitSE shows an "unscored" segment.
    ax = pl.composition(res, groupby="CellType", key="InitSE", normalize=False)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "unscored"
    bars = dict(zip([t.get_text() for t in ax.get_xticklabels()], np.array([[r.get_height() for r in c] for c in ax.containers]).T))
    assert bars["NK"][-1] == 15 and bars["NK"][:-1].sum() == 0
    ax2 = pl.scores_heatmap(a, max_cells=None)  # AnnData: obs["SE_recovered"], unscored cells left out
    assert np.asarray(ax2.images[0].get_array()).shape[1] == int(res["scored"].sum())
    assert f"{int((~res['scored']).sum())} unscored cells not shown" in ax2.get_xlabel()
    # metrics(scheme="all") counts unscored cells as misses; R's scheme does not look at them.
    obs = a.obs.assign(SE=np.where(a.obs["SE_recovered_scored"], a.obs["SE_recovered"].astype(str), "SE01"))
    assert metrics(obs, pred_key="SE_recovered", sample_key=None, metric="recall", scheme="all").loc["SE01", "SE01"] < 1


def test_small_gene_losses_silent(dc, models):
    w = models["DC"]
    genes = list(dict.fromkeys(f.rsplit("__", 1)[0] for f in w.index))
    drop = genes[10:41]  # 31 of 276 genes (11.2%) missing: under R's radar
    a = dc[:, [g for g in dc.var_names if g not in set(drop)]].copy()
    res, msgs = _rec(a, {"DC": w}, mode="fast")
    msg = next(m for m in msgs if "genes of the 'DC' model" in m)
    assert "only 245 of the 276 genes of the 'DC' model (88.8%)" in msg and repr(drop[:6]) in msg
    assert "IL8 = CXCL8" in msg
    assert res.attrs["ecorecover"]["genes_found"]["DC"]["missing"] == drop
    assert list(a.uns["SE_recovered"]["genes_found"]["DC"]["missing"]) == drop
    # A letter-case mismatch is named.
    b = dc.copy()
    b.var_names = [g.lower() if g in set(genes[:30]) else g for g in dc.var_names]
    _, msgs = _rec(b, {"DC": w}, mode="fast")
    assert any(f"match data genes up to letter case (e.g. {genes[0].lower()!r} for {genes[0]!r}" in m for m in msgs)
    c = dc.copy()
    c.var_names = [g.lower() for g in dc.var_names]
    with pytest.raises(GeneMatchError, match="up to letter case"):
        recover(c, {"DC": w}, progress=False)


def test_logging_and_progress_labels(dc, models, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="ecorecover"):
        _rec(dc.copy(), models, mode="fast")
    logged = [r.getMessage() for r in caplog.records if r.name == "ecorecover.recover"]
    assert any("cell types scored: DC (123)" in m for m in logged)
    assert any("runs (fast mode)" in m for m in logged)

    class _Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecoveryWarning)
        recover(dc.copy(), models, mode="fast", progress=True)
    assert "ecorecover.recover: runs (fast)" in tty.getvalue()
    quiet = io.StringIO()  # not a terminal (a log file, CI): no bar
    monkeypatch.setattr(sys, "stderr", quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecoveryWarning)
        recover(dc.copy(), models, mode="fast", progress=True)
    assert quiet.getvalue() == ""


def test_pbmc68k_reduced_scaled_refused_and_raw_recovers(published_models_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import scanpy as sc
        a = sc.datasets.pbmc68k_reduced()  # ships inside scanpy: X after sc.pp.scale, log-normalised data in raw
    from ecorecover.io import load_published_models

    model = load_published_models(published_models_dir)
    # A user maps the bulk labels to the model's cell types (unmapped types get no model).
    mapping = {"Dendritic": "DC", "CD14+ Monocyte": "Macrophage", "CD19+ B": "B", "CD56+ NK": "NK",
               "CD8+ Cytotoxic T": "CD8T", "CD4+/CD25 T Reg": "CD4T"}
    a.obs["CellType"] = a.obs["bulk_labels"].astype(str).map(mapping).fillna("other")
    with pytest.raises(ValueError, match=r"adata.X holds negative values.*sc.pp.scale.*adata.raw \(765 genes\).*use_raw=True"):
        recover(a, model, progress=False)
    with pytest.raises(ValueError, match="use_raw=True"):
        er.train(a, celltype_key="CellType", se_key="louvain", progress=False)
    res, msgs = _rec(a, model, use_raw=True)
    # The same as recovering an AnnData built from raw by hand.
    b = ad.AnnData(a.raw.X.copy(), obs=a.obs[["CellType"]].copy(), var=a.raw.var.copy())
    ref, _ = _rec(b, model)
    pd.testing.assert_frame_equal(res.drop(columns="CellType"), ref.drop(columns="CellType"), check_exact=True)
    counts = a.obs["CellType"].value_counts()
    scored_types = set(res.loc[res["scored"], "CellType"])
    assert scored_types == {ct for ct in mapping.values() if counts[ct] >= 20}
    assert not res.loc[res["CellType"] == "other", "scored"].any()
    dc = res["CellType"] == "DC"
    assert res.loc[dc, "scored"].mean() > 0.9 and res.loc[dc & res["scored"], "PredScore"].gt(0).all()
    info = a.uns["SE_recovered"]
    assert info["params"]["matrix"] == "adata.raw.X" and info["genes_found"]["DC"]["found"] == 22
    assert any("genes of the 'DC' model" in m and "missing e.g." in m for m in msgs)


# ------------------------------------------------------------------------------------------
# Issue 14


def test_fast_mode_scores_what_it_cannot(dc, models):
    w = models["DC"]
    plain = w[[f.endswith("__pos") for f in w.index]].rename(index=lambda f: f[: -len("__pos")])
    first = plain.index[0]
    # 1. A plain model whose first gene contains "__" reads as posneg: no feature matches W.
    odd = plain.rename(index={first: first + "__x"})
    a = dc.copy()
    a.var_names = [g + "__x" if g == first else g for g in dc.var_names]
    # 2. Cells identical after scaling: every feature is constant.
    b = dc.copy()
    x = b.X.toarray()
    is_dc = (b.obs["CellType"] == "DC").to_numpy()
    x[is_dc] = x[np.flatnonzero(is_dc)[np.argmax((x[is_dc] > 0).sum(axis=1))]]
    b.X = sp.csr_matrix(x)
    for data, model, scale in ((a, {"DC": odd}, False), (b, {"DC": w}, True)):
        out = {}
        for mode in ("exact", "fast"):
            res, msgs = _rec(data.copy(), model, mode=mode, scale=scale)
            dcs = res["CellType"] == "DC"
            assert not res.loc[dcs, "scored"].any(), mode
            assert (res.loc[dcs, "SE"] == "NonSE").all() and (res.loc[dcs, "PredScore"] == 0).all(), mode
            assert any("123 cells" in m and "no model feature is left" in m for m in msgs), (mode, msgs)
            assert res.attrs["ecorecover"]["unscored"]["no_features"] == 123
            out[mode] = res
        assert out["exact"]["scored"].equals(out["fast"]["scored"])  # the modes agree on what is scored


@pytest.mark.parametrize("name", OUTPUT_COLUMNS)
def test_names_collide_with_output_columns(dc, models, name):
    w = models["DC"].rename(columns={models["DC"].columns[1]: name})
    a = dc.copy()
    with pytest.raises(ValueError, match=rf"model\['DC'\] has an SE named '{name}'.*rename the SE"):
        recover(a, {"DC": w}, progress=False)
    assert "SE_recovered" not in a.obs and "ecorecover" not in a.uns  # refused before any work


def test_cells_per_run_one_warns_once(dc, models):
    a = dc[(dc.obs["CellType"] == "DC").to_numpy()].copy()
    res, msgs = _rec(a, {"DC": models["DC"]}, cells_per_run=1)
    nofeat = [m for m in msgs if "no model feature" in m]
    assert len(nofeat) == 1, len(nofeat)
    assert "123 cells in 123 run(s) are not scored" in nofeat[0] and "use a larger cells_per_run" in nofeat[0]
    assert not res["scored"].any()


def test_metrics_drops_predictions_outside_labels():
    truth = np.array(["SE01"] * 100 + ["SE02"] * 100, dtype=object)
    pred = truth.copy()
    pred[50:100] = "NonSE"  # half of the SE01 cells are not called
    obs = pd.DataFrame({"SE": truth, "pred": pred})
    r = metrics(obs, pred_key="pred", sample_key=None, metric="recall")  # R's ComputeMetrics
    assert r.loc["SE01", "SE01"] == 1.0  # the NonSE cells are dropped, as R does
    assert r.attrs["ecorecover"]["n_outside"] == 50 and r.attrs["ecorecover"]["outside_labels"] == {"NonSE": 50}
    assert r.attrs["ecorecover"]["other_scheme"]["SE01"] == 0.5  # the honest variant alongside
    honest = metrics(obs, pred_key="pred", sample_key=None, metric="recall", scheme="all")
    assert honest.loc["SE01", "SE01"] == 0.5 and honest.loc["SE02", "SE02"] == 1.0
    f1 = metrics(obs, pred_key="pred", sample_key=None, scheme="all")
    assert f1.loc["SE01", "SE01"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    # Unscored cells are misses under scheme="all" whatever their label.
    obs["pred_scored"] = True
    obs.loc[150:159, "pred_scored"] = False
    assert metrics(obs, pred_key="pred", sample_key=None, metric="recall", scheme="all").loc["SE02", "SE02"] == 0.9
    assert metrics(obs, pred_key="pred", sample_key=None, metric="recall").loc["SE02", "SE02"] == 1.0
    with pytest.raises(ValueError, match="scheme must be one of 'all', 'r'"):
        metrics(obs, pred_key="pred", scheme="honest")


def test_distinct_labels_do_not_merge_in_recover_loocv_or_spatial(dc, models, sim):
    """Issue 14 item 7 beyond train: int 1 and str "1" are two labels as written; recover's cell
    types, loocv's labels and the spatial checks' labels refuse to merge them."""
    from ecorecover import spatial
    from ecorecover._labels import MixedLabelTypesError

    mixed = pd.Series(["DC"] * (dc.n_obs - 2) + [1, "1"], index=dc.obs_names, dtype=object)
    with pytest.raises(MixedLabelTypesError, match=r"1 \(int\) and '1' \(str\) would both become the label '1'"):
        recover(dc, models, celltypes=mixed, progress=False)
    a = sim.copy()
    a.obs["SE"] = a.obs["SE"].astype(object)
    a.obs.iloc[0, a.obs.columns.get_loc("SE")] = 1
    a.obs.iloc[1, a.obs.columns.get_loc("SE")] = "1"
    with pytest.raises(ValueError, match="mixes label types"):
        loocv(a, sample_key="Sample", progress=False)
    cells = pd.DataFrame({"X": np.arange(6.0), "Y": np.zeros(6), "CellType": ["A"] * 6,
                          "CellState": [1, "1", "x", "x", "y", "y"]}, dtype=object).astype({"X": float, "Y": float})
    with pytest.raises(spatial.SpatialInputError, match="mixes label types"):
        spatial.colocalization(cells, coords=("X", "Y"), n_perm=2, seed=1, progress=False)
