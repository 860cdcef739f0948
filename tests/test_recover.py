"""recover() / nmf_predict() in exact mode against R SpatialEcoTyper 1.0.4 (tests/fixtures/recover)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import FIXTURES, max_abs_diff, read_lines, read_matrix, read_table

from ecorecover import preprocessing as pp
from ecorecover.recovery import GeneMatchError, RecoveryWarning, nmf_predict, recover

TRAIN_TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, sp.csr_matrix]:
    counts = read_matrix("recover/input/counts.tsv.gz")  # genes x cells
    meta = read_table("recover/input/meta.tsv")
    assert list(meta["cell"]) == list(counts.columns)
    x = pp.log_normalize(sp.csr_matrix(counts.to_numpy().T))
    return counts, meta, x


def _adata(data, rows=None) -> ad.AnnData:
    counts, meta, x = data
    obs = pd.DataFrame({"CellType": meta["CellType"].to_numpy()}, index=list(counts.columns))
    a = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=list(counts.index)))
    return a if rows is None else a[rows].copy()


@pytest.fixture(scope="module")
def train_models() -> dict[str, pd.DataFrame]:
    return {ct: read_matrix(f"train/sample/{ct}.tsv.gz") for ct in TRAIN_TYPES}


def _quiet_recover(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecoveryWarning)
        return recover(*args, progress=False, **kw)


@pytest.fixture(scope="module")
def exact_train(data, train_models) -> tuple[pd.DataFrame, ad.AnnData, list]:
    a = _adata(data)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = recover(a, train_models, progress=False)
    return res, a, rec


# ---------------------------------------------------------------------------------------------
# Parity with RecoverSE


def test_recoverse_train_models_parity(exact_train):
    res, _, _ = exact_train
    ref = read_table("recover/recoverse_train_models/assignments.tsv.gz").set_index("CID")
    scores = read_matrix("recover/recoverse_train_models/scores.tsv.gz")
    assert list(res.index) == list(ref.index)
    assert list(res.columns[:4]) == ["CellType", "InitSE", "SE", "PredScore"]
    assert (res["CellType"] == ref["CellType"]).all()
    assert (res["InitSE"] == ref["InitSE"]).all()
    assert (res["SE"] == ref["SE"]).all()
    # Score columns: R's sort() of the SE names (ICU: nonSE first).
    assert list(res.columns[4:-1]) == list(scores.columns)
    # PredScore and every score bit-identical to R's.
    assert max_abs_diff(res["PredScore"], ref["PredScore"]) == 0.0
    assert max_abs_diff(res[scores.columns], scores) == 0.0


def test_recoverse_runs_match_r(exact_train):
    res, _, _ = exact_train
    runs = read_table("recover/recoverse_train_models/runs.tsv")
    mine = pd.DataFrame(res.attrs["ecorecover"]["runs"])
    assert list(mine["CellType"]) == list(runs["CellType"])
    for col in ["n_cells", "first_cell", "last_cell", "n_features"]:
        assert list(mine[col]) == list(runs[col]), col
    assert list(mine["n_iter"]) == list(runs["niter"])
    assert max_abs_diff(mine["max_V"], runs["max_V"]) == 0.0


def test_recoverse_unscored_cells_and_warnings(exact_train):
    res, a, rec = exact_train
    msgs = [str(w.message) for w in rec if issubclass(w.category, RecoveryWarning)]
    # 15 NK cells (< 20), 1265 cells of unmodelled types, 4 cells with < 3 model genes.
    assert any("15 cells" in m and "NK (15)" in m for m in msgs)
    assert any("1265 cells" in m and "Malignant (812)" in m and "Epithelial (453)" in m for m in msgs)
    assert any(m.startswith("4 cells express fewer than 3") for m in msgs)
    info = a.uns["SE_recovered"]
    assert info["unscored"]["too_few_cells"] == 15
    assert info["unscored"]["no_model"] == 1265
    assert info["unscored"]["too_few_genes_expressed"] == 4
    assert info["unscored"]["total"] == 15 + 1265 + 4
    omitted = read_lines("recover/recoverse_train_models/call.txt")[4].split(": ")[1].split(",")
    assert (res.loc[omitted, "PredScore"] == 0).all() and (res.loc[omitted, "SE"] == "NonSE").all()
    assert (res.loc[omitted, "InitSE"] == "nonSE").all()  # first column under ICU collation
    unscored = res["CellType"].isin(["NK", "Malignant", "Epithelial"])
    assert (res.loc[unscored, res.columns[4:-1]] == 0).all().all()
    # What is written into the AnnData.
    assert (a.obs["SE_recovered"].astype(str) == res["SE"]).all()
    assert np.array_equal(a.obs["SE_recovered_score"].to_numpy(), res["PredScore"].to_numpy())
    assert isinstance(a.obsm["SE_recovered_scores"], pd.DataFrame)
    assert list(a.obsm["SE_recovered_scores"].columns) == list(res.columns[4:-1])
    assert info["params"]["cells_per_run"] == 1000 and info["params"]["mode"] == "exact"
    assert info["genes_found"]["B"]["found"] == info["genes_found"]["B"]["total"]
    assert info["model"]["cell_types"] == TRAIN_TYPES


def test_recoverse_minscore(data, train_models):
    res = _quiet_recover(_adata(data), train_models, min_score=0.6)
    ref = read_table("recover/recoverse_train_models/assignments_minscore0.6.tsv.gz").set_index("CID")
    assert (res["SE"] == ref["SE"]).all()
    assert (res["InitSE"] == ref["InitSE"]).all()
    assert max_abs_diff(res["PredScore"], ref["PredScore"]) == 0.0


def test_recoverse_lc_collate_c(data, train_models, exact_train):
    a = _adata(data)
    out = _quiet_recover(a, train_models, collation="C", copy=True)
    assert isinstance(out, ad.AnnData) and "SE_recovered" not in a.obs  # copy leaves the input alone
    ref = read_table("recover/recoverse_train_models/assignments_LC_COLLATE_C.tsv.gz").set_index("CID")
    assert (out.obs["SE_recovered"].astype(str) == ref["SE"]).all()
    assert list(out.obsm["SE_recovered_scores"].columns) == [f"SE{i:02d}" for i in range(1, 12)] + ["nonSE"]
    init = out.obsm["SE_recovered_scores"].to_numpy().argmax(axis=1)
    assert (np.asarray(out.obsm["SE_recovered_scores"].columns)[init] == ref["InitSE"].to_numpy()).all()
    # The C collation changes the InitSE of unscored cells only (1284 of them).
    icu = exact_train[0]
    assert int((icu["InitSE"] != ref["InitSE"]).sum()) == 1284


def test_recoverse_dataframe_input_matches(data, train_models):
    """A genes x cells DataFrame + celltypes (R's call), on the DC and Malignant cells."""
    counts, meta, x = data
    keep = np.flatnonzero(meta["CellType"].isin(["DC", "Malignant"]).to_numpy())
    df = pd.DataFrame(x[keep].toarray().T, index=counts.index, columns=counts.columns[keep])
    res = _quiet_recover(df, {"DC": train_models["DC"]}, celltypes=meta["CellType"].to_numpy()[keep], n_jobs=1)
    ref = read_table("recover/recoverse_train_models/assignments.tsv.gz").set_index("CID")
    scores = read_matrix("recover/recoverse_train_models/scores.tsv.gz")
    dc = res.index[res["CellType"] == "DC"]
    assert (res.loc[dc, "InitSE"] == ref.loc[dc, "InitSE"]).all()
    assert max_abs_diff(res.loc[dc, train_models["DC"].columns], scores.loc[dc, train_models["DC"].columns]) == 0.0
    assert pd.DataFrame(res.attrs["ecorecover"]["runs"])["n_iter"].tolist() == [760]


# ---------------------------------------------------------------------------------------------
# NMFpredict


def test_nmfpredict_multirun(data, train_models):
    counts, meta, x = data
    fib = np.flatnonzero((meta["CellType"] == "Fibroblast").to_numpy())
    xf = pd.DataFrame(x[fib].toarray(), index=counts.columns[fib], columns=counts.index)
    with pytest.warns(RecoveryWarning, match="3 cells express fewer than 3 genes"):
        scores, runs = nmf_predict(train_models["Fibroblast"], xf, scale=True, cells_per_run=300, return_runs=True)
    ref_runs = read_table("recover/nmfpredict_multirun/runs.tsv")
    assert [r["n_iter"] for r in runs] == list(ref_runs["niter"]) == [1370, 2000]
    for i, r in enumerate(runs, start=1):
        assert r["features"] == read_lines(f"recover/nmfpredict_multirun/run{i}_features.txt")
        h0 = read_matrix(f"recover/nmfpredict_multirun/run{i}_H0.tsv.gz")
        h = read_matrix(f"recover/nmfpredict_multirun/run{i}_H_raw.tsv.gz")
        assert r["cells"] == list(h.columns)
        assert max_abs_diff(r["H0"], h0) == 0.0
        assert max_abs_diff(r["H_raw"], h) == 0.0  # within 1e-9 required
    ref = read_matrix("recover/nmfpredict_multirun/scores_sum2one.tsv.gz")
    assert list(scores.index) == list(ref.index) and list(scores.columns) == list(ref.columns)
    assert max_abs_diff(scores, ref) == 0.0


def test_nmfpredict_kernel_small():
    w = read_matrix("recover/nmfpredict_kernel_small/W_model.tsv")
    z = read_matrix("recover/nmfpredict_kernel_small/input_scaled.tsv.gz")  # genes x cells
    scores, runs = nmf_predict(w, z.T, scale=False, cells_per_run=500, sum_to_one=False, return_runs=True)
    assert len(runs) == 1 and runs[0]["n_iter"] == 970
    v = read_matrix("recover/nmfpredict_kernel_small/V.tsv.gz")
    assert runs[0]["features"] == list(v.index)
    assert list(read_matrix("recover/nmfpredict_kernel_small/W_used.tsv").index) == list(v.index)
    assert max_abs_diff(runs[0]["H0"], read_matrix("recover/nmfpredict_kernel_small/H0.tsv.gz")) == 0.0
    h = read_matrix("recover/nmfpredict_kernel_small/H_raw.tsv.gz")
    assert max_abs_diff(scores.T, h) == 0.0


# ---------------------------------------------------------------------------------------------
# Published MERSCOPE models


def _published_tsv(root: Path) -> dict[str, pd.DataFrame]:
    return {
        ct: pd.read_csv(root / f"MERSCOPE_W_v1_{ct}.tsv", sep="\t", index_col=0, float_precision="round_trip")
        for ct in TRAIN_TYPES
    }


@pytest.fixture(scope="module")
def published_exact(data, published_models_dir):
    return _quiet_recover(_adata(data), _published_tsv(published_models_dir))


def test_recoverse_published_explicit_ws(published_exact):
    res = published_exact
    ref = read_table("recover/recoverse_published_models/assignments_explicit_Ws.tsv.gz").set_index("CID")
    scores = read_matrix("recover/recoverse_published_models/scores.tsv.gz")
    assert (res["InitSE"] == ref["InitSE"]).all() and (res["SE"] == ref["SE"]).all()
    assert list(res.columns[4:-1]) == list(scores.columns)
    # Measured 0.0; it needs R's long-double colSums (a correctly rounded sum is 1 ulp off in one cell).
    assert max_abs_diff(res["PredScore"], ref["PredScore"]) == 0.0
    assert max_abs_diff(res[scores.columns], scores) == 0.0
    runs = read_table("recover/recoverse_published_models/runs.tsv")
    mine = pd.DataFrame(res.attrs["ecorecover"]["runs"])
    assert list(mine["n_iter"]) == list(runs["niter"]) and list(mine["n_features"]) == list(runs["n_features"])


def test_recoverse_published_default_branch(data, published_models_dir):
    from ecorecover.io import apply_published_postprocess, load_published_models

    model = load_published_models(published_models_dir)
    adata = _adata(data)
    out = _quiet_recover(adata, model)  # recover() applies R's default-branch post-processing itself
    res = out
    ref = read_table("recover/recoverse_published_models/assignments_default_branch.tsv.gz").set_index("CID")
    assert (adata.obs["SE_recovered"].astype(str).to_numpy() == ref["SE"].to_numpy()).all()
    assert out.attrs["ecorecover"]["params"]["published_postprocess"] is True
    pd.testing.assert_frame_equal(apply_published_postprocess(out, model), out)  # idempotent
    assert (out["SE"] == ref["SE"]).all()
    assert (out["InitSE"] == ref["InitSE"]).all()
    assert max_abs_diff(out["PredScore"], ref["PredScore"]) == 0.0
    assert res.attrs["ecorecover"]["model"]["source"].startswith("R:")


# ---------------------------------------------------------------------------------------------
# Behaviour: inputs, threads, backed files


@pytest.fixture(scope="module")
def small(data, train_models):
    """DC cells plus a few unmodelled cells: a fast exact case (one run, 760 iterations)."""
    _, meta, _ = data
    rows = np.flatnonzero(meta["CellType"].isin(["DC"]).to_numpy())
    rows = np.concatenate([rows, np.flatnonzero((meta["CellType"] == "Malignant").to_numpy())[:7]])
    a = _adata(data, np.sort(rows))
    ref = _quiet_recover(a.copy(), {"DC": train_models["DC"]}, n_jobs=1)
    return a, ref


def test_results_do_not_depend_on_threads(small, train_models):
    a, ref = small
    for n_jobs in (2, -1):
        res = _quiet_recover(a.copy(), {"DC": train_models["DC"]}, n_jobs=n_jobs)
        pd.testing.assert_frame_equal(res, ref)
    # Several runs processed in parallel give the runs' results, whatever the thread count.
    r1 = _quiet_recover(a.copy(), {"DC": train_models["DC"]}, cells_per_run=40, n_jobs=1)
    r2 = _quiet_recover(a.copy(), {"DC": train_models["DC"]}, cells_per_run=40, n_jobs=3)
    pd.testing.assert_frame_equal(r1, r2)
    assert list(pd.DataFrame(r1.attrs["ecorecover"]["runs"])["n_cells"]) == [31, 31, 31, 30]  # ceil(123 / 40) = 4 runs, the first 123 mod 4 get one more


def test_dense_csc_and_backed_inputs_agree(small, train_models, tmp_path):
    a, ref = small
    for x in (a.X.toarray(), sp.csc_matrix(a.X)):
        b = ad.AnnData(x, obs=a.obs.copy(), var=a.var.copy())
        pd.testing.assert_frame_equal(_quiet_recover(b, {"DC": train_models["DC"]}), ref)
    path = tmp_path / "small.h5ad"
    a.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    res = _quiet_recover(backed, {"DC": train_models["DC"]})
    pd.testing.assert_frame_equal(res, ref)
    assert backed.isbacked and "SE_recovered" in backed.obs


def test_raw_count_guard(small, train_models):
    a, plain = small
    raw = a.copy()
    raw.X = raw.X.multiply(20).tocsr()  # max > 80: R applies log2(x + 1)
    with pytest.warns(pp.RawCountWarning, match="raw counts"):
        res = _quiet_recover(raw, {"DC": train_models["DC"]})
    logged = a.copy()
    logged.X = raw.X.copy()
    logged.X.data = np.log2(logged.X.data + 1)
    ref = _quiet_recover(logged, {"DC": train_models["DC"]})
    # The guard's log2(x + 1) is the one done by hand, bit for bit ...
    pd.testing.assert_frame_equal(res, ref, check_exact=True)
    assert res.attrs["ecorecover"]["params"]["raw_count_guard_fired"]
    assert not ref.attrs["ecorecover"]["params"]["raw_count_guard_fired"]
    # ... and it matters: without it the factor 20 cancels in the scaling and the scores are a's.
    assert not np.allclose(res.iloc[:, 4:-1].to_numpy(), plain.iloc[:, 4:-1].to_numpy())


def test_gene_symbols_and_no_genes_found(small, train_models):
    a, ref = small
    b = a.copy()
    b.var["symbol"] = b.var_names
    b.var_names = [f"ENSG{i:011d}" for i in range(b.n_vars)]
    first_gene = str(train_models["DC"].index[0]).removesuffix("__pos").removesuffix("__neg")
    with pytest.raises(GeneMatchError, match=re.escape(f"model uses identifiers like ['{first_gene}'")) as e:
        _quiet_recover(b, {"DC": train_models["DC"]})
    assert "ENSG00000000000" in str(e.value) and "gene_symbols" in str(e.value)
    res = _quiet_recover(b, {"DC": train_models["DC"]}, gene_symbols="symbol")
    pd.testing.assert_frame_equal(res, ref)
    with pytest.raises(KeyError, match="gene_symbols='nope'"):
        _quiet_recover(b, {"DC": train_models["DC"]}, gene_symbols="nope")


def test_too_few_model_genes_warns_and_scores_zero(small, train_models):
    a, _ = small
    w = train_models["DC"]
    genes = list(dict.fromkeys(i.rsplit("__", 1)[0] for i in w.index))
    keep = [g for g in a.var_names if g not in set(genes[4:])]  # 4 model genes left
    b = a[:, keep].copy()
    with pytest.warns(RecoveryWarning) as rec:
        res = recover(b, {"DC": w}, progress=False)
    msgs = " | ".join(str(r.message) for r in rec)
    assert "only 4 of the" in msgs and "'DC'" in msgs  # under half found
    assert "123 'DC' cells are not scored" in msgs
    assert (res["PredScore"] == 0).all() and (res["SE"] == "NonSE").all()
    assert res.attrs["ecorecover"]["unscored"]["too_few_model_genes"] == 123
    assert res.attrs["ecorecover"]["genes_found"]["DC"]["found"] == 4


def test_half_of_genes_missing_warns(small, train_models):
    a, _ = small
    w = train_models["DC"]
    genes = list(dict.fromkeys(i.rsplit("__", 1)[0] for i in w.index))
    drop = set(genes[: len(genes) // 2 + 1])
    b = a[:, [g for g in a.var_names if g not in drop]].copy()
    with pytest.warns(RecoveryWarning) as rec:
        res = recover(b, {"DC": w}, progress=False)
    assert any("only 137 of the 276 genes of the 'DC' model (49.6%)" in str(r.message) for r in rec)
    assert (res.loc[res["CellType"] == "DC", "PredScore"] > 0).all()


def test_bad_inputs(small, train_models):
    a, _ = small
    m = {"DC": train_models["DC"]}
    with pytest.raises(ValueError, match="no cell type of the model is present"):
        _quiet_recover(a, {"Plasma": train_models["Plasma"]})
    with pytest.raises(ValueError, match="celltypes has 5 labels but the data have 130 cells"):
        _quiet_recover(a, m, celltypes=["DC"] * 5)
    with pytest.raises(KeyError, match="celltype_key='cell_type'"):
        _quiet_recover(a, m, celltype_key="cell_type")
    dup = a.copy()
    dup.obs_names = [a.obs_names[0]] * 2 + list(a.obs_names[2:])
    with pytest.raises(ValueError, match="cell ids must be unique"):
        _quiet_recover(dup, m)
    gene = train_models["DC"].index[0].rsplit("__", 1)[0]
    for bad in (np.nan, np.inf):
        b = a.copy()
        x = b.X.toarray()
        x[3, list(b.var_names).index(gene)] = bad
        b.X = sp.csr_matrix(x)
        with pytest.raises(ValueError, match=f"non-finite.*cell '{b.obs_names[3]}', gene '{gene}'"):
            _quiet_recover(b, m)
    w = train_models["DC"].copy()
    w.iloc[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"model\['DC'\] holds 1 non-finite"):
        _quiet_recover(a, {"DC": w})
    with pytest.raises(ValueError, match="mode must be"):
        _quiet_recover(a, m, mode="approx")
    with pytest.raises(ValueError, match="cells_per_run"):
        _quiet_recover(a, m, cells_per_run=0)
    with pytest.raises(TypeError, match="mapping"):
        _quiet_recover(a, [train_models["DC"]])
    with pytest.raises(ValueError, match="celltypes="):
        _quiet_recover(pd.DataFrame(a.X.toarray().T, index=a.var_names, columns=a.obs_names), m)


def test_unlabelled_and_unmodelled_cells_are_reported(small, train_models):
    a, ref = small
    b = a.copy()
    labels = b.obs["CellType"].astype(object).to_numpy()
    labels[np.flatnonzero(labels == "Malignant")[0]] = None
    with pytest.warns(RecoveryWarning, match=r"7 cells have no model.*Malignant \(6\), unlabelled \(1\)"):
        res = recover(b, {"DC": train_models["DC"]}, celltypes=labels, progress=False)
    pd.testing.assert_frame_equal(res.drop(columns="CellType"), ref.drop(columns="CellType"))


def test_results_survive_h5ad_and_series_labels(small, train_models, tmp_path):
    a, ref = small
    b = a.copy()
    labels = b.obs["CellType"].astype(str)
    shuffled = labels.iloc[::-1]  # a Series indexed by cell id is matched by id, not position
    res = _quiet_recover(b, {"DC": train_models["DC"]}, celltypes=shuffled, key_added="rec")
    pd.testing.assert_frame_equal(res, ref)
    b.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert (back.obs["rec"].astype(str) == ref["SE"]).all()
    assert np.array_equal(back.obsm["rec_scores"].to_numpy(), ref[ref.columns[4:-1]].to_numpy())
    assert back.uns["rec"]["unscored"]["no_model"] == 7
    assert int(back.uns["rec"]["runs"]["n_iter"].iloc[0]) == 760


def test_results_print_and_concatenate(exact_train):
    """attrs hold plain data, so pandas can compare them when it concatenates (repr does)."""
    res = exact_train[0]
    assert "CellType" in repr(res) and "rows x" in repr(res)
    both = pd.concat([res, res])
    assert len(both) == 2 * len(res)
    runs = pd.DataFrame(res.attrs["ecorecover"]["runs"])
    assert list(runs.columns[:3]) == ["CellType", "run", "n_cells"]
