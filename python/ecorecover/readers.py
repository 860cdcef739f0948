"""Readers for the expression and metadata files users have.

:func:`read_expression` reads, by file name:

- ``.h5ad`` (AnnData, cells x genes) with :func:`anndata.read_h5ad`;
- 10x Genomics ``.h5`` (Cell Ranger v3 ``matrix`` group, or v2 one-group-per-genome) with h5py;
- a 10x ``matrix.mtx[.gz]`` directory (``features.tsv[.gz]`` or ``genes.tsv[.gz]``,
  ``barcodes.tsv[.gz]``) with :func:`scipy.io.mmread` (the path may name the directory or its
  ``matrix.mtx[.gz]``);
- a **genes x cells** text table ``.tsv``/``.txt``/``.csv`` (optionally ``.gz``): first column
  gene names, header row cell ids (the orientation of R's matrices and of the SpatialEcoTyper
  tutorial's files; R's ``write.table`` header without a name for the row-name column is
  accepted).

:func:`read_meta` reads a cell metadata table (``.tsv``/``.txt``/``.csv``, optionally ``.gz``;
first column cell ids). Passing ``meta=`` to :func:`read_expression` aligns it to the cells by id.

scanpy is not needed. Every problem raises :class:`InputFileError` (a ``ValueError``) whose message
names the file and the problem.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["InputFileError", "read_expression", "read_meta", "align_meta", "detect_format"]

Format = Literal["h5ad", "10x_h5", "10x_mtx", "table"]
_TABLE_SUFFIXES = (".tsv", ".txt", ".csv", ".tab")


class InputFileError(ValueError):
    """An input file is missing, unreadable, or does not hold what it should.

    ``path`` is the file; the message starts with it.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


