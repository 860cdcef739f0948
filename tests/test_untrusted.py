"""Model files as untrusted input (issue 14): crafted HDF5, .rds and .tsv files that try to read
other files, allocate what they declare, or mislabel their arrays, and saves that must not replace
what they should not. Every crafted file is generated here (h5py, hand-built R serialization
bytes); none is checked in."""

from __future__ import annotations

import gzip
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from rds_bytes import (
    ALTREP_SXP,
    BCODESXP,
    LANGSXP,
    LISTSXP,
    NIL,
    REALSXP,
    attributes,
    flags,
    i32,
    integer,
    matrix,
    rds,
    real,
    strings,
    sym,
    vector,
    write_rds,
)

from ecorecover import cli
from ecorecover.io import read_r_models
from ecorecover.model import ModelFileError, RecoveryModel, load_model

REPO = Path(__file__).resolve().parents[1]


def _model(n_types: int = 2) -> RecoveryModel:
    rng = np.random.default_rng(0)
    ws = {}
    for i, ct in enumerate(["B", "CD4T", "NK"][:n_types]):
        ws[ct] = pd.DataFrame(rng.random((4, 3)) + 0.1, index=[f"G{j}__pos" for j in range(4)],
                              columns=["SE01", "SE02", f"SE{10 + i}"])
    return RecoveryModel(ws, params={"seed": 1})


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    p = tmp_path / "model.h5"
    _model().save(p)
    return p


def _replace(f: h5py.File, name: str) -> None:
    del f[name]


# -- HDF5: other files --------------------------------------------------------------------------------
def test_external_raw_storage_is_refused(saved: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(12, 0.5).tobytes())  # would pass the finiteness / positivity checks
    with h5py.File(saved, "r+") as f:
        _replace(f, "weights/0/W")
        f.create_dataset("weights/0/W", shape=(4, 3), dtype="<f8", external=[(str(secret), 0, 96)])
    with pytest.raises(ModelFileError, match=r"model\.h5: dataset /weights/0/W keeps its data in external file.*secret"):
        load_model(saved)


def test_external_link_is_refused(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["W"] = np.full((4, 3), 0.5)
    with h5py.File(saved, "r+") as f:
        _replace(f, "weights/0/W")
        f["weights/0/W"] = h5py.ExternalLink(str(other), "/W")
    with pytest.raises(ModelFileError, match=r"/weights/0/W is an external link to .*other\.h5"):
        load_model(saved)


def test_soft_link_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        _replace(f, "weights/1/features")
        f["weights/1/features"] = h5py.SoftLink("/weights/0/features")
    with pytest.raises(ModelFileError, match=r"/weights/1/features is a soft link"):
        load_model(saved)


def test_virtual_dataset_is_refused(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "src.h5"
    with h5py.File(other, "w") as g:
        g["W"] = np.full((4, 3), 0.5)
    layout = h5py.VirtualLayout(shape=(4, 3), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "W", shape=(4, 3))
    with h5py.File(saved, "r+") as f:
        _replace(f, "weights/0/W")
        f.create_virtual_dataset("weights/0/W", layout)
    with pytest.raises(ModelFileError, match=r"/weights/0/W is a virtual dataset"):
        load_model(saved)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda f: f.create_dataset("weights/0/W", data=np.full((4, 3), 0.5), chunks=(2, 3), compression="gzip"),
         r"chunked"),
        (lambda f: f.create_dataset("weights/0/W", data=np.zeros(12, dtype=[("a", "<f4"), ("b", "<f4")]).reshape(4, 3)),
         r"expected 2-D float64"),
        (lambda f: f.create_dataset("weights/0/W", data=np.full((4, 3), 1), dtype="<i8"), r"expected 2-D float64"),
        (lambda f: f.create_dataset("weights/0/W", data=np.full(12, 0.5)), r"expected 2-D float64"),
    ],
    ids=["chunked-gzip", "compound", "integer", "1-D"],
)
def test_unexpected_layout_or_dtype(saved: Path, make, match: str) -> None:
    with h5py.File(saved, "r+") as f:
        _replace(f, "weights/0/W")
        make(f)
    with pytest.raises(ModelFileError, match=match):
        load_model(saved)


