"""Property-based tests (hypothesis) of train() and recover() on random valid inputs (issue 9).

For random small datasets (cell types with 2-4 SEs each, any label spelling, dense or sparse,
sparse or dense expression):

- training never fails, W is finite and non-negative, and the model does not depend on the
  order of the genes in the input (bit for bit);
- recovery (exact and fast) never fails, every output is finite, each scored cell's scores sum
  to 1 (within 1e-12), unscored cells have all-zero scores and SE "NonSE", and the results do
  not depend on the order of the genes (bit for bit);
- fast mode is equivariant to the order of the cells: permuting the cells permutes the rows of
  the result, bit for bit.

The example budget is bounded so that the module runs in well under a minute; raise it with
``ECORECOVER_HYPOTHESIS_EXAMPLES=500 python3 -m pytest tests/test_properties.py``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import ecorecover as er

N_EXAMPLES = int(os.environ.get("ECORECOVER_HYPOTHESIS_EXAMPLES", "15"))
BOUNDED = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# Labels as users spell them, including R's collation traps (nonSE < NonSE < SE01).
SE_LABELS = ["SE01", "SE02", "SE10", "nonSE", "NonSE", "se_3", "Ecotype A", "É5"]
TYPE_LABELS = ["B", "CD8T", "Fibroblast", "T cell", "macro_phage"]


class Data:
    """One drawn input; printed by its recipe (hypothesis shows it for a failing example)."""

    def __init__(self, adata: ad.AnnData, n_features: int, summary: str) -> None:
        self.adata, self.n_features, self.summary = adata, n_features, summary

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Data({self.summary})"


@st.composite
def datasets(draw: Any) -> Data:
    """A random valid training/recovery input: every modelled cell type has 2-4 SEs with >= 6
    cells; optionally a cell type with one SE (no model), an all-zero gene, a constant gene and
    cells without any expression."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_genes = draw(st.integers(6, 30))
    types = draw(st.lists(st.sampled_from(TYPE_LABELS), min_size=1, max_size=3, unique=True))
    groups = []
    for t in types:
        ses = draw(st.lists(st.sampled_from(SE_LABELS), min_size=2, max_size=4, unique=True))
        for s in ses:
            groups.append((t, s, draw(st.integers(6, 24))))
    if draw(st.booleans()):  # a cell type nobody can train (one SE): no model, never scored
        groups.append(("Other", draw(st.sampled_from(SE_LABELS)), draw(st.integers(1, 25))))
    density = draw(st.sampled_from([0.15, 0.4, 0.8, 1.0]))
    storage = draw(st.sampled_from(["dense", "csr", "csc"]))
    n_features = draw(st.integers(3, n_genes + 3))
    degenerate = draw(st.lists(st.sampled_from(["zero_gene", "constant_gene", "empty_cells"]), unique=True))
    rng = np.random.default_rng(seed)
    rows, ct, se = [], [], []
    for t, s, n in groups:
        shift = rng.normal(0, 1, n_genes) * (rng.random(n_genes) < 0.3)
        x = rng.lognormal(0.0, 0.6, (n, n_genes)) * np.exp(shift)
        x *= rng.random((n, n_genes)) < density
        rows.append(np.minimum(x, 60.0))
        ct += [t] * n
        se += [s] * n
    x = np.vstack(rows)
    if "zero_gene" in degenerate:
        x[:, rng.integers(n_genes)] = 0.0
    if "constant_gene" in degenerate:
        x[:, rng.integers(n_genes)] = 1.5
    if "empty_cells" in degenerate:
        x[rng.random(x.shape[0]) < 0.1] = 0.0
    order = rng.permutation(x.shape[0])  # cell types and SEs interleaved
    x = x[order]
    ct = list(np.asarray(ct, dtype=object)[order])
    se = list(np.asarray(se, dtype=object)[order])
    mat: Any = x if storage == "dense" else (sp.csr_matrix(x) if storage == "csr" else sp.csc_matrix(x))
    n_samples = draw(st.integers(1, 3))
    sample = [f"S{k}" for k in rng.integers(0, n_samples, x.shape[0])]
    obs = pd.DataFrame({"CellType": ct, "SE": se, "Sample": sample}, index=[f"cell{i}" for i in range(x.shape[0])])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    summary = (f"seed={seed}, genes={n_genes}, groups={groups}, density={density}, storage={storage}, "
               f"n_features={n_features}, degenerate={degenerate}, samples={n_samples}")
    return Data(ad.AnnData(mat, obs=obs, var=var), n_features, summary)


def _train(a: ad.AnnData, n_features: int) -> er.RecoveryModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", er.SkippedCellTypeWarning)  # the "Other" cell type
        return er.train(a, n_features=n_features, min_cells=3, progress=False, n_jobs=1)


def _recover(a: ad.AnnData, model: Any, **kw: Any) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", er.RecoveryWarning)  # unscored cells are checked below
        return er.recover(a.copy(), model, progress=False, **kw)


def _genes_permuted(a: ad.AnnData, seed: int) -> ad.AnnData:
    perm = np.random.default_rng(seed).permutation(a.n_vars)
    return a[:, perm].copy()


def _check_model(model: er.RecoveryModel, a: ad.AnnData) -> None:
    ses = set(a.obs["SE"])
    genes = set(a.var_names)
    assert len(model) >= 1
    for ct in model:
        w = model[ct].to_numpy()
        assert np.isfinite(w).all() and (w >= 0).all(), ct
        assert set(model[ct].columns) <= ses and model[ct].shape[1] >= 2, ct
        for f in model[ct].index:
            assert f in genes or (f[-5:] in ("__pos", "__neg") and f[:-5] in genes), f


