"""Warnings point at the caller's code: a warning raised deep inside ecorecover, through helpers
and the ``_params.validate_params`` decorator, names this file and the calling line (not a
module of the package)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ecorecover as er
from ecorecover import errors
from ecorecover._warnings import find_stack_level
from ecorecover.preprocessing import log_normalize
from ecorecover.simulate import simulate


def _caught(call: Callable[[], Any], category: type[Warning]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__} among {[w.category.__name__ for w in caught]}"
    return found


def _assert_here(found: list[warnings.WarningMessage], line: int) -> None:
    for w in found:
        assert w.filename == __file__, f"{w.category.__name__} attributed to {w.filename}:{w.lineno}"
        assert w.lineno == line


def test_decorated_public_function_warns_at_the_caller() -> None:
    """log_normalize is wrapped by validate_params; its warning comes from a helper."""
    x = np.array([[0.5, 1.0], [2.0, 3.0]])
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    found = _caught(lambda: log_normalize(x), errors.NonIntegerCountsWarning)
    _assert_here(found, line)


def test_aggregate_warning_at_the_caller() -> None:
    idx = ["A__pos", "G__pos", "A__neg", "G__neg"]
    r1 = {"T": pd.DataFrame([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5], [0.5, 0.0]], index=idx, columns=["SE1", "SE2"])}
    r2 = {"T": pd.DataFrame([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], index=["A__pos", "A__neg"], columns=["SE1", "SE2", "SE3"])}
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    found = _caught(lambda: er.aggregate([r1, r2], min_model_fraction=0.4), er.AggregateWarning)
    _assert_here(found, line)


def test_training_warning_at_the_caller() -> None:
    """train() (checked in the function body, several helper frames deep) warns of a cell
    type too rare to train."""
    a = simulate(n_cells=200, n_samples=2, n_genes=40, cell_types=2, n_se=3, seed=1, n_signature_genes=8)
    a.X = log_normalize(a.X)
    labels = a.obs["CellType"].astype(str).to_numpy().astype(object)
    labels[:5] = "Rare"
    a.obs["CellType"] = labels
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    found = _caught(lambda: er.train(a, n_features=30, min_cells=10, progress=False), errors.SkippedCellTypeWarning)
    _assert_here(found, line)


@pytest.mark.parametrize("depth", [0, 2])
def test_find_stack_level_skips_the_package_frames_only(depth: int) -> None:
    """Called from outside the package, the level is 1 (the caller itself)."""

    def nested(n: int) -> int:
        return find_stack_level() if n == 0 else nested(n - 1)

    assert nested(depth) == 1


def _recovery_case(rng: np.random.Generator) -> tuple[Any, dict[str, pd.DataFrame]]:
    """30 cells of one type, 10 genes of which the model has 12 (2 missing), counts up to ~200."""
    import anndata

    genes = [f"G{i}" for i in range(12)]
    feats = [g + "__pos" for g in genes] + [g + "__neg" for g in genes]
    w = pd.DataFrame(rng.uniform(0.1, 1.0, (len(feats), 2)), index=feats, columns=["SE1", "SE2"])
    x = rng.poisson(rng.uniform(1.0, 120.0, 10), (30, 10)).astype(np.float64)
    a = anndata.AnnData(x, obs=pd.DataFrame({"CellType": ["T"] * 30}, index=[f"c{i}" for i in range(30)]))
    a.var_names = genes[:10]
    return a, {"T": w}


@pytest.mark.parametrize("category", [errors.RawCountWarning, er.RecoveryWarning])
def test_recover_warning_at_the_caller(category: type[Warning]) -> None:
    """recover() (validate_params decorator, then the statistics passes or the gene matching,
    several modules deep) warns of raw counts and of model genes missing from the data."""
    adata, model = _recovery_case(np.random.default_rng(0))
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    found = _caught(lambda: er.recover(adata, model, progress=False), category)
    _assert_here(found, line)