# -- HDF5: declared sizes ---------------------------------------------------------------------------
def _bomb(path: Path, rows: int = 12_500, cols: int = 1_000) -> Path:
    """A model whose first W declares rows x cols float64 (100 MB) that the file does not hold."""
    _model(1).save(path)
    with h5py.File(path, "r+") as f:
        for name in ("W", "features", "se_names"):
            _replace(f, f"weights/0/{name}")
        f.create_dataset("weights/0/W", shape=(rows, cols), dtype="<f8")  # never written: 0 bytes stored
        strings = h5py.string_dtype("utf-8")
        f.create_dataset("weights/0/features", data=np.array([f"g{i}__pos" for i in range(rows)], dtype=object), dtype=strings)
        f.create_dataset("weights/0/se_names", data=np.array([f"SE{i}" for i in range(cols)], dtype=object), dtype=strings)
    return path


_RSS_CHILD = textwrap.dedent(
    """
    import resource, sys
    import h5py, numpy, pandas
    import ecorecover
    from ecorecover.io import read_r_models
    from ecorecover.model import ModelFileError, load_model
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        (load_model if sys.argv[1] == "h5" else read_r_models)(sys.argv[2])
        print("LOADED")
    except ModelFileError as exc:
        print("REFUSED", exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("GROWTH_KB", after - before)
    """
)


def _rss_growth_mb(kind: str, path: Path) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, kind, str(path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    growth = int(lines[-1].split()[1]) / 1024  # ru_maxrss is in KiB on Linux
    return "\n".join(lines[:-1]), growth


def test_declared_size_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "bomb.h5")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ModelFileError, match=r"bomb\.h5: dataset /weights/0/W declares shape \(12500, 1000\) "
                                             r"\(100000000 bytes\) but stores 0 bytes"):
        load_model(path)
    message, growth = _rss_growth_mb("h5", path)
    assert message.startswith("REFUSED"), message
    assert growth < 50, f"peak RSS grew by {growth:.1f} MB"


def test_hard_links_cannot_multiply_one_dataset(tmp_path: Path) -> None:
    path = tmp_path / "links.h5"
    n = 40
    rng = np.random.default_rng(1)
    w = pd.DataFrame(rng.random((2000, 20)) + 0.1, index=[f"g{i}" for i in range(2000)], columns=[f"SE{j}" for j in range(20)])
    RecoveryModel({"T0": w}).save(path)
    with h5py.File(path, "r+") as f:  # 39 more cell types whose datasets are hard links to the first's
        f.attrs["n_cell_types"] = n
        del f["cell_types"]
        f.create_dataset("cell_types", data=np.array([f"T{i}" for i in range(n)], dtype=object), dtype=h5py.string_dtype())
        for i in range(1, n):
            g = f["weights"].create_group(str(i))
            g.attrs["cell_type"] = f"T{i}"
            for name in ("W", "features", "se_names"):
                g[name] = f["weights/0"][name]
    assert path.stat().st_size < 2 * 2000 * 20 * 8
    with pytest.raises(ModelFileError, match=r"links\.h5: .*more than the \d+-byte file can hold"):
        load_model(path)


def test_cycle_of_runs_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        f.attrs["n_runs"] = 1
        f["runs/0"] = f  # hard link back to the root: runs/0/runs/0/...
    with pytest.raises(ModelFileError, match=r"runs nest deeper than 8 levels|more than the \d+-byte file can hold"):
        load_model(saved)