def _check_result(res: pd.DataFrame, model: er.RecoveryModel, a: ad.AnnData) -> None:
    ses = list(res.columns[4:-1])  # then 'scored'
    assert sorted(ses) == sorted(model.se_names)
    assert list(res.index) == list(a.obs_names)
    assert list(res["CellType"]) == list(a.obs["CellType"])
    scores = res[ses].to_numpy()
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert (scores >= 0).all()
    pred = res["PredScore"].to_numpy()
    assert np.isfinite(pred).all()
    scored = scores.sum(axis=1) > 0
    np.testing.assert_allclose(scores[scored].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (res.loc[~scored, "SE"] == "NonSE").all() and (pred[~scored] == 0).all()
    assert np.array_equal(res["scored"].to_numpy(), scored)  # the flag says which cells have scores
    assert np.array_equal(pred, scores.max(axis=1))
    assert set(res.loc[scored, "SE"]) <= set(ses) | {"NonSE"}
    # cells of a type without a model are never scored
    assert not scored[~res["CellType"].isin(list(model)).to_numpy()].any()


def _same_model(got: er.RecoveryModel, want: er.RecoveryModel) -> None:
    assert got.cell_types == want.cell_types
    for ct in want:
        assert list(got[ct].index) == list(want[ct].index), ct
        assert list(got[ct].columns) == list(want[ct].columns), ct
        assert got[ct].to_numpy().tobytes() == want[ct].to_numpy().tobytes(), ct


# ---------------------------------------------------------------------------------------------


@BOUNDED
@given(datasets(), st.integers(0, 2**16))
def test_train_is_valid_and_gene_order_invariant(data: Data, perm_seed: int) -> None:
    model = _train(data.adata, data.n_features)
    _check_model(model, data.adata)
    _same_model(_train(_genes_permuted(data.adata, perm_seed), data.n_features), model)


@BOUNDED
@given(datasets(), st.sampled_from(["exact", "fast"]), st.booleans(), st.integers(0, 2**16))
def test_recover_is_valid_and_gene_order_invariant(data: Data, mode: str, scale: bool, perm_seed: int) -> None:
    model = _train(data.adata, data.n_features)
    res = _recover(data.adata, model, mode=mode, scale=scale)
    _check_result(res, model, data.adata)
    again = _recover(_genes_permuted(data.adata, perm_seed), model, mode=mode, scale=scale)
    pd.testing.assert_frame_equal(again, res, check_exact=True)


def _fast_cell_permutation(data: Data, perm_seed: int, scale: bool) -> None:
    model = _train(data.adata, data.n_features)
    res = _recover(data.adata, model, mode="fast", scale=scale)
    perm = np.random.default_rng(perm_seed).permutation(data.adata.n_obs)
    permuted = _recover(data.adata[perm].copy(), model, mode="fast", scale=scale)
    _check_result(permuted, model, data.adata[perm])
    back = permuted.loc[res.index]
    ses = list(res.columns[4:-1])  # then 'scored'
    diff = np.abs(back[ses].to_numpy() - res[ses].to_numpy()).max(initial=0.0)
    if not scale:
        # Each cell is solved on its own: permuting cells permutes the results bit for bit.
        assert diff == 0, f"permuting the cells changed the fast-mode scores by up to {diff:.3g}"
        pd.testing.assert_frame_equal(back, res, check_exact=True)
        return
    # With scaling, each gene's mean and sd are R's sequential sums over the cells in input
    # order, so a permutation moves them in the last bits and the per-cell solver (tolerance
    # 1e-10) carries that to ~1e-8 in the scores: equivariant up to rounding, not bitwise.
    assert diff <= 1e-6, f"permuting the cells changed the fast-mode scores by up to {diff:.3g}"
    top2 = np.sort(res[ses].to_numpy(), axis=1)[:, -2:] if len(ses) > 1 else np.zeros((len(res), 2))
    near_tie = (top2[:, 1] - top2[:, 0]) <= 2e-6
    same = back["InitSE"].to_numpy() == res["InitSE"].to_numpy()
    assert (same | near_tie).all(), "a permutation changed a call that is not a near-tie"


@BOUNDED
@given(datasets(), st.integers(0, 2**16))
def test_fast_mode_is_cell_order_equivariant_unscaled(data: Data, perm_seed: int) -> None:
    _fast_cell_permutation(data, perm_seed, scale=False)


@BOUNDED
@given(datasets(), st.integers(0, 2**16))
def test_fast_mode_is_cell_order_equivariant_scaled(data: Data, perm_seed: int) -> None:
    _fast_cell_permutation(data, perm_seed, scale=True)


@BOUNDED
@given(datasets(), st.integers(0, 2**16), st.integers(1, 40))
def test_ensemble_with_samples_is_valid(data: Data, seed: int, downsample: int) -> None:
    """Two runs with per-sample balancing and downsampling (the draws differ between runs),
    aggregated with R's tutorial settings (nfeature_per_se = Inf): a valid, usable model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", er.AggregateWarning)
        warnings.simplefilter("ignore", er.SkippedCellTypeWarning)
        try:
            model = er.train(data.adata, sample_key="Sample", n_features=data.n_features, n_features_per_se=None,
                             min_cells=3, downsample=downsample, n_runs=2, seed=seed, progress=False, n_jobs=1)
        except er.TrainingInputError as exc:  # legitimately nothing to train (e.g. every sample too small)
            assert "no cell type c" in str(exc) or "first run (seed" in str(exc), exc
            reject()
    assert len(model.runs) == 2
    _check_model(model, data.adata)
    usable = {ct: model[ct] for ct in model if model[ct].shape[0] > 0}
    if usable:
        _check_result(_recover(data.adata, usable, mode="fast"), er.RecoveryModel(usable), data.adata)
