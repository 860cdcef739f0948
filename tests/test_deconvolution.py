"""deconvolve() against R SpatialEcoTyper 1.0.4's DeconvoluteSE (tests/fixtures/deconvolute).

The R model (Bulk_SE_Recovery_W) is non-commercial and not shipped: the parity tests read it
from the published models directory and skip when it is absent. The other tests use a bulk model
trained on the nmf_generate_w/ fixture.
"""

from __future__ import annotations

import importlib.util
import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import max_abs_diff, read_lines, read_matrix

from ecorecover.deconvolution import DeconvolutionWarning, deconvolve
from ecorecover.io import read_r_models
from ecorecover.errors import GeneMatchError

SCORE_TOL = 1e-6  # acceptance for scores (README: 1e-6 scores, 1e-9 raw H)
H_TOL = 1e-9


@pytest.fixture(scope="module")
def bulk() -> pd.DataFrame:
    return read_matrix("deconvolute/pseudobulk_counts.tsv")  # genes x samples, raw counts


@pytest.fixture(scope="module")
def bulk_w(published_models_dir) -> pd.DataFrame:
    name = "Bulk_SE_Recovery_W.rds" if importlib.util.find_spec("rdata") else "Bulk_SE_Recovery_W.tsv"
    model = read_r_models(published_models_dir / name)
    assert len(model) == 1
    return model[next(iter(model))]


def _notes() -> dict[str, list[int]]:
    text = "\n".join(read_lines("deconvolute/notes.txt"))
    default = int(re.search(r"niter \(P1\): (\d+)", text).group(1))
    p4 = re.search(r"P4 runs: sizes ([\d,]+), niter ([\d,]+)", text)
    return {
        "default": [default],
        "sizes10": [int(v) for v in p4.group(1).split(",")],
        "niter10": [int(v) for v in p4.group(2).split(",")],
    }


