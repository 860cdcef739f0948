"""aggregate() against R's AggregateRecoverModels (tests/fixtures/aggregate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecorecover._aggregate import AggregateWarning, aggregate
from ecorecover.model import RecoveryModel

from conftest import max_abs_diff, read_matrix, read_table

CELL_TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]


@pytest.fixture(scope="module")
def runs() -> list[dict[str, pd.DataFrame]]:
    return [{ct: read_matrix(f"aggregate/run_seed{s}/{ct}.tsv.gz") for ct in CELL_TYPES} for s in range(1, 6)]


@pytest.mark.parametrize(
    "case, kw",
    [("aggregated_default", {}), ("aggregated_delta0.05_frac0.3", dict(delta_threshold=0.05, min_model_fraction=0.3))],
)
def test_aggregate_matches_r(runs, case, kw):
    models = [RecoveryModel(r) for r in runs]
    agg = aggregate(models, **kw)
    assert agg.cell_types == CELL_TYPES
    worst = 0.0
    for ct in CELL_TYPES:
        exp, got = read_matrix(f"aggregate/{case}/{ct}.tsv.gz"), agg[ct]
        assert list(got.index) == list(exp.index), ct
        assert list(got.columns) == list(exp.columns), ct
        worst = max(worst, max_abs_diff(got, exp))
    assert worst <= 1e-9  # measured: 0 (bit-identical)
    assert len(agg.runs) == 5 and agg.params["aggregate"]["n_runs"] == 5
    # plain mappings of DataFrames work the same
    plain = aggregate(runs, **kw)
    assert all(plain[ct].equals(agg[ct]) for ct in CELL_TYPES)


def test_reversed_run_order(runs):
    """summary.tsv: same rows; SE columns first-seen over runs; values within 4.4e-16."""
    fwd, rev = aggregate(runs), aggregate(runs[::-1])
    summary = read_table("aggregate/summary.tsv").set_index("CellType")
    for ct in CELL_TYPES:
        assert list(rev[ct].index) == list(fwd[ct].index)
        assert (list(rev[ct].columns) == list(fwd[ct].columns)) == bool(summary.loc[ct, "same_cols_in_order"])
        d = max_abs_diff(rev[ct][fwd[ct].columns], fwd[ct])
        assert d <= summary.loc[ct, "max_abs_diff_aligned"]


def test_cell_types_from_first_run_and_missing_entries():
    idx = ["A__pos", "G_1__pos", "A__neg", "G_1__neg"]
    r1 = {"T": pd.DataFrame([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5], [0.5, 0.0]], index=idx, columns=["SE1", "SE2"]),
          "U": pd.DataFrame([[1.0, 0.0], [0.0, 1.0]], index=["A__pos", "A__neg"], columns=["SE1", "SE2"])}
    r2 = {"T": pd.DataFrame([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], index=["A__pos", "A__neg"], columns=["SE1", "SE2", "SE3"]),
          "V": r1["U"]}
    with pytest.warns(AggregateWarning, match="set to 0"):
        agg = aggregate([r1, r2], min_model_fraction=0.4)
    assert agg.cell_types == ["T", "U"]  # V is not in the first run
    w = agg["T"]
    # G_1 keeps its name (R would cut it to "G"); genes in count(SE, Gene) order
    assert list(w.index) == ["A__pos", "G_1__pos", "A__neg", "G_1__neg"]
    assert list(w.columns) == ["SE1", "SE2", "SE3"]
    assert w.loc["A__pos", "SE1"] == 1.5 and w.loc["A__neg", "SE2"] == 1.75
    assert w.loc["G_1__pos", "SE2"] == 1.0 and w.loc["G_1__pos", "SE3"] == 0.0  # no run has it: NaN in R
    assert agg.params["aggregate"]["nan_entries_set_to_0"] == {"T": 2}


def test_fraction_threshold_is_strict():
    w = pd.DataFrame([[1.0, 0.0], [0.0, 1.0]], index=["A__pos", "A__neg"], columns=["SE1", "SE2"])
    other = pd.DataFrame([[0.0, 1.0], [1.0, 0.0]], index=["B__pos", "B__neg"], columns=["SE1", "SE2"])
    # each gene in 1 of 2 runs: not > 0.5, so no gene is kept and W would be empty (issue 14)
    with pytest.raises(ValueError, match=r"empty W for cell type\(s\) 'T' \(0 features x 2 SEs\).*min_model_fraction=0\.5"):
        aggregate([{"T": w}, {"T": other}], min_model_fraction=0.5)
    agg = aggregate([{"T": w}, {"T": other}], min_model_fraction=0.49)
    assert list(agg["T"].index) == ["A__pos", "B__pos", "A__neg", "B__neg"]


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        aggregate([])
    with pytest.raises(TypeError, match="list of RecoveryModel"):
        aggregate({"T": pd.DataFrame()})
    with pytest.raises(TypeError, match=r"models\[0\]"):
        aggregate([42])
    with pytest.raises(ValueError, match="min_model_fraction"):
        aggregate([{"T": pd.DataFrame([[1.0, 0.0]], index=["A__pos"], columns=["a", "b"])}], min_model_fraction=1.0)
