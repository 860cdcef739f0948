"""Recovery's one data path (issue 16): dense (C and F order), CSR, CSC, a DataFrame and backed
.h5ad files (CSR and CSC, read in row blocks) give the same tables bit for bit, in exact and
fast mode; in-memory CSC and dense inputs are read in place (never converted by scipy); a
backed CSC file is read per row block with bounded memory, never loaded whole."""

from __future__ import annotations

import warnings
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import read_matrix, read_table

import ecorecover.recovery.api as rec_api
import ecorecover.recovery.backed as backed
from ecorecover import preprocessing as pp
from ecorecover.recovery import recover

TYPES = ["B", "CD8T", "Macrophage"]


@pytest.fixture(scope="module")
def data() -> tuple[sp.csr_matrix, pd.DataFrame, pd.DataFrame]:
    counts = read_matrix("recover/input/counts.tsv.gz")  # genes x cells
    meta = read_table("recover/input/meta.tsv")
    obs = pd.DataFrame({"CellType": meta["CellType"].to_numpy()}, index=list(counts.columns))
    keep = np.flatnonzero(obs["CellType"].isin(TYPES).to_numpy())
    x = pp.log_normalize(sp.csr_matrix(counts.to_numpy().T))[keep]
    return sp.csr_matrix(x), obs.iloc[keep].copy(), pd.DataFrame(index=list(counts.index))


@pytest.fixture(scope="module")
def models() -> dict[str, pd.DataFrame]:
    return {ct: read_matrix(f"train/sample/{ct}.tsv.gz") for ct in TYPES}


def _run(a: Any, models: dict[str, pd.DataFrame], mode: str, **kw: Any) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out: pd.DataFrame = recover(a, models, mode=mode, progress=False, overwrite=True, **kw)
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns), what
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f":
            assert x.tobytes() == y.tobytes(), (what, col)
        else:
            assert (x == y).all(), (what, col)


def _layouts(x: sp.csr_matrix) -> dict[str, Any]:
    dense = x.toarray()
    dup = sp.coo_matrix(x)
    half = dup.data / 2  # every value stored as two halves: duplicates the kernels refuse
    dup = sp.csr_matrix((np.r_[half, dup.data - half], (np.r_[dup.row, dup.row], np.r_[dup.col, dup.col])),
                        shape=x.shape)
    return {
        "dense C": np.ascontiguousarray(dense), "dense F": np.asfortranarray(dense),
        "dense float32": dense.astype(np.float32), "csr int32": x, "csc": sp.csc_matrix(x),
        "csr int64": sp.csr_matrix((x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)), shape=x.shape),
        "csr_array": sp.csr_array(x), "csr duplicates": dup,
    }


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_every_layout_gives_the_same_table(data, models, mode, tmp_path):
    x, obs, var = data
    ref = _run(ad.AnnData(x.copy(), obs=obs, var=var), models, mode)
    for name, xl in _layouts(x).items():
        got = _run(ad.AnnData(xl, obs=obs.copy(), var=var.copy()), models, mode)
        if name == "dense float32":  # other values: same calls, not the same bits
            assert (got["SE"] == ref["SE"]).mean() > 0.99, name
            continue
        if name == "csr duplicates":  # the halves sum to the value up to rounding
            assert (got["SE"] == ref["SE"]).mean() > 0.99, name
            continue
        _same(got, ref, name)
    frame = pd.DataFrame(x.toarray().T, index=var.index, columns=obs.index)  # R's genes x cells
    _same(_run(frame, models, mode, celltypes=obs["CellType"]), ref, "DataFrame")


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_backed_files_are_read_in_row_blocks(data, models, mode, fmt, tmp_path, monkeypatch):
    x, obs, var = data
    ref = _run(ad.AnnData(x.copy(), obs=obs, var=var), models, mode)
    path = tmp_path / f"{fmt}.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.AnnData(x if fmt == "csr" else sp.csc_matrix(x), obs=obs, var=var).write_h5ad(path)
    monkeypatch.setattr(rec_api, "block_size", lambda n_cols: 300)  # several blocks
    monkeypatch.setattr(backed, "BLOCK_VALUES", 1)
    reads: list[tuple[int, int]] = []
    cls = backed.CscRows if fmt == "csc" else backed.CsrRows
    read = cls.read

    def spy(self: Any, a: int, b: int, *args: Any) -> Any:
        reads.append((a, b))
        return read(self, a, b, *args)

    monkeypatch.setattr(cls, "read", spy)  # CSR files too are read straight from h5py
    a = ad.read_h5ad(path, backed="r")
    try:
        monkeypatch.setattr(type(a.X), "to_memory", lambda self: pytest.fail("the backed matrix was loaded whole"))
        got = _run(a, models, mode)
    finally:
        a.file.close()
    _same(got, ref, f"backed {fmt}")
    assert len(reads) >= 3 * 2, reads[:5]
    if fmt == "csc":
        assert max(b - a for a, b in reads) <= 1024, reads[:5]
    assert got.attrs["ecorecover"]["timings"]["read_s"] > 0


def _refuse(*_: Any, **__: Any) -> Any:
    raise AssertionError("the input was converted by scipy")


def test_in_memory_csc_and_dense_are_read_in_place(data, models, monkeypatch):
    x, obs, var = data
    ref = _run(ad.AnnData(x.copy(), obs=obs, var=var), models, "exact")
    csc = ad.AnnData(sp.csc_matrix(x), obs=obs.copy(), var=var.copy())
    dense = ad.AnnData(x.toarray(), obs=obs.copy(), var=var.copy())
    for cls in (sp.csc_matrix, sp.csr_matrix):
        for meth in ("tocsr", "tocoo", "toarray", "tocsc", "__getitem__"):
            monkeypatch.setattr(cls, meth, _refuse)
    monkeypatch.setattr(sp, "csr_matrix", _refuse)
    monkeypatch.setattr(sp, "coo_matrix", _refuse)
    for name, a in (("csc", csc), ("dense", dense)):
        for mode in ("exact", "fast"):
            got = _run(a, models, mode)
            if mode == "exact":
                _same(got, ref, name)


def test_timings_cover_the_phases(data, models):
    x, obs, var = data
    for mode in ("exact", "fast"):
        t = _run(ad.AnnData(x, obs=obs, var=var), models, mode).attrs["ecorecover"]["timings"]
        for key in ("statistics_s", "runs_s", "runs_gather_s", "runs_solve_s", "assembly_s", "read_s", "flops"):
            assert t[key] >= 0, key
        assert t["flops"] > 0 and t["runs_solve_s"] > 0