def _run(bulk, w, *, guard=True, **kw):
    """deconvolve() on the R fixture, which warns twice: raw counts (R's guard fires) and only
    60 of the bulk model's 499 genes in the 500-gene panel."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = deconvolve(bulk, w, **kw)
    got = sorted(r.category.__name__ for r in rec)
    assert got == sorted(["DeconvolutionWarning"] + (["RawCountWarning"] if guard else [])), got
    assert any("only 60 of the model's 499 genes" in str(r.message) for r in rec)
    return out


def test_default_matches_r(bulk, bulk_w):
    scores, runs = _run(bulk, bulk_w, return_runs=True)
    ref = read_matrix("deconvolute/deconvolute_default.tsv")
    assert list(scores.index) == list(ref.index)
    assert list(scores.columns) == list(ref.columns)
    d = max_abs_diff(scores, ref)
    assert d <= SCORE_TOL, d
    assert d <= 1e-14, f"expected bit-level agreement, got {d}"  # measured 1.1e-16
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    # One run: R's raw H (SEs x samples), V's features, iteration count.
    assert len(runs) == 1
    assert runs[0]["features"] == read_lines("deconvolute/deconvolute_default_features.txt")
    h_ref = read_matrix("deconvolute/deconvolute_default_H_raw.tsv")
    assert list(h_ref.index) == list(bulk_w.columns)
    assert list(h_ref.columns) == runs[0]["cells"]
    dh = max_abs_diff(runs[0]["H_raw"], h_ref)
    assert dh <= H_TOL, dh
    assert runs[0]["n_iter"] == _notes()["default"][0]


def test_sum2one_false_matches_r(bulk, bulk_w):
    scores = _run(bulk, bulk_w, sum_to_one=False)
    ref = read_matrix("deconvolute/deconvolute_sum2one_FALSE.tsv")
    assert list(scores.columns) == list(ref.columns) and list(scores.index) == list(ref.index)
    d = max_abs_diff(scores, ref)
    assert d <= H_TOL, d
    # The raw H of the default call, transposed.
    assert max_abs_diff(scores, read_matrix("deconvolute/deconvolute_default_H_raw.tsv").T) <= H_TOL


def test_samples_per_run_10_matches_r(bulk, bulk_w):
    scores, runs = _run(bulk, bulk_w, samples_per_run=10, return_runs=True)
    ref = read_matrix("deconvolute/deconvolute_nsample.per.run10.tsv")
    assert list(scores.index) == list(ref.index)
    d = max_abs_diff(scores, ref)
    assert d <= SCORE_TOL, d
    notes = _notes()
    assert [len(r["cells"]) for r in runs] == notes["sizes10"]
    assert [r["n_iter"] for r in runs] == notes["niter10"]
    # Runs couple their samples: the split changes the answer (R: by up to 0.105).
    assert max_abs_diff(scores, read_matrix("deconvolute/deconvolute_default.tsv")) > 0.01


def test_orientations_agree(bulk, bulk_w):
    ref = _run(bulk, bulk_w)
    a = ad.AnnData(bulk.T.to_numpy(), obs=pd.DataFrame(index=bulk.columns), var=pd.DataFrame(index=bulk.index))
    assert max_abs_diff(_run(a, bulk_w), ref) == 0.0
    a_sp = ad.AnnData(sp.csr_matrix(bulk.T.to_numpy()), obs=pd.DataFrame(index=bulk.columns), var=pd.DataFrame(index=bulk.index))
    assert max_abs_diff(_run(a_sp, bulk_w), ref) == 0.0
    # Gene order and extra genes do not matter; a model file path works too.
    shuffled = bulk.sample(frac=1.0, random_state=0)
    assert max_abs_diff(_run(shuffled, bulk_w), ref) == 0.0


def test_log_input_skips_guard(bulk, bulk_w):
    logged = np.log2(bulk + 1.0)
    out = _run(logged, bulk_w, guard=False)
    assert max_abs_diff(out, _run(bulk, bulk_w)) == 0.0


# ------------------------------------------------------------------------------------------
# Without the published model: a bulk model from the nmf_generate_w fixture.


@pytest.fixture(scope="module")
def own():
    w = read_matrix("nmf_generate_w/defaults/W.tsv")
    expr = read_matrix("nmf_generate_w/expression_log.tsv.gz")  # genes x 80 samples, log scale
    return w, expr


def test_own_model_scores_sum_to_one(own):
    w, expr = own
    scores, runs = deconvolve(expr, w, return_runs=True)
    assert scores.shape == (expr.shape[1], w.shape[1])
    assert list(scores.index) == list(expr.columns) and list(scores.columns) == list(w.columns)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    raw = deconvolve(expr, w, sum_to_one=False)
    np.testing.assert_allclose(raw.div(raw.sum(axis=1), axis=0), scores, rtol=0, atol=1e-15)
    # scale=False: the data go to NMF unscaled (log values are non-negative), another answer.
    unscaled = deconvolve(expr, w, scale=False)
    assert max_abs_diff(unscaled, scores) > 1e-3
    # The fast mode lands near the exact one.
    fast = deconvolve(expr, w, mode="fast")
    assert (fast.idxmax(axis=1) == scores.idxmax(axis=1)).mean() > 0.9


def test_own_model_recovers_fractions(own):
    # The model was trained on these very samples' fractions: deconvolution should track them.
    w, expr = own
    fractions = read_matrix("nmf_generate_w/fractions.tsv").loc[expr.columns, w.columns]
    scores = deconvolve(expr, w)
    r = [np.corrcoef(scores[c], fractions[c])[0, 1] for c in w.columns]
    assert min(r) > 0.5, r


def test_errors(own):
    w, expr = own
    with pytest.raises(GeneMatchError, match="none of the model's"):
        deconvolve(expr.set_axis([f"X{i}" for i in range(len(expr))]), w)
    with pytest.raises(ValueError, match="samples_per_run"):
        deconvolve(expr, w, samples_per_run=0)
    with pytest.raises(ValueError, match="one W matrix"):
        deconvolve(expr, {"a": w, "b": w})
    with pytest.raises(TypeError, match="genes x samples"):
        deconvolve(expr.to_numpy(), w)
    bad = expr.copy()
    bad.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        deconvolve(bad, w)
    with pytest.raises(ValueError, match="unique"):
        deconvolve(pd.concat([expr, expr.iloc[:, :1]], axis=1), w)


def test_few_genes_warn(own):
    w, expr = own
    genes = [g for g in dict.fromkeys(i.rsplit("__", 1)[0] for i in w.index)]
    sub = expr.loc[[g for g in genes[:4]]]
    with pytest.warns(DeconvolutionWarning) as rec:
        out = deconvolve(sub, w)
    assert any("at least 5" in str(r.message) for r in rec)
    assert any("only 4 of the model's" in str(r.message) for r in rec)
    assert out.isna().all().all() and out.shape == (expr.shape[1], w.shape[1])


def test_unexpressed_sample_is_nan(own):
    w, expr = own
    e = expr.copy()
    e.iloc[:, 5] = 0.0
    with pytest.warns(DeconvolutionWarning, match="fewer than 3 genes"):
        out = deconvolve(e, w)
    assert out.iloc[5].isna().all()
    assert out.drop(index=e.columns[5]).notna().all().all()
