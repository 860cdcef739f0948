"""Readers for R models (.rds / .tsv), the published MERSCOPE models, and R's default-branch
post-processing of their recovery results."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rds_bytes
from conftest import FIXTURES, read_lines, read_matrix, read_table

from ecorecover.io import (
    PUBLISHED_CELL_TYPES,
    PublishedModelsNotFoundError,
    apply_published_postprocess,
    load_published_models,
    read_r_models,
)
from ecorecover.model import load_model

TRAIN_SAMPLE = FIXTURES / "train" / "sample"
PUBLISHED_FIXTURE = "recover/recoverse_published_models"


def _bits(w: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(w.to_numpy(dtype=np.float64)).view(np.uint64)


def _assert_same_w(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.index) == list(b.index)
    assert list(a.columns) == list(b.columns)
    assert np.array_equal(_bits(a), _bits(b))


def _fixture_cell_types() -> list[str]:
    line = next(ln for ln in read_lines("train/sample/call.txt") if ln.startswith("names(Ws):"))
    return line.split(":", 1)[1].strip().split(",")


# -- R objects as R serialises them (tests/rds_bytes.py: no .rds writer needed) -----------------
def _write_r_list(path: Path, named: dict[str, pd.DataFrame] | list[pd.DataFrame]) -> None:
    """saveRDS(list(...)) of W matrices: named by the dict's keys, or unnamed."""
    if isinstance(named, dict):
        rds_bytes.write_rds(path, rds_bytes.named_list({k: rds_bytes.frame_matrix(w) for k, w in named.items()}))
    else:
        rds_bytes.write_rds(path, rds_bytes.vector([rds_bytes.frame_matrix(w) for w in named]))


# -- read_r_models on the repo's fixtures -----------------------------------------------------
def test_directory_of_tsv_gz() -> None:
    m = read_r_models(TRAIN_SAMPLE)
    assert m.cell_types == _fixture_cell_types()  # R's names(Ws) order
    for ct in m:
        _assert_same_w(m[ct], read_matrix(f"train/sample/{ct}.tsv.gz"))
    assert m.source == f"R:{TRAIN_SAMPLE}"
    assert m.params["files"]["NK"] == str(TRAIN_SAMPLE / "NK.tsv.gz")


def test_list_of_files_keeps_order_and_single_file() -> None:
    files = [TRAIN_SAMPLE / "NK.tsv.gz", TRAIN_SAMPLE / "B.tsv.gz"]
    m = read_r_models(files)
    assert m.cell_types == ["NK", "B"]
    one = read_r_models(str(TRAIN_SAMPLE / "DC.tsv.gz"))
    assert one.cell_types == ["DC"]
    _assert_same_w(one["DC"], read_matrix("train/sample/DC.tsv.gz"))


def test_named_list_rds(tmp_path) -> None:
    ws = {ct: read_matrix(f"train/sample/{ct}.tsv.gz") for ct in ("Plasma", "B", "CD8T")}
    path = tmp_path / "Ws.rds"
    _write_r_list(path, ws)
    m = read_r_models(path)
    assert m.cell_types == ["Plasma", "B", "CD8T"]  # list order
    for ct, w in ws.items():
        _assert_same_w(m[ct], w)
    assert m.source == f"R:{path}"


def test_single_matrix_rds_and_directory_of_rds(tmp_path) -> None:
    w = read_matrix("train/sample/Macrophage.tsv.gz")
    rds_bytes.write_rds(tmp_path / "Macrophage.rds", rds_bytes.frame_matrix(w))
    rds_bytes.write_rds(tmp_path / "B.rds", rds_bytes.frame_matrix(read_matrix("train/sample/B.tsv.gz")))
    (tmp_path / "notes.txt").write_text("not a model")
    m = read_r_models(tmp_path)
    assert m.cell_types == ["B", "Macrophage"]
    _assert_same_w(m["Macrophage"], w)


def test_r_write_table_tsv(tmp_path) -> None:
    # write.table(W, sep = "\t") with default quoting: header has no row-name column.
    w = read_matrix("train/sample/NK.tsv.gz")
    lines = ["\t".join(f'"{c}"' for c in w.columns)]
    lines += [f'"{i}"\t' + "\t".join(repr(float(x)) for x in row) for i, row in zip(w.index, w.to_numpy())]
    (tmp_path / "NK.tsv").write_text("\n".join(lines) + "\n")
    _assert_same_w(read_r_models(tmp_path / "NK.tsv")["NK"], w)


