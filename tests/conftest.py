"""Shared test helpers: the R reference fixtures (copied from R SpatialEcoTyper 1.0.4 outputs
into tests/fixtures) and exact readers for them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
#: Published MERSCOPE models: non-commercial licence, never copied into the repo.
PUBLISHED = Path(os.environ.get("ECORECOVER_PUBLISHED_MODELS", Path(__file__).parents[2] / "shared" / "published_models"))


def read_table(path: str | Path, **kw) -> pd.DataFrame:
    """Read a fixture TSV exactly (17-digit numbers round-trip)."""
    return pd.read_csv(FIXTURES / path, sep="\t", float_precision="round_trip", **kw)


def read_matrix(path: str | Path) -> pd.DataFrame:
    """A fixture matrix: row names in the first column (may repeat), exact floats."""
    return pd.read_csv(FIXTURES / path, sep="\t", index_col=0, float_precision="round_trip")


def read_lines(path: str | Path) -> list[str]:
    p = FIXTURES / path
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt") as fh:
        return [ln.rstrip("\n") for ln in fh if ln.strip()]


@pytest.fixture(scope="session")
def published_models_dir() -> Path:
    if not (PUBLISHED / "MERSCOPE_W_v1_B.tsv").exists():
        pytest.skip(f"published MERSCOPE models not found at {PUBLISHED} (non-commercial licence: not shipped)")
    return PUBLISHED


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0
