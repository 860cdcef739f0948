"""train() against R's NMFGenerateWList (tests/fixtures/train, aggregate, rng)."""

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

from ecorecover._aggregate import aggregate
from ecorecover._collate import collate_sorted
from ecorecover.training import MissingLabelWarning, SkippedCellTypeWarning, TrainingInputError, train
from ecorecover.training.sampling import draw_rows
from ecorecover.preprocessing import RawCountWarning, log_normalize

from _training_helpers import train_with_plan
from conftest import FIXTURES, max_abs_diff, read_matrix, read_table

CELL_TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]
VARIANTS = {
    "sample": dict(sample_key="Sample"),
    "nosample": {},
    "sample_perseInf_seed7": dict(sample_key="Sample", n_features_per_se=None, seed=7),
    "sample_downsample150": dict(sample_key="Sample", downsample=150),
    "nosample_downsample150": dict(downsample=150),
}


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "train/input/counts.tsv.gz", sep="\t", index_col=0)


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return read_table("train/input/meta.tsv").set_index("cell")


@pytest.fixture(scope="module")
def adata(counts, meta) -> ad.AnnData:
    x = log_normalize(sp.csr_matrix(counts.to_numpy(dtype=float).T))  # cells x genes, as R's NormalizeData
    return ad.AnnData(X=x, obs=meta.loc[counts.columns].copy(), var=pd.DataFrame(index=counts.index))


def run(data, **kw):
    """train() with its plan; R skips Epithelial and Malignant (only nonSE) silently, we warn."""
    with pytest.warns(SkippedCellTypeWarning, match="Epithelial.*Malignant"):
        return train_with_plan(data, **kw)


