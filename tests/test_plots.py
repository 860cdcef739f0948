"""ecorecover.pl: every plot renders to PNG with the Agg backend and shows what it should."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import read_matrix, read_table

import matplotlib
matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from ecorecover import pl  # noqa: E402
from ecorecover._collate import collate_sorted  # noqa: E402
from ecorecover.model import RecoveryModel  # noqa: E402
from ecorecover.validation import metrics  # noqa: E402


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch):
    def _fail(*a, **k):
        raise AssertionError("library code called plt.show()")

    monkeypatch.setattr(plt, "show", _fail)
    yield
    plt.close("all")


def _png(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path, dpi=60)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    return path


def _ticklabels(labels):
    return [t.get_text() for t in labels]


@pytest.fixture(scope="module")
def fib_w() -> pd.DataFrame:
    return read_matrix("train/sample/Fibroblast.tsv.gz")


@pytest.fixture(scope="module")
def recovered() -> pd.DataFrame:
    """R's RecoverSE result on the recover/ input, shaped like ecorecover.recover()'s table."""
    a = read_table("recover/recoverse_train_models/assignments.tsv.gz").set_index("CID")
    s = read_table("recover/recoverse_train_models/scores.tsv.gz").set_index("CID")
    return pd.concat([a, s], axis=1)


def test_model_heatmap(fib_w, tmp_path):
    picks = pl.top_features(fib_w, n_top=5)
    ax = pl.model_heatmap(fib_w, n_top=5, cell_type="Fibroblast")
    _png(ax, tmp_path, "model")
    img = ax.images[0].get_array()
    assert img.shape == (len(picks), fib_w.shape[1])
    assert _ticklabels(ax.get_xticklabels()) == list(fib_w.columns)
    assert _ticklabels(ax.get_yticklabels()) == [f for _, f in picks]
    assert ax.get_xlabel() == "SE" and ax.get_ylabel() == "top 5 features per SE"
    assert "Fibroblast" in ax.get_title()
    # Row-scaled: every row peaks at 1, in the column of its SE.
    np.testing.assert_allclose(np.asarray(img).max(axis=1), 1.0)
    cols = list(fib_w.columns)
    assert [cols[j] for j in np.asarray(img).argmax(axis=1)] == [se for se, _ in picks]
    # top_features: at most 5 per SE, each with positive delta, each feature once.
    assert len({f for _, f in picks}) == len(picks)
    assert max(pd.Series([se for se, _ in picks]).value_counts()) <= 5
    v = fib_w.loc[[f for _, f in picks]].to_numpy()
    srt = np.sort(v, axis=1)
    assert (srt[:, -1] > srt[:, -2]).all()


def test_model_heatmap_from_model(fib_w, tmp_path):
    model = RecoveryModel({"Fibroblast": fib_w, "Other": fib_w.iloc[:40]})
    ax = pl.model_heatmap(model, cell_type="Other", n_top=3, standard_scale=None)
    _png(ax, tmp_path, "model2")
    feats = [f for _, f in pl.top_features(fib_w.iloc[:40], 3)]
    assert np.array_equal(np.asarray(ax.images[0].get_array()), fib_w.loc[feats].to_numpy())
    assert ax.figure.axes[-1].get_ylabel() == "W"  # colour bar of raw values
    with pytest.raises(ValueError, match="choose one with cell_type="):
        pl.model_heatmap(model)
    with pytest.raises(KeyError, match="'NK' is not in the model"):
        pl.model_heatmap(model, cell_type="NK")


def test_scores_heatmap(recovered, tmp_path):
    se_cols = list(recovered.columns[4:])
    ax = pl.scores_heatmap(recovered, groupby="SE", max_cells=None)
    _png(ax, tmp_path, "scores")
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (len(se_cols), len(recovered))
    assert _ticklabels(ax.get_yticklabels()) == se_cols
    groups = _ticklabels(ax.get_xticklabels())
    present = set(recovered["SE"])
    assert set(groups) == present
    # SE groups in score-column order, then the others (NonSE).
    assert groups == [c for c in se_cols if c in present] + sorted(present - set(se_cols))
    assert len(ax.lines) == len(groups) - 1  # separators
    assert ax.get_ylabel() == "SE score" and "grouped by SE" in ax.get_xlabel()
    # Within the SE01 block, cells are sorted by their SE01 score.
    n01 = int((recovered["SE"] == "SE01").sum())
    start = sum(int((recovered["SE"] == g).sum()) for g in groups[: groups.index("SE01")])
    block = img[se_cols.index("SE01"), start : start + n01]
    assert (np.diff(block) <= 0).all()


def test_scores_heatmap_subsample_and_anndata(recovered, tmp_path):
    ax = pl.scores_heatmap(recovered, groupby="CellType", max_cells=500, seed=1)
    _png(ax, tmp_path, "scores_sub")
    assert np.asarray(ax.images[0].get_array()).shape[1] == 500
    assert set(_ticklabels(ax.get_xticklabels())) <= set(recovered["CellType"])
    import anndata
    se_cols = list(recovered.columns[4:])
    a = anndata.AnnData(obs=recovered[["CellType", "SE"]].rename(columns={"SE": "pred"}))
    a.obsm["pred_scores"] = recovered[se_cols]
    ax2 = pl.scores_heatmap(a, key="pred", groupby="pred", max_cells=None)
    assert np.array_equal(np.asarray(ax2.images[0].get_array()), np.asarray(pl.scores_heatmap(recovered, max_cells=None).images[0].get_array()))
    with pytest.raises(KeyError, match="obsm\\['SE_recovered_scores'\\]"):  # recover()'s default key
        pl.scores_heatmap(a)


def test_composition_counts(recovered, tmp_path):
    ax = pl.composition(recovered, groupby="CellType", key="SE", normalize=False)
    _png(ax, tmp_path, "comp")
    tab = pd.crosstab(recovered["CellType"], recovered["SE"])
    assert len(ax.containers) == tab.shape[1]  # one container per SE
    assert all(len(c) == tab.shape[0] for c in ax.containers)  # one bar per cell type
    assert _ticklabels(ax.get_xticklabels()) == collate_sorted(tab.index)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == collate_sorted(tab.columns)
    tops = np.sum([[r.get_height() for r in c] for c in ax.containers], axis=0)
    np.testing.assert_array_equal(tops, tab.sum(axis=1).loc[collate_sorted(tab.index)].to_numpy())
    assert ax.get_ylabel() == "cells" and ax.get_xlabel() == "CellType"


def test_composition_fractions_and_wide(tmp_path):
    obs = pd.DataFrame({"Sample": list("AAABBC"), "SE": ["SE01", "SE02", "SE01", "SE02", "SE02", "SE03"]})
    ax = pl.composition(obs, order=["C", "B", "A"])
    _png(ax, tmp_path, "comp_frac")
    heights = np.array([[r.get_height() for r in c] for c in ax.containers])  # SEs x bars
    np.testing.assert_allclose(heights.sum(axis=0), 1.0)
    np.testing.assert_allclose(heights[:, 2], [2 / 3, 1 / 3, 0])  # sample A
    assert ax.get_ylabel() == "fraction of cells"
    wide = pd.DataFrame({"SE1": [0.2, 0.5], "SE2": [0.6, 0.5]}, index=["bulk1", "bulk2"])
    ax2 = pl.composition(wide, groupby=None, key=None, normalize=False, legend=False)
    assert len(ax2.containers) == 2 and _ticklabels(ax2.get_xticklabels()) == ["bulk1", "bulk2"]
    assert ax2.get_legend() is None
    with pytest.raises(KeyError, match="groupby='Batch'"):
        pl.composition(obs, groupby="Batch")


def test_metrics_heatmap(tmp_path):
    obs = read_table("loocv/loocv_predictions.tsv")
    m = metrics(obs, metric="F1")
    ax = pl.metrics_heatmap(m)
    _png(ax, tmp_path, "metrics")
    assert np.asarray(ax.images[0].get_array()).shape == m.shape
    assert _ticklabels(ax.get_yticklabels()) == list(m.index)
    assert _ticklabels(ax.get_xticklabels()) == list(m.columns)
    assert len(ax.texts) == m.size  # annotated (12 x 12 <= 400)
    assert ax.texts[0].get_text() == format(m.iloc[0, 0], ".2f")
    assert ax.get_title().startswith("F1 (mean of diagonal")
    assert f"{np.mean(np.diag(m)):.2f}" in ax.get_title()
    assert ax.get_ylabel() == "true SE"
    mc = metrics(obs, metric="recall", celltype_key="CellType")
    ax2 = pl.metrics_heatmap(mc, annotate=False)
    assert len(ax2.texts) == 0 and ax2.get_ylabel() == "true SE_CellType"


def test_confusion_heatmap(tmp_path):
    obs = read_table("loocv/loocv_predictions.tsv")
    ax = pl.confusion_heatmap(obs, se_key="SE", pred_key="cvPred")
    _png(ax, tmp_path, "confusion")
    img = np.asarray(ax.images[0].get_array())
    labels = collate_sorted(obs["SE"])
    assert _ticklabels(ax.get_yticklabels()) == labels
    np.testing.assert_allclose(img.sum(axis=1), 1.0)
    acc = (obs["SE"] == obs["cvPred"]).mean()
    assert f"{acc:.2f}" in ax.get_title()
    assert ax.get_xlabel() == "predicted (cvPred)"


def test_draws_into_given_axes(fib_w):
    fig, axs = plt.subplots(1, 2)
    out = pl.model_heatmap(fib_w, n_top=2, ax=axs[1])
    assert out is axs[1] and out.figure is fig and not axs[0].images


def test_import_is_lazy_and_error_is_clear():
    code = (
        "import sys; import ecorecover.pl as pl; assert 'matplotlib' not in sys.modules\n"
        "sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "import pandas as pd\n"
        "try:\n"
        "    pl.composition(pd.DataFrame({'Sample': ['a'], 'SE': ['x']}))\n"
        "except ImportError as e:\n"
        "    assert 'pip install \"ecorecover[plot]\"' in str(e), str(e); print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