def test_vlen_string_lengths_are_charged_before_reading(saved: Path) -> None:
    """A variable-length string record declaring a huge length is refused before HDF5 reads it."""
    with h5py.File(saved, "r") as f:
        offset = f["weights/0/features"].id.get_offset()
    data = bytearray(saved.read_bytes())
    data[offset:offset + 4] = struct.pack("<I", 2**31)  # first record: length 2 GiB
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"the strings of /weights/0/features declares 214748\d+ bytes"):
        load_model(saved)


# -- HDF5: names against arrays -------------------------------------------------------------------
def _set_strings(f: h5py.File, name: str, values: list[str]) -> None:
    del f[name]
    f.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype("utf-8"))


def test_short_cell_type_list_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:  # the second cell type silently vanished before
        _set_strings(f, "cell_types", ["B"])
    with pytest.raises(ModelFileError, match=r"/cell_types holds 1 cell types, but n_cell_types is 2"):
        load_model(saved)


def test_extra_weight_group_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        _set_strings(f, "cell_types", ["B"])
        f.attrs["n_cell_types"] = 1
    with pytest.raises(ModelFileError, match=r"/weights holds groups \['0', '1'\] but cell_types lists 1 .*unexpected: \['1'\]"):
        load_model(saved)


def test_duplicated_cell_type_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:  # two groups both claiming "B": one W was silently dropped
        _set_strings(f, "cell_types", ["B", "B"])
        f["weights/1"].attrs["cell_type"] = "B"
    with pytest.raises(ModelFileError, match=r"names cell type\(s\) \['B'\] more than once"):
        load_model(saved)


def test_se_names_shorter_than_w_are_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        _set_strings(f, "weights/1/se_names", ["SE01", "SE02"])
    with pytest.raises(ModelFileError, match=r"/weights/1/se_names holds 2 SE names, but W of cell type 'CD4T' has shape \(4, 3\)"):
        load_model(saved)


def test_empty_w_in_file_is_refused(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        del f["weights/1/W"]
        f.create_dataset("weights/1/W", shape=(0, 3), dtype="<f8")
        _set_strings(f, "weights/1/features", [])
    with pytest.raises(ModelFileError, match=r"W \('CD4T'\) has shape \(0, 3\); a W needs 1\.\."):
        load_model(saved)


def test_empty_w_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"weights\['B'\] is empty \(0 features x 2 SEs\)"):
        RecoveryModel({"B": pd.DataFrame(np.zeros((0, 2)), columns=["SE1", "SE2"])})


# -- .rds: hand-built R serialization (tests/rds_bytes.py) ----------------------------------------
def test_hand_built_rds_reads(tmp_path: Path) -> None:
    """The builder is right: a valid hand-built named list reads as expected."""
    ws = vector([matrix(["A__pos", "A__neg"], ["SE1", "SE2"]), matrix(["C__pos"], ["SE1"], [2.0])],
                [("names", strings(["B", "NK"]))])
    m = read_r_models(write_rds(tmp_path / "ws.rds", ws))
    assert m.cell_types == ["B", "NK"]
    assert list(m["B"].index) == ["A__pos", "A__neg"] and m["NK"].iloc[0, 0] == 2.0