@pytest.fixture(scope="module")
def trained(adata):
    return {v: run(adata, **kw) for v, kw in VARIANTS.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_matches_r(trained, variant):
    model, plan = trained[variant]
    assert model.cell_types == CELL_TYPES
    worst = 0.0
    for ct in CELL_TYPES:
        exp, got = read_matrix(f"train/{variant}/{ct}.tsv.gz"), model[ct]
        assert list(got.index) == list(exp.index), (variant, ct)
        assert list(got.columns) == list(exp.columns), (variant, ct)
        worst = max(worst, max_abs_diff(got, exp))
    assert worst <= 1e-9  # measured: <= 1.2e-14 in every variant


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_selected_cells_and_genes_match_r(trained, variant):
    _, plan = trained[variant]
    sel = plan.selection()
    cells = read_table("train/selected_cells.tsv.gz")
    genes = read_table("train/selected_genes.tsv.gz")
    for ct in CELL_TYPES:
        exp_c = cells[(cells.variant == variant) & (cells.CellType == ct)].sort_values("order").cell.tolist()
        exp_g = genes[(genes.variant == variant) & (genes.CellType == ct)].sort_values("order").gene.tolist()
        assert sel[ct]["cells"] == exp_c, (variant, ct)
        assert sel[ct]["genes"] == exp_g, (variant, ct)


def test_params_record_the_training(trained):
    model, _ = trained["sample_perseInf_seed7"]
    p = model.params
    assert p["seed"] == 7 and p["seeds"] == [7] and p["run_seed"] == 7
    assert p["n_features_per_se"] is None and p["sample_key"] == "Sample" and p["downsample"] == 2500
    assert "ecorecover_version" in p
    genes = read_table("train/selected_genes.tsv.gz")
    g = genes[(genes.variant == "sample_perseInf_seed7") & (genes.CellType == "NK")].sort_values("order").gene.tolist()
    assert p["selected_genes"]["NK"] == g
    assert set(p["skipped_cell_types"]) == {"Epithelial", "Malignant"}
    summary = read_table("train/summary.tsv")
    s = summary[summary.variant == "sample_perseInf_seed7"].set_index("CellType")["n_cells_used"]
    assert p["n_cells_used"] == {ct: int(s[ct]) for ct in CELL_TYPES}


def test_draws_reproduce_r_sequence():
    """rng/nmfgeneratewlist_draws: balancing and downsampling draws on three layouts."""
    layouts = read_table("rng/nmfgeneratewlist_layouts.tsv.gz")
    draws = read_table("rng/nmfgeneratewlist_draws.tsv.gz")
    n_checked = 0
    for (seed, layout), d in draws.groupby(["seed", "layout"]):
        lay = layouts[layouts.layout == layout].sort_values("cell")
        samples = collate_sorted(lay.Sample)
        blocks = [lay.cell[lay.Sample == s].to_numpy() for s in samples]  # 1-based positions
        positions = np.concatenate(blocks)
        sizes = [len(b) for b in blocks]
        rows, _ = draw_rows(sizes, seed=int(seed), balance=True, downsample=None, min_cells=20, with_samples=True)
        bal = d[d.stage == "balance"].sort_values("i")
        assert bal.target.iloc[0] == max(int(np.floor(np.median(sizes))), 20)
        np.testing.assert_array_equal(positions[rows], bal.value.to_numpy())
        ds = d[d.stage == "downsample"].sort_values("i")
        rows2, _ = draw_rows(sizes, seed=int(seed), balance=True, downsample=2500, min_cells=20, with_samples=True)
        if len(ds):
            np.testing.assert_array_equal(rows2, rows[ds.value.to_numpy() - 1])
        else:
            np.testing.assert_array_equal(rows2, rows)
        n_checked += 1
    assert n_checked == 9


def test_dataframe_input_dense_and_threads_agree(adata, counts, meta, trained):
    ref, _ = trained["nosample_downsample150"]
    lognorm = pd.DataFrame(adata.X.toarray().T, index=counts.index, columns=counts.columns)  # genes x cells
    shuffled = meta.sample(frac=1.0, random_state=0)  # meta matched by cell id, not by position
    df_model, _ = run(lognorm, meta=shuffled, downsample=150, n_jobs=1)
    dense = ad.AnnData(X=adata.X.toarray(), obs=adata.obs.copy(), var=adata.var.copy())
    dense_model, _ = run(dense, downsample=150, n_jobs=2)
    for m in (df_model, dense_model):
        assert m.cell_types == ref.cell_types
        for ct in ref.cell_types:
            assert m[ct].equals(ref[ct])  # bit-identical, whatever the storage and n_jobs


def test_ensemble_reproduces_r_aggregate(adata):
    """train(n_runs=5, seed=1) = R's runs seed 1..5 and AggregateRecoverModels on them."""
    model, _ = run(adata, sample_key="Sample", n_features_per_se=None, seed=1, n_runs=5)
    assert len(model.runs) == 5
    assert [r.params["run_seed"] for r in model.runs] == [1, 2, 3, 4, 5]
    assert model.params["seeds"] == [1, 2, 3, 4, 5]
    worst = 0.0
    for r, run_model in enumerate(model.runs, start=1):
        for ct in CELL_TYPES:
            exp, got = read_matrix(f"aggregate/run_seed{r}/{ct}.tsv.gz"), run_model[ct]
            assert list(got.index) == list(exp.index) and list(got.columns) == list(exp.columns), (r, ct)
            worst = max(worst, max_abs_diff(got, exp))
    for ct in CELL_TYPES:
        exp, got = read_matrix(f"aggregate/aggregated_default/{ct}.tsv.gz"), model[ct]
        assert list(got.index) == list(exp.index) and list(got.columns) == list(exp.columns), ct
        worst = max(worst, max_abs_diff(got, exp))
    assert worst <= 1e-9
    again = aggregate(list(model.runs))
    for ct in CELL_TYPES:
        assert again[ct].equals(model[ct])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminal_only(adata, monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with pytest.warns(SkippedCellTypeWarning):
        train(adata, downsample=150, progress=True)
    assert "ecorecover.train: cell types" in term.getvalue() and "9/9" in term.getvalue()
    with pytest.warns(SkippedCellTypeWarning):
        train(adata, downsample=150, n_runs=2, progress=True)
    assert "ecorecover.train: runs" in term.getvalue() and "2/2" in term.getvalue()
    end = len(term.getvalue())
    with pytest.warns(SkippedCellTypeWarning):
        train(adata, downsample=150, progress=False)
    assert term.getvalue()[end:] == ""
    monkeypatch.undo()
    # not a terminal (a log file, a batch job): no bar at all
    with pytest.warns(SkippedCellTypeWarning):
        train(adata, downsample=150, progress=True)
    assert capsys.readouterr().err == ""


def test_training_is_logged(adata, caplog):
    with caplog.at_level(logging.DEBUG, logger="ecorecover"), pytest.warns(SkippedCellTypeWarning):
        train(adata, downsample=150, n_runs=2, progress=False)
    text = caplog.text
    assert "training 9 cell type(s)" in text and "2 run(s)" in text
    assert "trained" in text and " s" in text
    n_b = int((adata.obs["CellType"] == "B").sum())
    assert f"B: {n_b} cells" in text


# ---- input checks ---------------------------------------------------------------------


def small(adata, n=1500):
    return adata[:n].copy()


def test_missing_obs_key(adata):
    with pytest.raises(KeyError, match="celltype_key='cell_type'"):
        train(adata, celltype_key="cell_type", progress=False)
    with pytest.raises(KeyError, match="sample_key='donor'"):
        train(adata, sample_key="donor", progress=False)


def test_meta_must_match_cells(adata, counts, meta):
    df = pd.DataFrame(adata.X[:300].toarray().T, index=counts.index, columns=counts.columns[:300])
    with pytest.raises(TrainingInputError, match="one to one"):
        train(df, meta=meta.iloc[:299], progress=False)
    with pytest.raises(TypeError, match="needs meta"):
        train(df, progress=False)
    with pytest.raises(TypeError, match="only for DataFrame"):
        train(adata, meta=meta, progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(adata, bad):
    a = small(adata)
    x = a.X.toarray()
    x[3, 7] = bad
    a.X = x
    with pytest.raises(ValueError, match="non-finite"):
        train(a, progress=False)


def test_duplicated_names(adata):
    a = small(adata)
    a.var_names = [a.var_names[1]] + list(a.var_names[1:])
    with pytest.raises(TrainingInputError, match="duplicated gene names"):
        train(a, progress=False)
    b = small(adata)
    b.obs_names = [b.obs_names[1]] + list(b.obs_names[1:])
    with pytest.raises(TrainingInputError, match="duplicated cell names"):
        train(b, progress=False)


def test_cell_types_without_two_ses(adata):
    a = adata[adata.obs.CellType.isin(["Epithelial", "Malignant"])].copy()
    with pytest.raises(TrainingInputError, match="no cell type can be trained.*Epithelial"):
        train(a, progress=False)
    b = adata[adata.obs.CellType.isin(["NK", "Malignant"])].copy()
    with pytest.warns(SkippedCellTypeWarning, match="Malignant: 1 SE"):
        m = train(b, progress=False)
    assert m.cell_types == ["NK"]


def test_raw_counts_trigger_the_guard(adata, counts):
    a = ad.AnnData(X=sp.csr_matrix(counts.to_numpy(dtype=float).T), obs=adata.obs.copy(), var=adata.var.copy())
    a = a[a.obs.CellType.isin(["NK", "DC"])].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedCellTypeWarning)
        with pytest.warns(RawCountWarning, match="raw counts"):
            m = train(a, progress=False)
    assert m.params["input"]["raw_count_guard_fired"] is True
    # the guard is R's log2(x + 1) on the whole matrix
    b = a.copy()
    b.X = b.X.copy()
    b.X.data = np.log2(b.X.data + 1)
    m2 = train(b, progress=False)
    for ct in m.cell_types:
        assert m[ct].equals(m2[ct])


def test_bad_arguments(adata):
    with pytest.raises(ValueError, match="n_runs"):
        train(adata, n_runs=0, progress=False)
    with pytest.raises(TypeError, match="n_features"):
        train(adata, n_features=2.5, progress=False)
    with pytest.raises(TypeError, match="adata"):
        train(np.zeros((3, 3)), progress=False)


# ---- labels are taken as written (issue 14.7) --------------------------------------------


def test_labels_of_different_types_are_refused_not_merged(adata):
    a = adata[adata.obs.CellType.isin(["NK", "DC"])].copy()
    ct = a.obs.CellType.astype(object).to_numpy()
    ct[ct == "NK"], ct[ct == "DC"] = 1, "1"  # an int and a str that str() would merge
    a.obs["CellType"] = ct
    with pytest.raises(TrainingInputError, match=r"celltype_key='CellType' mixes label types: .*\((int|str)\) and .*\((str|int)\) would both become the label '1'\."):
        train(a, progress=False)
    b = adata[adata.obs.CellType.isin(["NK"])].copy()
    se = b.obs.SE.astype(object).to_numpy()
    se[se == "SE01"], se[se == "SE03"] = 1.0, "1.0"
    b.obs["SE"] = se
    with pytest.raises(TrainingInputError, match=r"se_key='SE' mixes label types: .*1\.0'? \((float|str)\) and .*\((str|float)\) would both become the label '1\.0'"):
        train(b, progress=False)
    se[se == "1.0"] = np.int64(1)  # 1.0 and 1 are written differently: two SEs, "1.0" and "1"
    b.obs["SE"] = se
    m = train(b, progress=False)
    assert {"1.0", "1"} <= set(m["NK"].columns)


def test_read_meta_keeps_labels_as_written(adata, tmp_path):
    from ecorecover.readers import read_meta

    nk = adata.obs[adata.obs.CellType == "NK"]
    rename = {"SE01": "01", "SE03": "1", "SE05": "1e1", "SE07": "10", "SE08": "NA", "SE10": "None", "nonSE": "null"}
    meta = pd.DataFrame({"CellType": "N/A", "SE": nk.SE.astype(str).map(rename)}, index=nk.index)
    path = tmp_path / "meta.tsv"
    meta.to_csv(path, sep="\t", index_label="cell")
    got = read_meta(path)
    n_na = int((meta.SE == "NA").sum())
    assert n_na > 0 and int(got.SE.isna().sum()) == n_na  # only NA (and empty fields) are missing
    assert got.SE.dropna().tolist() == meta.SE[meta.SE != "NA"].tolist()  # 01, 1, 1e1, 10, None, null as written
    assert (got.CellType == "N/A").all()
    x = pd.DataFrame(adata[nk.index].X.toarray().T, index=adata.var_names, columns=nk.index)
    with pytest.warns(MissingLabelWarning):
        m = train(x, meta=got, progress=False)
    assert m.cell_types == ["N/A"]
    assert sorted(m["N/A"].columns) == sorted(["01", "1", "1e1", "10", "None", "null", "nonSE"])  # nothing merged


@pytest.mark.parametrize("sizes", [[1, 2, 7], [8, 9, 16], [127, 128, 129], [300, 513, 1]])
def test_features_sums_and_filter_are_those_of_the_posneg_matrix(sizes):
    """Training never builds posneg: its per-SE sums must equal numpy's reduceat over the posneg
    matrix bit for bit (so W is what the matrix-based code gave), and the min/max filter must keep
    exactly the non-constant posneg columns."""
    from ecorecover import _core
    from ecorecover.training.layout import posneg_features

    rng = np.random.default_rng(sum(sizes))
    n = sum(sizes) + 5
    z = rng.standard_normal((n, 12)) * 10.0 ** rng.integers(-3, 4, size=12)
    z[:, 0] = 2.5                       # constant and positive: both halves constant
    z[:, 1] = np.where(z[:, 1] > 0, z[:, 1], 0.0)  # never negative: no __neg half
    z[:, 2] = -np.abs(z[:, 2])          # never positive: no __pos half
    z[3, 4] = np.nan                    # counted as 0
    rows = rng.permutation(n)[: sum(sizes)]
    f = posneg_features(z, [f"g{i}" for i in range(12)], rows)
    full = _core.posneg(np.nan_to_num(z[rows], nan=0.0))
    kept = np.flatnonzero(~_core.constant_columns(full))
    assert (f.gene + 12 * f.neg).tolist() == kept.tolist()
    assert np.array_equal(f.columns(), full[:, kept])
    codes = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(codes)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    expected = np.add.reduceat(full[:, kept][order], starts, axis=0)
    assert f.sums(order, starts).tobytes() == expected.tobytes()
