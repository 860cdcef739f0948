"""ecorecover.simulate: reproducible raw counts with planted, recoverable SE structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ecorecover.preprocessing import log_normalize
from ecorecover.simulate import DEFAULT_CELL_TYPES, NONSE_LABEL, simulate, simulate_split


def _same(a, b) -> bool:
    return (a.X != b.X).nnz == 0 and a.obs.equals(b.obs) and list(a.var_names) == list(b.var_names)


def test_shape_labels_and_counts():
    a = simulate(n_cells=1500, n_samples=2, n_genes=120, cell_types=4, n_se=4, seed=3,
                 other_cell_types=["Malignant"])
    assert a.shape == (1500, 120)
    assert sp.isspmatrix_csr(a.X) and a.X.dtype == np.int32 and a.X.data.min() >= 0
    assert list(a.obs.columns) == ["Sample", "CellType", "SE"]
    assert set(a.obs["Sample"]) == {"S1", "S2"}
    assert set(a.obs["CellType"]) == set(DEFAULT_CELL_TYPES[:4]) | {"Malignant"}
    assert set(a.obs["SE"]) <= {"SE01", "SE02", "SE03", "SE04", NONSE_LABEL}
    assert a.obs_names.is_unique and a.var_names.is_unique
    # cells of the extra type are never in an SE; modelled types take part in >= 2 SEs
    assert (a.obs.loc[a.obs["CellType"] == "Malignant", "SE"] == NONSE_LABEL).all()
    per_type = a.uns["simulation"]["se_of_cell_type"]
    for ct, ses in per_type.items():
        assert len(ses) >= 3  # ceil(0.6 * 4)
        got = set(a.obs.loc[a.obs["CellType"] == ct, "SE"]) - {NONSE_LABEL}
        assert got <= set(ses)
    modelled = a.obs["CellType"] != "Malignant"
    share = float((a.obs.loc[modelled, "SE"] == NONSE_LABEL).mean())
    assert 0.15 < share < 0.25  # nonse_fraction 0.2


def test_reproducible_from_seed():
    a = simulate(n_cells=800, n_genes=80, seed=5)
    b = simulate(n_cells=800, n_genes=80, seed=5)
    c = simulate(n_cells=800, n_genes=80, seed=6)
    assert _same(a, b)
    assert not _same(a, c)


def test_split_shares_the_training_set_and_signatures():
    kw = dict(n_cells=3000, n_genes=200, cell_types=3, n_se=4, seed=9)
    single = simulate(**kw)
    train, test = simulate_split(n_held_out=1500, n_held_out_samples=2, **kw)
    assert _same(single, train)
    assert list(test.var_names) == list(train.var_names)
    assert set(test.obs["Sample"]) == {"T1", "T2"}
    assert not set(test.obs_names) & set(train.obs_names)
    assert test.uns["simulation"]["se_of_cell_type"] == train.uns["simulation"]["se_of_cell_type"]


def _centroid_accuracy(train, test) -> float:
    """Nearest-centroid SE calls on held-out cells, per cell type (training centroids)."""
    xtr, xte = log_normalize(train.X).toarray(), log_normalize(test.X).toarray()
    hits = total = 0
    for ct in train.obs["CellType"].unique():
        mtr = (train.obs["CellType"] == ct).to_numpy()
        mte = (test.obs["CellType"] == ct).to_numpy() & (test.obs["SE"] != NONSE_LABEL).to_numpy()
        ses = sorted(set(train.obs.loc[mtr, "SE"]) - {NONSE_LABEL})
        mu, sd = xtr[mtr].mean(0), xtr[mtr].std(0) + 1e-9
        cent = np.stack([((xtr[mtr & (train.obs["SE"] == s).to_numpy()] - mu) / sd).mean(0) for s in ses])
        z = (xte[mte] - mu) / sd
        pred = np.array(ses)[np.argmin(((z[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)]
        hits += int((pred == test.obs.loc[mte, "SE"].to_numpy()).sum())
        total += int(mte.sum())
    return hits / total


def test_planted_signal_is_recoverable_and_scales_with_effect():
    kw = dict(n_cells=3000, n_held_out=1500, n_genes=300, cell_types=3, n_se=4, seed=2)
    strong = _centroid_accuracy(*simulate_split(**kw))
    none = _centroid_accuracy(*simulate_split(effect=0.0, **kw))
    assert strong > 0.9
    assert none < 0.45  # chance is 1/3 to 1/4


@pytest.mark.parametrize("kw,exc", [
    (dict(n_cells=-1), ValueError), (dict(n_se=1), ValueError), (dict(n_genes=1.5), TypeError),
    (dict(nonse_fraction=1.0), ValueError), (dict(effect=float("nan")), ValueError),
    (dict(cell_types=["B", "B"]), ValueError), (dict(cell_types="B"), TypeError),
])
def test_bad_arguments(kw, exc):
    with pytest.raises(exc):
        simulate(**kw)


def test_many_cell_types_get_generic_names():
    a = simulate(n_cells=300, n_genes=30, cell_types=11, seed=1)
    assert set(a.obs["CellType"]) <= {f"CellType{i:02d}" for i in range(1, 12)}