def _examples(values: Sequence[Any], n: int = 3) -> str:
    vals = list(values)
    shown = ", ".join(repr(str(v)) for v in vals[:n])
    return shown + (f", ... ({len(vals)} in all)" if len(vals) > n else "")


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _sep_for(path: Path) -> str:
    return "," if _strip_gz(path.name).lower().endswith(".csv") else "\t"


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format :func:`read_expression` reads ``path`` as (by name; ``.h5`` files by content).

    Raises :class:`InputFileError` when the path does not exist or the name is not a known kind.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file or directory")
    if p.is_dir():
        if _find(p, ("matrix.mtx",)) is None:
            raise InputFileError(p, "a directory, but no matrix.mtx or matrix.mtx.gz in it (10x matrix directory expected)")
        return "10x_mtx"
    name = _strip_gz(p.name.lower())
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".h5", ".hdf5")):
        try:
            import h5py

            with h5py.File(p, "r") as f:
                if "X" in f and "obs" in f and "var" in f:
                    return "h5ad"
        except OSError as exc:
            raise InputFileError(p, f"not a readable HDF5 file ({_one_line(exc)})") from exc
        return "10x_h5"
    if name.endswith(".mtx"):
        return "10x_mtx"
    if name.endswith(_TABLE_SUFFIXES):
        return "table"
    raise InputFileError(
        p,
        "unknown file type: expected .h5ad, a 10x .h5, a 10x matrix.mtx directory, or a genes x "
        "cells .tsv/.txt/.csv table (optionally .gz)",
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def read_expression(
    path: str | os.PathLike[str],
    *,
    meta: str | os.PathLike[str] | pd.DataFrame | None = None,
    format: Format | None = None,
    gex_only: bool = True,
    var_names: Literal["gene_symbols", "gene_ids"] = "gene_symbols",
    backed: bool = False,
) -> Any:
    """Read an expression matrix into an AnnData (cells x genes).

    Parameters
    ----------
    path
        The file or 10x directory (see the module docstring for the formats).
    meta
        Optional cell metadata: a path for :func:`read_meta` or a DataFrame indexed by cell id.
        Its rows are aligned to the cells by id (:func:`align_meta`) and stored in ``obs``
        (replacing columns of the same name).
    format
        Force a format instead of deciding by the file name.
    gex_only
        10x only: keep only "Gene Expression" features.
    var_names
        10x only: name genes by symbol (default; repeated symbols are made unique with
        ``-1``, ``-2`` suffixes, with a warning) or by Ensembl id.
    backed
        ``.h5ad`` only: open ``X`` read-only on disk (``anndata.read_h5ad(..., backed="r")``)
        instead of loading it; ``obs``/``var`` are in memory. Ignored for other formats.

    Returns
    -------
    anndata.AnnData
        ``X`` as stored: sparse CSR for 10x and tables (float64 for tables), whatever the
        ``.h5ad`` holds. Values are not transformed.

    Raises
    ------
    InputFileError
        Missing file, unknown type, unreadable or garbled content, non-numeric values,
        repeated cell ids or gene names (tables), metadata that does not cover the cells.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file or directory")
    fmt = format or detect_format(p)
    try:
        if fmt == "h5ad":
            adata = _read_h5ad(p, backed=backed)
        elif fmt == "10x_h5":
            adata = _read_10x_h5(p, gex_only=gex_only, var_names=var_names)
        elif fmt == "10x_mtx":
            adata = _read_10x_mtx(p if p.is_dir() else p.parent, gex_only=gex_only, var_names=var_names)
        elif fmt == "table":
            adata = _read_table(p)
        else:
            raise InputFileError(p, f"unknown format {fmt!r}")
    except (InputFileError, MemoryError):
        raise
    except Exception as exc:  # garbled files raise many kinds (zlib.error, OSError, ParserError...)
        raise InputFileError(p, f"cannot read it as {_FORMAT_NAMES[fmt]}: {_one_line(exc)}") from exc
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputFileError(p, f"holds no data ({adata.n_obs} cells x {adata.n_vars} genes)")
    if meta is not None:
        if isinstance(meta, pd.DataFrame):
            m, meta_name = meta, "meta"
        else:
            m, meta_name = read_meta(meta), os.fspath(meta)
        adata = align_meta(adata, m, data_name=os.fspath(p), meta_name=meta_name)
    return adata


_FORMAT_NAMES = {
    "h5ad": "an .h5ad AnnData file",
    "10x_h5": "a 10x Genomics .h5 matrix",
    "10x_mtx": "a 10x matrix.mtx directory",
    "table": "a genes x cells table",
}


def _read_h5ad(p: Path, *, backed: bool = False) -> Any:
    import anndata as ad

    adata = ad.read_h5ad(p, backed="r" if backed else None)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    _check_unique(p, adata.obs_names, "cell ids")
    return adata


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _finish_10x(p: Path, x: sp.csr_matrix, barcodes: np.ndarray, ids: np.ndarray, names: np.ndarray,
                types: np.ndarray | None, gex_only: bool, var_names: str) -> Any:
    import anndata as ad

    var = pd.DataFrame({"gene_ids": ids, "gene_symbols": names})
    if types is not None:
        var["feature_types"] = types
        if gex_only:
            keep = types == "Gene Expression"
            if not keep.any():
                raise InputFileError(p, "no 'Gene Expression' features (pass gex_only=False to keep all)")
            x = x[:, np.flatnonzero(keep)]
            var = var.loc[keep].reset_index(drop=True)
    var.index = pd.Index(var["gene_symbols" if var_names == "gene_symbols" else "gene_ids"].astype(str).to_numpy())
    obs = pd.DataFrame(index=pd.Index(barcodes.astype(str)))
    _check_unique(p, obs.index, "cell barcodes")
    n_dup = int(var.index.duplicated().sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's "Variable names are not unique": handled below
        adata = ad.AnnData(X=x, obs=obs, var=var)
        if n_dup:
            adata.var_names_make_unique()
    if n_dup:
        warnings.warn(f"{p}: {n_dup} repeated gene name(s) made unique with suffixes -1, -2, ...",
                      UserWarning, stacklevel=3)
    return adata


def _read_10x_h5(p: Path, *, gex_only: bool, var_names: str) -> Any:
    import h5py

    with h5py.File(p, "r") as f:
        if "matrix" in f:
            g = f["matrix"]
            feat = g["features"]
            ids = _decode(feat["id"][:])
            names = _decode(feat["name"][:])
            types = _decode(feat["feature_type"][:]) if "feature_type" in feat else None
        else:
            groups = [k for k in f.keys() if isinstance(f[k], h5py.Group) and "barcodes" in f[k]]
            if not groups:
                raise InputFileError(
                    p, "an HDF5 file, but neither a 10x matrix (no 'matrix' group or genome group with "
                    f"'barcodes') nor an AnnData file; top-level keys: {_examples(list(f.keys()), 6)}")
            if len(groups) > 1:
                raise InputFileError(p, f"holds several genomes ({_examples(groups)}); not supported")
            g = f[groups[0]]
            ids = _decode(g["genes"][:])
            names = _decode(g["gene_names"][:])
            types = None
        for key in ("data", "indices", "indptr", "shape", "barcodes"):
            if key not in g:
                raise InputFileError(p, f"10x matrix group '{g.name}' lacks '{key}'")
        n_genes, n_cells = (int(v) for v in g["shape"][:])
        x = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=(n_cells, n_genes))
        barcodes = _decode(g["barcodes"][:])
    if len(ids) != n_genes or len(barcodes) != n_cells:
        raise InputFileError(p, f"matrix shape {n_genes} x {n_cells} does not match {len(ids)} features "
                             f"and {len(barcodes)} barcodes")
    x.check_format(full_check=True)
    return _finish_10x(p, x, barcodes, ids, names, types, gex_only, var_names)


def _find(d: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for cand in (d / stem, d / (stem + ".gz")):
            if cand.is_file():
                return cand
    return None


def _read_10x_mtx(d: Path, *, gex_only: bool, var_names: str) -> Any:
    from scipy.io import mmread

    mtx = _find(d, ("matrix.mtx",))
    if mtx is None:
        raise InputFileError(d, "no matrix.mtx or matrix.mtx.gz in this directory")
    feats = _find(d, ("features.tsv", "genes.tsv"))
    bars = _find(d, ("barcodes.tsv",))
    if feats is None or bars is None:
        missing = [n for n, f in (("features.tsv[.gz] or genes.tsv[.gz]", feats), ("barcodes.tsv[.gz]", bars)) if f is None]
        raise InputFileError(d, f"10x matrix directory lacks {' and '.join(missing)}")
    import inspect

    # scipy >= 1.15 warns unless told which sparse type to return.
    kw = {"spmatrix": True} if "spmatrix" in inspect.signature(mmread).parameters else {}
    try:
        if mtx.name.endswith(".gz"):
            with gzip.open(mtx, "rb") as fh:
                m = mmread(fh, **kw)
        else:
            m = mmread(mtx, **kw)
    except Exception as exc:  # scipy raises many kinds on garbled input
        raise InputFileError(mtx, f"cannot read it as a Matrix Market file: {_one_line(exc)}") from exc
    x = sp.csr_matrix(sp.coo_matrix(m).T)
    try:
        f = pd.read_csv(feats, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE)
        b = pd.read_csv(bars, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE)
    except Exception as exc:  # garbled files raise many kinds
        raise InputFileError(d, f"cannot read its features/barcodes: {_one_line(exc)}") from exc
    if f.shape[0] != x.shape[1] or b.shape[0] != x.shape[0]:
        raise InputFileError(d, f"matrix.mtx is {x.shape[1]} genes x {x.shape[0]} cells but there are "
                             f"{f.shape[0]} features and {b.shape[0]} barcodes")
    ids = f.iloc[:, 0].to_numpy(dtype=object)
    names = f.iloc[:, 1].to_numpy(dtype=object) if f.shape[1] > 1 else ids
    types = f.iloc[:, 2].to_numpy(dtype=object) if f.shape[1] > 2 else None
    return _finish_10x(d, x, b.iloc[:, 0].to_numpy(dtype=object), ids, names, types, gex_only, var_names)


def _header(p: Path, sep: str) -> tuple[list[str], int]:
    """The header fields and the number of fields of the first data row."""
    with _open_text(p) as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, None)
        first = next(reader, None)
    if header is None:
        raise InputFileError(p, "is empty")
    return header, (len(first) if first is not None else len(header))


def _read_table(p: Path) -> Any:
    import anndata as ad

    sep = _sep_for(p)
    header, n_first = _header(p, sep)
    if n_first == len(header) + 1:  # R write.table: no field for the row names in the header
        cells = header
    elif n_first == len(header):
        cells = header[1:]
    else:
        raise InputFileError(p, f"the header has {len(header)} fields but the first row has {n_first} "
                             f"(is the separator {'comma' if sep == ',' else 'tab'} right?)")
    if not cells:
        raise InputFileError(p, "no cell columns (the table must be genes x cells, gene names first)")
    _check_unique(p, pd.Index(cells), "cell ids (header)")
    names = ["__gene__"] + [f"c{i}" for i in range(len(cells))]
    df = pd.read_csv(p, sep=sep, header=None, skiprows=1, names=names, index_col=0,
                     dtype={"__gene__": str}, float_precision="round_trip", low_memory=False)
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        col = bad[0]
        vals = pd.to_numeric(df[col], errors="coerce")
        row = int(np.flatnonzero(vals.isna() & df[col].notna())[0]) if (vals.isna() & df[col].notna()).any() else 0
        raise InputFileError(
            p, f"non-numeric value {df[col].iloc[row]!r} for gene {df.index[row]!r}, cell "
            f"{cells[int(col[1:])]!r} (expected a genes x cells table of numbers, gene names in the first column)")
    values = df.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        r, c = (int(v[0]) for v in np.nonzero(np.isnan(values)))
        raise InputFileError(p, f"missing value for gene {df.index[r]!r}, cell {cells[c]!r}")
    genes = pd.Index(df.index.astype(str))
    _check_unique(p, genes, "gene names (first column)")
    x = sp.csr_matrix(values.T)
    return ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(cells)), var=pd.DataFrame(index=genes))


def _check_unique(p: Path | str, index: pd.Index, what: str) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()].unique()
        raise InputFileError(p, f"repeated {what}: {_examples(dup)}")


def read_meta(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a cell metadata table: first column cell ids, a header row, one row per cell.

    ``.csv`` is comma-separated, ``.tsv``/``.txt`` tab-separated (optionally ``.gz``); R's
    ``write.table`` header (no field for the row names) is accepted. Cell ids are kept as
    strings (``"001"`` stays ``"001"``). Only an empty field and ``NA`` (R's ``write.table``
    writes missing values as ``NA``; R's ``read.table`` reads them back so) are missing values:
    labels such as ``None``, ``null``, ``N/A`` or ``NaN`` stay labels. A column becomes numbers
    only when every value is one and no two values written differently would become the same
    number and no value is an integer with a leading zero: ``01`` and ``1``, or ``1e1`` and
    ``10``, stay distinct labels (strings), and ``"01"``, ``"02"`` stay as written.

    Raises
    ------
    InputFileError
        Missing or unreadable file, no columns besides the ids, repeated cell ids.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file or directory")
    if p.is_dir():
        raise InputFileError(p, "is a directory, expected a metadata table")
    sep = _sep_for(p)
    try:
        header, n_first = _header(p, sep)
        if n_first == len(header) + 1:
            names = [_index_name(header)] + header
        elif n_first == len(header):
            # pandas' to_csv writes an empty first field for an unnamed index (",CellType,SE")
            names = [header[0] or _index_name(header[1:])] + header[1:]
        else:
            raise InputFileError(p, f"the header has {len(header)} fields but the first row has {n_first} "
                                 f"(is the separator {'comma' if sep == ',' else 'tab'} right?)")
        dup = [n for i, n in enumerate(names) if n in names[:i]]
        if dup:
            raise InputFileError(p, f"repeated column name(s) in the header: {_examples(list(dict.fromkeys(dup)))}")
        df = pd.read_csv(p, sep=sep, header=None, skiprows=1, names=names, dtype=str,
                         keep_default_na=False, na_values=list(_META_NA))
    except (InputFileError, MemoryError):
        raise
    except Exception as exc:  # garbled files raise many kinds
        raise InputFileError(p, f"cannot read it as a metadata table: {_one_line(exc)}") from exc
    if df.shape[1] < 2:
        raise InputFileError(p, "no metadata columns (expected cell ids in the first column, then e.g. CellType, SE, Sample)")
    if df.shape[0] == 0:
        raise InputFileError(p, "no rows")
    df = df.set_index(names[0])
    if df.index.isna().any():
        raise InputFileError(p, f"empty cell id in row {int(np.flatnonzero(df.index.isna())[0]) + 2}")
    df.index = pd.Index(df.index.astype(str), name=names[0])
    _check_unique(p, df.index, "cell ids")
    for c in df.columns:
        num = _as_numbers(df[c])
        if num is not None:
            df[c] = num
    return df


#: The only fields :func:`read_meta` reads as missing (besides an empty field).
_META_NA = ("", "NA")


def _as_numbers(col: pd.Series) -> pd.Series | None:
    """``col`` (strings) as numbers, or None when that would change a label: a value that is not
    a number, an integer written with a leading zero (``007``), or two values written
    differently that parse to the same number (``01``/``1``, ``1e1``/``10``, ``1.0``/``1``)."""
    text = col.dropna()
    if text.empty:
        return None
    num = pd.to_numeric(col, errors="coerce")
    if (num.isna() & col.notna()).any():
        return None
    stripped = text.str.strip().str.lstrip("+-")
    if (stripped.str.fullmatch(r"0\d+")).any():
        return None
    if text.nunique() != num.dropna().nunique():
        return None
    return num


def _index_name(columns: Sequence[str]) -> str:
    """A name for an unnamed cell-id column that is not one of ``columns``."""
    for name in ("cell", "cell_id", "_index"):
        if name not in columns:
            return name
    i = 1
    while f"_index{i}" in columns:
        i += 1
    return f"_index{i}"


def _row_numbers(ids: pd.Index) -> bool:
    """Whether ``ids`` are 0, 1, ..., n-1: the row numbers pandas writes for a default index."""
    return len(ids) > 0 and list(ids) == [str(i) for i in range(len(ids))]


def _id_columns(meta: pd.DataFrame, cells: pd.Index) -> list[str]:
    """The columns of ``meta`` whose values include every cell id of the data."""
    out = []
    for c in meta.columns:
        col = meta[c]
        if col.isna().any():
            continue
        if cells.isin(pd.Index(col.astype(str))).all():
            out.append(str(c))
    return out


def align_meta(adata: Any, meta: pd.DataFrame, *, data_name: str = "data", meta_name: str = "meta") -> Any:
    """Put ``meta``'s rows in the order of ``adata``'s cells (by id) into ``adata.obs``.

    Every cell of ``adata`` needs a metadata row; rows for other cells are dropped with a
    warning. Columns of ``meta`` replace ``obs`` columns of the same name.

    Raises
    ------
    InputFileError
        (naming ``meta_name``) when no cell id matches (with a hint when the data's *gene*
        names match, i.e. a cells x genes table), when cells have no row, or ids repeat.
    """
    ids = pd.Index(meta.index.astype(str))
    cells = pd.Index(adata.obs_names.astype(str))
    found = cells.isin(ids)
    if not found.any():
        id_cols = _id_columns(meta, cells)
        if _row_numbers(ids) and len(id_cols) == 1:
            # written by pandas with its default index (0, 1, ...) before the cell-id column
            logging.getLogger("ecorecover.readers").info(
                "%s: the first column holds row numbers 0..%d; cell ids taken from column %r",
                meta_name, len(ids) - 1, id_cols[0])
            meta = meta.set_index(id_cols[0])
            ids = pd.Index(meta.index.astype(str))
            found = cells.isin(ids)
    _check_unique(meta_name, ids, "cell ids")
    if not found.any():
        hint = ""
        id_cols = _id_columns(meta, cells)
        if id_cols:
            hint = (f"; column {id_cols[0]!r} holds the cell ids: make it the first column (pandas: "
                    f"meta.set_index({id_cols[0]!r}).to_csv(...))")
        elif pd.Index(adata.var_names.astype(str)).isin(ids).any():
            hint = (f"; its ids match the gene names of {data_name}: a text table must be genes x cells "
                    "(gene names in the first column, cell ids in the header)")
        raise InputFileError(
            meta_name, f"no cell id matches a cell of {data_name} (metadata ids {_examples(ids)}; "
            f"data cells {_examples(cells)}){hint}")
    if not found.all():
        missing = cells[~found]
        raise InputFileError(
            meta_name, f"{len(missing)} of {len(cells)} cells of {data_name} have no metadata row: {_examples(missing)}")
    extra = int((~ids.isin(cells)).sum())
    if extra:
        warnings.warn(f"{meta_name}: {extra} metadata row(s) for cells not in {data_name} were ignored",
                      UserWarning, stacklevel=2)
    m = meta.copy()
    m.index = ids
    m = m.loc[cells]
    obs = adata.obs.copy()
    for c in m.columns:
        obs[c] = m[c].to_numpy()
    adata.obs = obs
    return adata
