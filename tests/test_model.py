"""RecoveryModel: the Mapping contract, validation, and the HDF5 file format (round trip,
atomic save, rejection of foreign, damaged and newer files)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, read_matrix

from ecorecover.io import read_r_models
from ecorecover.model import FORMAT_VERSION, ModelFileError, RecoveryModel, load_model


def _w(rows: list[str], cols: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    v = rng.random((len(rows), len(cols))) * 10.0 ** rng.integers(-300, 3, size=(len(rows), len(cols)))
    v[0, 0] = 0.0
    v[-1, -1] = 5e-324  # subnormal: must survive bit-exactly
    return pd.DataFrame(v, index=rows, columns=cols)


@pytest.fixture
def model() -> RecoveryModel:
    # Orders deliberately unsorted; names with characters HDF5 paths cannot hold.
    w1 = _w(["ZNF__pos", "ACTB__neg", "ACTB__pos", "CD3E__pos"], ["SE10", "SE01", "nonSE"], 1)
    w2 = _w(["CD3E__neg", "MS4A1__pos"], ["SE02", "SE10"], 2)
    w3 = _w(["GENE_1", "GENE.2"], ["SE01"], 3)
    runs = [RecoveryModel({"T/NK cells": w1}, params={"seed": 2025}), RecoveryModel({"T/NK cells": w1 * 2}, params={"seed": 2026})]
    return RecoveryModel(
        {"T/NK cells": w1, "B": w2, ".": w3},
        params={"seed": 2024, "n_features_per_se": None, "nested": {"a": [1, 2.5, "x"]}, "t": (1, 2)},
        runs=runs,
        source="ecorecover.train",
    )


def _assert_same(a: RecoveryModel, b: RecoveryModel) -> None:
    assert a.cell_types == b.cell_types
    for ct in a:
        wa, wb = a[ct], b[ct]
        assert list(wa.index) == list(wb.index) and list(wa.columns) == list(wb.columns)
        assert wb.dtypes.eq(np.float64).all()
        assert np.array_equal(wa.to_numpy().view(np.uint64), wb.to_numpy().view(np.uint64))
    assert a.params == b.params and a.source == b.source and len(a.runs) == len(b.runs)
    for ra, rb in zip(a.runs, b.runs):
        _assert_same(ra, rb)
    assert a == b


# -- the object ------------------------------------------------------------------------------
def test_mapping_and_properties(model: RecoveryModel) -> None:
    assert len(model) == 3 and list(model) == ["T/NK cells", "B", "."] == model.cell_types
    assert "B" in model and "Malignant" not in model
    assert model.se_names == ["SE10", "SE01", "nonSE", "SE02"]
    assert model.genes == ["ZNF", "ACTB", "CD3E", "MS4A1", "GENE_1", "GENE.2"]
    assert model.params["t"] == [1, 2] and model.params["n_features_per_se"] is None
    assert "ecorecover_version" in model.params
    assert model.source == "ecorecover.train" and len(model.runs) == 2
    with pytest.raises(KeyError, match="Malignant"):
        model["Malignant"]
    text = repr(model)
    for piece in ("3 cell type(s)", "4 SE(s)", "T/NK cells: 4 features x 3 SEs", "B: 2 features x 2 SEs", "2 run(s)"):
        assert piece in text


def test_read_only(model: RecoveryModel) -> None:
    w = model["B"]
    w.iloc[0, 0] = 123.0
    assert model["B"].iloc[0, 0] != 123.0
    p = model.params
    p["seed"] = 1
    assert model.params["seed"] == 2024
    with pytest.raises(TypeError):
        model["B"] = w  # type: ignore[index]


def test_input_order_and_values_kept() -> None:
    w = read_matrix("train/sample/CD4T.tsv.gz")
    m = RecoveryModel({"CD4T": w})
    assert list(m["CD4T"].index) == list(w.index) and list(m["CD4T"].columns) == list(w.columns)
    assert np.array_equal(m["CD4T"].to_numpy(), w.to_numpy())


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        (np.nan, ValueError, "non-finite.*'SE2'"),
        (np.inf, ValueError, "non-finite"),
        (-1e-3, ValueError, "negative.*feature 'g2'"),
    ],
)
def test_rejects_bad_values(value: float, exc: type, match: str) -> None:
    w = pd.DataFrame(np.ones((2, 2)), index=["g1", "g2"], columns=["SE1", "SE2"])
    w.iloc[1, 1] = value
    with pytest.raises(exc, match=match):
        RecoveryModel({"B": w})


def test_rejects_bad_structure() -> None:
    ok = pd.DataFrame(np.ones((2, 2)), index=["g1", "g2"], columns=["SE1", "SE2"])
    with pytest.raises(ValueError, match=r"duplicated feature.*'g1'"):
        RecoveryModel({"B": ok.set_axis(["g1", "g1"], axis=0)})
    with pytest.raises(ValueError, match="duplicated SE"):
        RecoveryModel({"B": ok.set_axis(["SE1", "SE1"], axis=1)})
    with pytest.raises(TypeError, match="DataFrame"):
        RecoveryModel({"B": ok.to_numpy()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="SE names"):
        RecoveryModel({"B": ok.set_axis([0, 1], axis=1)})
    with pytest.raises(TypeError, match="cell type"):
        RecoveryModel({1: ok})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must hold numbers"):
        RecoveryModel({"B": ok.astype(object).assign(SE1=["a", "b"])})
    with pytest.raises(TypeError, match="JSON"):
        RecoveryModel({"B": ok}, params={"x": object()})
    with pytest.raises(TypeError, match=r"runs\[0\]"):
        RecoveryModel({"B": ok}, runs=[{"B": ok}])  # type: ignore[list-item]


# -- file format -----------------------------------------------------------------------------
def test_round_trip_exact(model: RecoveryModel, tmp_path) -> None:
    path = tmp_path / "model.h5"
    model.save(path)
    loaded = load_model(path)
    _assert_same(model, loaded)
    assert RecoveryModel.load(path) == model
    assert os.listdir(tmp_path) == ["model.h5"]
    with h5py.File(path, "r") as f:  # the documented layout
        assert f.attrs["format"] == "ecorecover.RecoveryModel" and f.attrs["format_version"] == FORMAT_VERSION
        assert list(f["cell_types"].asstr()[()]) == ["T/NK cells", "B", "."]
        assert f["weights/0"].attrs["cell_type"] == "T/NK cells"
        assert f["weights/0/W"].dtype == np.float64 and f["weights/0/W"].shape == (4, 3)
        assert list(f["runs/1/weights/0/se_names"].asstr()[()]) == ["SE10", "SE01", "nonSE"]


def test_round_trip_r_fixture_and_overwrite(tmp_path) -> None:
    r = read_r_models(FIXTURES / "train" / "sample")
    path = tmp_path / "r.h5"
    RecoveryModel({"B": read_matrix("train/sample/B.tsv.gz")}).save(path)
    r.save(path, overwrite=True)  # replaces the existing file
    _assert_same(r, load_model(path))


def test_empty_and_no_source(tmp_path) -> None:
    m = RecoveryModel({}, params=None)
    m.save(tmp_path / "e.h5")
    loaded = load_model(tmp_path / "e.h5")
    assert loaded.cell_types == [] and loaded.source is None and loaded.runs == ()


def test_atomic_save_failure_leaves_nothing(model: RecoveryModel, tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.h5"
    real = RecoveryModel._write_group

    def boom(self, g):  # write part of the file, then fail
        real(self, g)
        g.file.flush()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(RecoveryModel, "_write_group", boom)
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_save_failure_keeps_previous_file(model: RecoveryModel, tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.h5"
    old = RecoveryModel({"B": model["B"]})
    old.save(path)
    before = path.read_bytes()

    def fail_fsync(fd):
        raise OSError("fsync failed (simulated)")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="simulated"):
        model.save(path, overwrite=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.h5"]
    assert path.read_bytes() == before and load_model(path) == old


def test_truncated_file(model: RecoveryModel, tmp_path) -> None:
    path = tmp_path / "model.h5"
    model.save(path)
    data = path.read_bytes()
    for n in (len(data) // 2, 600):
        bad = tmp_path / f"cut{n}.h5"
        bad.write_bytes(data[:n])
        with pytest.raises(ModelFileError, match=str(bad)):
            load_model(bad)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not an HDF5"):
        load_model(empty)


def test_other_hdf5_files(tmp_path) -> None:
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ModelFileError, match="not an ecorecover model"):
        load_model(plain)
    import anndata as ad

    h5ad = tmp_path / "cells.h5ad"
    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(h5ad)
    with pytest.raises(ModelFileError, match="cells.h5ad is an HDF5 file but not an ecorecover model"):
        load_model(h5ad)


def test_newer_format_version(model: RecoveryModel, tmp_path) -> None:
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ModelFileError, match=f"format_version {FORMAT_VERSION + 1}.*upgrade ecorecover"):
        load_model(path)


def test_inconsistent_content(model: RecoveryModel, tmp_path) -> None:
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        del f["weights/1/features"]
        f["weights/1/features"] = np.array(["only_one"], dtype=object).astype(h5py.string_dtype())
    with pytest.raises(ModelFileError, match="shape"):
        load_model(path)


def test_text_file_and_missing(tmp_path) -> None:
    txt = tmp_path / "model.tsv"
    txt.write_text("feature\tSE01\nA__pos\t0.5\n")
    with pytest.raises(ModelFileError, match="not an HDF5 file") as info:
        load_model(txt)
    assert isinstance(info.value, ValueError) and str(txt) in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.h5")


def test_saved_file_permissions_follow_umask(model: RecoveryModel, tmp_path) -> None:
    ref = tmp_path / "ref"
    ref.write_bytes(b"")
    model.save(tmp_path / "model.h5")
    assert (tmp_path / "model.h5").stat().st_mode == ref.stat().st_mode