def test_read_r_models_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_r_models(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="holds no model files"):
        read_r_models(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_r_models([TRAIN_SAMPLE / "B.tsv.gz", tmp_path / "CD4T.tsv"])
    with pytest.raises(ValueError, match="'B' is given twice"):
        read_r_models([TRAIN_SAMPLE / "B.tsv.gz", TRAIN_SAMPLE / "B.tsv.gz"])
    w = read_matrix("train/sample/B.tsv.gz")
    _write_r_list(tmp_path / "unnamed.rds", [w, w])
    with pytest.raises(ValueError, match="unnamed list"):
        read_r_models(tmp_path / "unnamed.rds")
    rds_bytes.write_rds(tmp_path / "nodimnames.rds", rds_bytes.real(np.ones(4)))
    with pytest.raises(ValueError, match="nodimnames.rds"):
        read_r_models(tmp_path / "nodimnames.rds")
    (tmp_path / "junk.rds").write_bytes(b"not an rds file")
    with pytest.raises(ValueError, match="cannot read .*junk.rds"):
        read_r_models(tmp_path / "junk.rds")
    bad = w.copy()
    bad.iloc[3, 2] = np.nan
    bad.to_csv(tmp_path / "Bad.tsv", sep="\t")
    with pytest.raises(ValueError, match=r"weights\['Bad'\].*non-finite"):
        read_r_models(tmp_path / "Bad.tsv")
    dup = tmp_path / "Dup.tsv"
    dup.write_text("feature\tSE01\tSE01\nA__pos\t0.5\t0.25\n")
    with pytest.raises(ValueError, match="duplicated SE column"):
        read_r_models(dup)


def test_rds_without_rdata_names_the_extra(tmp_path, monkeypatch) -> None:
    rds_bytes.write_rds(tmp_path / "B.rds", rds_bytes.frame_matrix(read_matrix("train/sample/B.tsv.gz")))
    monkeypatch.setitem(sys.modules, "rdata", None)  # makes `import rdata` fail
    with pytest.raises(ImportError, match=r"pip install ecorecover\[rds\]"):
        read_r_models(tmp_path / "B.rds")


# -- published MERSCOPE models (not shipped: skip when absent) -------------------------------
def test_published_rds_equals_tsv(published_models_dir: Path) -> None:
    for ct in PUBLISHED_CELL_TYPES:
        rds = read_r_models(published_models_dir / f"MERSCOPE_W_v1_{ct}.rds")
        tsv = read_r_models(published_models_dir / f"MERSCOPE_W_v1_{ct}.tsv")
        assert rds.cell_types == tsv.cell_types == [ct]
        _assert_same_w(rds[ct], tsv[ct])


def test_published_directory(published_models_dir: Path) -> None:
    m = read_r_models(published_models_dir)  # SE_CellStates.rds etc. are not models
    assert m.cell_types == list(PUBLISHED_CELL_TYPES)


def test_named_list_of_published_r_objects(published_models_dir: Path, tmp_path) -> None:
    # Elements as R serialised them (their bytes), wrapped in a named list (NMFGenerateWList's shape).
    cts = ["NK", "B"]
    elements = {ct: rds_bytes.serialized_object(published_models_dir / f"MERSCOPE_W_v1_{ct}.rds") for ct in cts}
    rds_bytes.write_rds(tmp_path / "Ws.rds", rds_bytes.named_list(elements))
    m = read_r_models(tmp_path / "Ws.rds")
    assert m.cell_types == cts
    for ct in cts:
        _assert_same_w(m[ct], read_r_models(published_models_dir / f"MERSCOPE_W_v1_{ct}.tsv")[ct])


def test_load_published_models(published_models_dir: Path, tmp_path) -> None:
    m = load_published_models(published_models_dir)
    assert m.cell_types == list(PUBLISHED_CELL_TYPES)
    assert set(m.se_names) <= {f"SE{i:02d}" for i in range(1, 12)}  # W keeps R's names
    post = m.params["postprocess"]
    lines = read_lines(published_models_dir / "SE_CellStates.txt")  # absolute path: used as is
    assert ["_".join(p) for p in post["se_cellstates"]] == lines
    assert list(post["rename"]) == [f"SE{i:02d}" for i in range(1, 12)]
    # tsv-only copy gives the same W; the metadata survives save/load
    tsv_only = tmp_path / "tsv"
    tsv_only.mkdir()
    for p in published_models_dir.glob("MERSCOPE_W_v1_*.tsv"):
        shutil.copy(p, tsv_only)
    shutil.copy(published_models_dir / "SE_CellStates.txt", tsv_only)
    m2 = load_published_models(tsv_only)
    for ct in m:
        _assert_same_w(m[ct], m2[ct])
    m.save(tmp_path / "published.h5")
    assert load_model(tmp_path / "published.h5") == m


def test_postprocess_reproduces_r_default_branch(published_models_dir: Path) -> None:
    explicit = read_table(f"{PUBLISHED_FIXTURE}/assignments_explicit_Ws.tsv.gz")
    default = read_table(f"{PUBLISHED_FIXTURE}/assignments_default_branch.tsv.gz")
    model = load_published_models(published_models_dir)
    before = explicit.copy()
    out = apply_published_postprocess(explicit, model)
    pd.testing.assert_frame_equal(explicit, before)  # input untouched
    assert len(out) == len(default) == 3834
    assert (out["SE"].to_numpy() == default["SE"].to_numpy()).all()
    pd.testing.assert_frame_equal(out, default)  # CID, CellType, InitSE, PredScore unchanged
    assert (out["SE"] != explicit["SE"]).sum() > 1000  # the rule does real work here
    # params dict works as well as the model
    pd.testing.assert_frame_equal(apply_published_postprocess(explicit, model.params), default)


def test_postprocess_errors(published_models_dir: Path) -> None:
    explicit = read_table(f"{PUBLISHED_FIXTURE}/assignments_explicit_Ws.tsv.gz")
    with pytest.raises(ValueError, match="load_published_models"):
        apply_published_postprocess(explicit, read_r_models(TRAIN_SAMPLE))
    with pytest.raises(KeyError, match="CellType"):
        apply_published_postprocess(explicit.drop(columns="CellType"), load_published_models(published_models_dir))


def test_published_missing_or_partial(published_models_dir: Path, tmp_path) -> None:
    with pytest.raises(PublishedModelsNotFoundError, match="not found"):
        load_published_models(tmp_path / "absent")
    partial = tmp_path / "partial"
    partial.mkdir()
    for ct in ("B", "CD4T", "NK"):
        shutil.copy(published_models_dir / f"MERSCOPE_W_v1_{ct}.tsv", partial)
    with pytest.raises(FileNotFoundError) as info:
        load_published_models(partial)
    msg = str(info.value)
    assert isinstance(info.value, PublishedModelsNotFoundError)
    assert "MERSCOPE_W_v1_Plasma.rds|.tsv" in msg and "SE_CellStates.txt|.rds" in msg  # missing
    assert "Found: MERSCOPE_W_v1_B.tsv, MERSCOPE_W_v1_CD4T.tsv, MERSCOPE_W_v1_NK.tsv" in msg
    assert "missing MERSCOPE_W_v1_B" not in msg


def test_se_cellstates_rds_is_read_as_untrusted(published_models_dir: Path, tmp_path) -> None:
    # SE_CellStates.rds is read when there is no SE_CellStates.txt
    for p in published_models_dir.glob("MERSCOPE_W_v1_*.tsv"):
        shutil.copy(p, tmp_path)
    shutil.copy(published_models_dir / "SE_CellStates.rds", tmp_path)
    post = load_published_models(tmp_path).params["postprocess"]
    assert ["_".join(p) for p in post["se_cellstates"]] == read_lines(published_models_dir / "SE_CellStates.txt")
    rds_bytes.write_rds(tmp_path / "SE_CellStates.rds", rds_bytes.i32(rds_bytes.BCODESXP, 1))
    with pytest.raises(ValueError, match=r"cannot read .*SE_CellStates\.rds as an R \.rds file: .*byte code"):
        load_published_models(tmp_path)
    rds_bytes.write_rds(tmp_path / "SE_CellStates.rds", rds_bytes.real([1.0]))
    with pytest.raises(ValueError, match=r"SE_CellStates\.rds: expected a character vector, got an R REAL object"):
        load_published_models(tmp_path)


def test_partial_directory_without_published_models(tmp_path) -> None:
    # Runs everywhere: an empty directory is reported with every expected file.
    with pytest.raises(PublishedModelsNotFoundError) as info:
        load_published_models(tmp_path)
    for ct in PUBLISHED_CELL_TYPES:
        assert f"MERSCOPE_W_v1_{ct}.rds|.tsv" in str(info.value)
    assert "Found: nothing" in str(info.value)
