"""ecorecover.readers: every input format, written small in tmp_path, and the errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from ecorecover.readers import InputFileError, align_meta, detect_format, read_expression, read_meta

GENES = ["ACTA2", "CD3E", "MS4A1", "PTPRC", "COL1A1"]
CELLS = ["c1", "c2", "c3", "c4"]


@pytest.fixture
def counts() -> np.ndarray:
    """genes x cells, integers with some exact decimals to check round trips."""
    rng = np.random.default_rng(0)
    return rng.poisson(2.0, size=(len(GENES), len(CELLS))).astype(float)


def _write_table(path: Path, m: np.ndarray, sep: str = "\t", r_header: bool = False) -> None:
    df = pd.DataFrame(m, index=GENES, columns=CELLS)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as fh:
        head = ([] if r_header else ["gene"]) + CELLS
        fh.write(sep.join(head) + "\n")
        for g, row in df.iterrows():
            fh.write(sep.join([g] + [repr(float(v)) for v in row]) + "\n")


def _assert_matches(a, m: np.ndarray, genes=GENES, cells=CELLS) -> None:
    assert list(a.obs_names) == cells
    assert list(a.var_names) == genes
    x = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    np.testing.assert_array_equal(x, m.T)  # cells x genes


@pytest.mark.parametrize("name,sep,r_header", [
    ("x.tsv", "\t", False), ("x.tsv.gz", "\t", False), ("x.csv", ",", False),
    ("x.csv.gz", ",", True), ("x.txt", "\t", True),
])
def test_table_genes_by_cells(tmp_path, counts, name, sep, r_header):
    counts = counts.copy()
    counts[0, 0] = 0.1 + 0.2  # a 17-digit value survives exactly
    p = tmp_path / name
    _write_table(p, counts, sep=sep, r_header=r_header)
    assert detect_format(p) == "table"
    a = read_expression(p)
    _assert_matches(a, counts)
    assert a.X.dtype == np.float64 and sp.isspmatrix_csr(a.X)


def test_tutorial_fixture_table_with_meta():
    root = Path(__file__).parent / "fixtures" / "train" / "input"
    a = read_expression(root / "counts.tsv.gz", meta=root / "meta.tsv")
    meta = pd.read_csv(root / "meta.tsv", sep="\t", index_col=0)
    assert a.shape == (6000, 500)
    assert list(a.obs_names) == list(meta.index)
    assert (a.obs[["Sample", "CellType", "SE"]].to_numpy() == meta[["Sample", "CellType", "SE"]].to_numpy()).all()
    raw = pd.read_csv(root / "counts.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_array_equal(a.X.toarray(), raw.to_numpy().T)
    assert list(a.var_names) == list(raw.index)


def test_table_non_numeric_value(tmp_path, counts):
    p = tmp_path / "bad.tsv"
    _write_table(p, counts)
    text = p.read_text().splitlines()
    fields = text[3].split("\t")
    fields[2] = "oops"
    text[3] = "\t".join(fields)
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(InputFileError) as e:
        read_expression(p)
    msg = str(e.value)
    assert str(p) in msg and "'oops'" in msg and "'MS4A1'" in msg and "'c2'" in msg


def test_table_ragged_and_garbled(tmp_path, counts):
    p = tmp_path / "ragged.tsv"
    _write_table(p, counts)
    lines = p.read_text().splitlines()
    lines[1] += "\t1\t2"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError, match="ragged.tsv"):
        read_expression(p)
    g = tmp_path / "garbled.tsv.gz"
    g.write_bytes(b"\x1f\x8b\x08\x00garbage that is not gzip" * 10)
    with pytest.raises(InputFileError, match="garbled.tsv.gz"):
        read_expression(g)
    b = tmp_path / "binary.tsv"
    b.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputFileError, match="binary.tsv"):
        read_expression(b)
    e = tmp_path / "empty.tsv"
    e.write_text("")
    with pytest.raises(InputFileError, match="empty.tsv"):
        read_expression(e)


def test_table_repeated_names(tmp_path, counts):
    p = tmp_path / "dupcells.tsv"
    p.write_text("gene\tc1\tc1\nG1\t1\t2\nG2\t3\t4\n")
    with pytest.raises(InputFileError, match=r"dupcells.tsv: repeated cell ids.*'c1'"):
        read_expression(p)
    p = tmp_path / "dupgenes.tsv"
    p.write_text("gene\tc1\tc2\nG1\t1\t2\nG1\t3\t4\n")
    with pytest.raises(InputFileError, match=r"dupgenes.tsv: repeated gene names.*'G1'"):
        read_expression(p)


def test_missing_and_unknown(tmp_path):
    with pytest.raises(InputFileError, match=r"nope.tsv: no such file"):
        read_expression(tmp_path / "nope.tsv")
    p = tmp_path / "data.xlsx"
    p.write_text("x")
    with pytest.raises(InputFileError, match=r"data.xlsx: unknown file type"):
        read_expression(p)
    with pytest.raises(InputFileError, match="no matrix.mtx"):
        read_expression(tmp_path)


def _write_10x_h5_v3(path: Path, m: np.ndarray, types: list[str]) -> None:
    csc = sp.csc_matrix(m)  # genes x cells, as Cell Ranger stores it
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"] = csc.data.astype(np.int32)
        g["indices"] = csc.indices.astype(np.int64)
        g["indptr"] = csc.indptr.astype(np.int64)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["barcodes"] = np.array([c.encode() for c in CELLS])
        ft = g.create_group("features")
        ft["id"] = np.array([f"ENSG{i:05d}".encode() for i in range(len(GENES))])
        ft["name"] = np.array([x.encode() for x in GENES])
        ft["feature_type"] = np.array([t.encode() for t in types])
        ft["genome"] = np.array([b"GRCh38"] * len(GENES))


def test_10x_h5_v3(tmp_path, counts):
    p = tmp_path / "filtered_feature_bc_matrix.h5"
    types = ["Gene Expression"] * 4 + ["Antibody Capture"]
    _write_10x_h5_v3(p, counts, types)
    assert detect_format(p) == "10x_h5"
    a = read_expression(p)
    _assert_matches(a, counts[:4], genes=GENES[:4])
    assert list(a.var["gene_ids"]) == [f"ENSG{i:05d}" for i in range(4)]
    a = read_expression(p, gex_only=False, var_names="gene_ids")
    _assert_matches(a, counts, genes=[f"ENSG{i:05d}" for i in range(5)])


def test_10x_h5_v2_and_repeated_symbols(tmp_path, counts):
    p = tmp_path / "v2.h5"
    csc = sp.csc_matrix(counts)
    names = GENES[:4] + ["ACTA2"]  # a repeated symbol, as in real 10x references
    with h5py.File(p, "w") as f:
        g = f.create_group("GRCh38")
        g["data"], g["indices"], g["indptr"] = csc.data, csc.indices, csc.indptr
        g["shape"] = np.array(counts.shape)
        g["barcodes"] = np.array([c.encode() for c in CELLS])
        g["genes"] = np.array([f"ENSG{i}".encode() for i in range(5)])
        g["gene_names"] = np.array([x.encode() for x in names])
    with pytest.warns(UserWarning, match="1 repeated gene name"):
        a = read_expression(p)
    _assert_matches(a, counts, genes=GENES[:4] + ["ACTA2-1"])


def test_other_hdf5_is_not_a_matrix(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["something"] = np.arange(3)
    with pytest.raises(InputFileError, match=r"other.h5: .*neither a 10x matrix"):
        read_expression(p)
    t = tmp_path / "trunc.h5"
    t.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(InputFileError, match="trunc.h5"):
        read_expression(t)


@pytest.mark.parametrize("gz,v2", [(False, False), (True, False), (True, True)])
def test_10x_mtx_directory(tmp_path, counts, gz, v2):
    d = tmp_path / "filtered_feature_bc_matrix"
    d.mkdir()
    sfx = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(d / f"matrix.mtx{sfx}", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(counts))
    feats = "genes.tsv" if v2 else "features.tsv"
    with opener(d / f"{feats}{sfx}", "wt") as fh:
        for i, g in enumerate(GENES):
            fh.write(f"ENSG{i}\t{g}" + ("" if v2 else "\tGene Expression") + "\n")
    with opener(d / f"barcodes.tsv{sfx}", "wt") as fh:
        fh.write("\n".join(CELLS) + "\n")
    assert detect_format(d) == "10x_mtx"
    _assert_matches(read_expression(d), counts)
    _assert_matches(read_expression(d / f"matrix.mtx{sfx}"), counts)
    (d / f"barcodes.tsv{sfx}").unlink()
    with pytest.raises(InputFileError, match="lacks barcodes"):
        read_expression(d)


def test_10x_mtx_garbled(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "matrix.mtx").write_text("this is not a matrix market file\n1 2 3\n")
    (d / "features.tsv").write_text("a\tA\n")
    (d / "barcodes.tsv").write_text("c\n")
    with pytest.raises(InputFileError, match="matrix.mtx: cannot read it as a Matrix Market file"):
        read_expression(d)


@pytest.mark.parametrize("suffix", [".h5ad", ".h5"])
def test_h5ad(tmp_path, counts, suffix):
    a0 = ad.AnnData(X=sp.csr_matrix(counts.T), obs=pd.DataFrame({"CellType": ["B", "T", "B", "T"]}, index=CELLS),
                    var=pd.DataFrame(index=GENES))
    p = tmp_path / f"data{suffix}"
    a0.write_h5ad(p)
    assert detect_format(p) == "h5ad"
    a = read_expression(p)
    _assert_matches(a, counts)
    assert list(a.obs["CellType"]) == ["B", "T", "B", "T"]


def test_read_meta(tmp_path):
    p = tmp_path / "meta.tsv"
    p.write_text("id\tCellType\tSE\tx\n001\tB\tSE01\t1.5\n002\tT\tnonSE\t2\n")
    m = read_meta(p)
    assert list(m.index) == ["001", "002"] and m.index.name == "id"
    assert list(m.columns) == ["CellType", "SE", "x"]
    assert m["x"].tolist() == [1.5, 2.0] and m["CellType"].tolist() == ["B", "T"]
    r = tmp_path / "meta_r.csv"  # R write.table/write.csv(row.names=TRUE, col.names=TRUE) header
    r.write_text('"CellType","SE"\n"c1","B","SE01"\n"c2","T","SE02"\n')
    m = read_meta(r)
    assert list(m.index) == ["c1", "c2"] and m["SE"].tolist() == ["SE01", "SE02"]
    d = tmp_path / "dup.tsv"
    d.write_text("cell\tCellType\nc1\tB\nc1\tT\n")
    with pytest.raises(InputFileError, match=r"dup.tsv: repeated cell ids"):
        read_meta(d)
    o = tmp_path / "onecol.tsv"
    o.write_text("cell\nc1\n")
    with pytest.raises(InputFileError, match="onecol.tsv: no metadata columns"):
        read_meta(o)
    with pytest.raises(InputFileError, match="absent.tsv: no such file"):
        read_meta(tmp_path / "absent.tsv")


def test_align_meta_errors(tmp_path, counts):
    p = tmp_path / "x.tsv"
    _write_table(p, counts)
    meta = tmp_path / "meta.tsv"
    # reversed order and one extra row: aligned by id, extra row ignored with a warning
    meta.write_text("cell\tCellType\n" + "".join(f"{c}\tT{c}\n" for c in CELLS[::-1]) + "zz\tB\n")
    with pytest.warns(UserWarning, match="1 metadata row"):
        a = read_expression(p, meta=meta)
    assert a.obs["CellType"].tolist() == [f"T{c}" for c in CELLS]
    meta.write_text("cell\tCellType\nother1\tB\nother2\tT\n")
    with pytest.raises(InputFileError, match=r"meta.tsv: no cell id matches a cell of .*x.tsv"):
        read_expression(p, meta=meta)
    meta.write_text("cell\tCellType\nc1\tB\nc2\tT\n")
    with pytest.raises(InputFileError, match=r"meta.tsv: 2 of 4 cells of .*x.tsv have no metadata row: 'c3', 'c4'"):
        read_expression(p, meta=meta)
    # a cells x genes table: the metadata ids match the *genes*: say so
    t = ad.AnnData(X=np.zeros((2, 3)), obs=pd.DataFrame(index=["g1", "g2"]), var=pd.DataFrame(index=["a", "b", "c"]))
    with pytest.raises(InputFileError, match="must be genes x cells"):
        align_meta(t, pd.DataFrame({"CellType": ["B", "T", "B"]}, index=["a", "b", "c"]))


def test_read_meta_written_by_pandas_with_an_index(tmp_path, counts):
    """pandas' to_csv(index=True): an empty first header field; with a default (row-number) index
    the cell ids are the next column. Repeated header names are named in the error."""
    ids = list(CELLS)
    m = pd.DataFrame({"cell": ids, "CellType": ["B", "T"] * (len(ids) // 2)})
    m.set_index("cell").rename_axis(None).to_csv(tmp_path / "unnamed.csv")  # ",CellType"
    assert (tmp_path / "unnamed.csv").read_text().startswith(",CellType\n")
    got = read_meta(tmp_path / "unnamed.csv")
    assert list(got.index) == ids and list(got.columns) == ["CellType"]
    m.to_csv(tmp_path / "rownumbers.tsv", sep="\t")  # "\tcell\tCellType": row numbers first
    got = read_meta(tmp_path / "rownumbers.tsv")
    assert list(got.index) == [str(i) for i in range(len(ids))] and list(got.columns) == ["cell", "CellType"]
    x = tmp_path / "x.tsv"
    _write_table(x, counts)
    a = read_expression(x, meta=tmp_path / "rownumbers.tsv")  # the cell-id column is found
    assert list(a.obs["CellType"]) == list(m["CellType"])
    # ids in a later column of a table with real ids first: explained, not guessed
    other = m.assign(sample=["s1"] * len(ids))[["sample", "cell", "CellType"]]
    other.index = [f"r{i}" for i in range(len(ids))]
    other.to_csv(tmp_path / "other.tsv", sep="\t")
    with pytest.raises(InputFileError, match=r"other.tsv: no cell id matches.*column 'cell' holds the cell ids: make it the first column"):
        read_expression(x, meta=tmp_path / "other.tsv")
    (tmp_path / "dupcols.tsv").write_text("cell\tCellType\tSE\tCellType\nc1\tB\tSE01\tB\n")
    with pytest.raises(InputFileError, match=r"dupcols.tsv: repeated column name\(s\) in the header: 'CellType'"):
        read_meta(tmp_path / "dupcols.tsv")