def test_rds_decompression_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.rds"
    n = 12_500_000  # 100 MB of doubles, compressed to ~100 KB
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(rds(i32(flags(REALSXP, attrs=True), n)))
        zeros = bytes(1 << 20)
        for _ in range(n * 8 // len(zeros)):
            fh.write(zeros)
        fh.write(attributes([("dim", integer([n // 10, 10]))]))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ModelFileError, match=r"bomb\.rds: the \d+-byte gzip stream decompresses to more than"):
        read_r_models(path)
    message, growth = _rss_growth_mb("rds", path)
    assert message.startswith("REFUSED"), message
    assert growth < 50, f"peak RSS grew by {growth:.1f} MB"


def test_rds_compact_sequence_bomb_is_refused(tmp_path: Path) -> None:
    # ALTREP compact_intseq: 3 numbers that rdata expands to n integers (here 4 GB)
    info = i32(LISTSXP) + sym("compact_intseq") + i32(LISTSXP) + sym("base") + i32(LISTSXP) + integer([13]) + NIL
    altrep = i32(ALTREP_SXP) + info + real([1e9, 1.0, 1.0]) + NIL
    path = write_rds(tmp_path / "seq.rds", altrep)
    with pytest.raises(ModelFileError, match=r"seq\.rds.*compact_intseq sequence declares 1000000000 elements"):
        read_r_models(path)


def test_rds_nested_compression_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.rds"
    path.write_bytes(gzip.compress(gzip.compress(rds(matrix(["A"], ["SE1"])))))
    with pytest.raises(ModelFileError, match=r"twice\.rds: compressed twice"):
        read_r_models(path)


def test_rds_language_object_is_refused(tmp_path: Path) -> None:
    lang = i32(LANGSXP) + sym("system") + i32(LISTSXP) + strings(["id"]) + NIL  # quote(system("id"))
    path = write_rds(tmp_path / "call.rds", vector([lang], [("names", strings(["B"]))]))
    with pytest.raises(ModelFileError, match=r"call\.rds\[\[1\]\]: holds an R object of type LANG"):
        read_r_models(path)


def test_rds_byte_code_is_refused(tmp_path: Path) -> None:
    bcode = i32(BCODESXP) + i32(2**30)  # BCODESXP declaring a table of 2**30 entries
    path = write_rds(tmp_path / "bc.rds", bcode)
    with pytest.raises(ModelFileError, match=r"bc\.rds.*byte code"):
        read_r_models(path)


def test_native_binary_rds_needs_rdata_1(tmp_path: Path) -> None:
    """saveRDS(0.5, xdr = FALSE): little-endian "B" format, which rdata reads from 1.0 on."""
    import rdata

    obj = struct.pack("<3i", 3, 0x040300, 0x030500) + struct.pack("<i", 5) + b"UTF-8"
    obj += struct.pack("<2id", REALSXP, 1, 0.5)
    path = tmp_path / "native.rds"
    path.write_bytes(gzip.compress(b"B\n" + obj))
    if int(rdata.__version__.split(".")[0]) >= 1:  # parsed; then refused as no matrix
        match = r"native\.rds: expected a matrix \(features x SEs\), got an R object of shape \(1,\)"
    else:
        match = r"cannot read .*native\.rds as an R \.rds file: native binary R serialization .* needs rdata >= 1\.0"
    with pytest.raises(ModelFileError, match=match):
        read_r_models(path)


def test_truncated_rds_is_refused(tmp_path: Path) -> None:
    data = rds(matrix(["A", "C"], ["SE1", "SE2"], [0.5, 0.25, 1.0, 2.0]))
    cut = data.index(struct.pack(">d", 0.25))  # inside the matrix's values
    path = tmp_path / "cut.rds"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match=r"cannot read .*cut\.rds as an R \.rds file: .*truncated"):
        read_r_models(path)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (vector([matrix(["A"], ["SE1"]), matrix(["C"], ["SE1"])], [("names", strings(["B"]))]),
         r"has 2 elements but 1 names"),
        (vector([matrix(["A"], ["SE1"]), matrix(["C"], ["SE1"], [3.0])], [("names", strings(["B", "B"]))]),
         r"names cell type\(s\) \['B'\] more than once"),
        (vector([matrix(["A", "C", "D"], ["SE1"], np.ones(2), dim=[2, 1])], [("names", strings(["B"]))]),
         r"\[\[1\]\]: has 2 rows but 3 row names"),
        (vector([matrix(["A", "C"], ["SE1"], np.ones(3), dim=[2, 1])], [("names", strings(["B"]))]),
         r"\[\[1\]\]: dim \[2, 1\] does not match its 3 values"),
    ],
    ids=["names-short", "names-duplicated", "dimnames-long", "dim-wrong"],
)
def test_rds_names_must_match_what_they_label(tmp_path: Path, obj: bytes, match: str) -> None:
    path = write_rds(tmp_path / "ws.rds", obj)
    with pytest.raises(ModelFileError, match=r"ws\.rds.*" + match):
        read_r_models(path)


# -- .tsv ---------------------------------------------------------------------------------------------
def test_ragged_tsv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "B.tsv"
    path.write_text("\tSE01\tSE02\nA__pos\t0.5\t0.25\nA__neg\t0.5\nC__pos\t1\t2\n")
    with pytest.raises(ModelFileError, match=r"B\.tsv: ragged table: line 3 has 2 fields, expected 3"):
        read_r_models(path)


def test_tsv_gz_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "B.tsv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"\tSE01\n")
        row = b"A__pos\t0\n" * 100_000
        for _ in range(40):
            fh.write(row)
    with pytest.raises(ModelFileError, match=r"B\.tsv\.gz: the \d+-byte gzip stream decompresses to more than"):
        read_r_models(path)


# -- saving -------------------------------------------------------------------------------------------
def test_save_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"m\.h5: output file exists; pass overwrite=True"):
        _model().save(path)
    assert path.read_bytes() == b"precious"


def test_save_overwrite_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    _model().save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_model(path) == _model()
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]


def test_save_never_replaces_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep")
    link = tmp_path / "m.h5"
    link.symlink_to(target)
    for overwrite in (False, True):
        with pytest.raises(OSError, match=r"m\.h5: output path exists and is a symbolic link"):
            _model().save(link, overwrite=overwrite)
    assert link.is_symlink() and target.read_text() == "keep"
    dangling = tmp_path / "d.h5"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match=r"symbolic link"):
        _model().save(dangling, overwrite=True)
    assert not (tmp_path / "nowhere").exists()
    assert sorted(os.listdir(tmp_path)) == ["d.h5", "m.h5", "target.txt"]


def test_save_never_replaces_a_fifo_or_device(tmp_path: Path) -> None:
    fifo = tmp_path / "m.h5"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=r"m\.h5: output path exists and is a fifo"):
        _model().save(fifo, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(OSError, match=r"/dev/null: output path exists and is a character device"):
        _model().save("/dev/null", overwrite=True)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_cli_force_never_replaces_a_symlink(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.h5"
    _model().save(model)
    target = tmp_path / "t.h5"
    _model(1).save(target)
    link = tmp_path / "ens.h5"
    link.symlink_to(target)
    assert cli.main(["aggregate", str(model), "--out", str(link), "--force", "-q"]) == 2
    assert "ens.h5: output path exists and is a symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and load_model(target) == _model(1)


_SIGTERM_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    from ecorecover.model import RecoveryModel
    from ecorecover._atomic import atomic_outputs

    path, how = Path(sys.argv[1]), sys.argv[2]
    real = RecoveryModel._write_group

    def slow(self, g):  # write part of the file, then stall: SIGTERM arrives mid-save, deterministically
        real(self, g)
        g.file.flush()
        (path.parent / "started").write_text("")
        time.sleep(60)

    RecoveryModel._write_group = slow
    w = pd.DataFrame(np.ones((50, 4)), index=[f"g{i}" for i in range(50)], columns=list("abcd"))
    model = RecoveryModel({"B": w})
    if how == "save":
        model.save(path, overwrite=True)
    else:  # the CLI's way: the model saved to a temporary of atomic_outputs
        with atomic_outputs([path], force=True) as (tmp,):
            model.save(tmp)
    print("FINISHED")
    """
)


@pytest.mark.parametrize("how", ["save", "atomic_outputs"])
def test_sigterm_mid_save_leaves_no_temporary_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"previous")
    child = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD, str(path), how], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert any(".tmp" in n for n in os.listdir(tmp_path))  # the save is under way
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGTERM, (out, err)
    assert "FINISHED" not in out
    assert sorted(os.listdir(tmp_path)) == ["m.h5", "started"]
    assert path.read_bytes() == b"previous"
