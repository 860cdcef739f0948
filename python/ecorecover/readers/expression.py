"""Expression matrices by file name: ``.h5ad``, 10x ``.h5``, 10x ``matrix.mtx`` directories and
genes x cells text tables, read into an AnnData (cells x genes) with every problem named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .files import InputFileError, check_unique, find, one_line, read_header, sep_for, strip_gz
from .meta import align_meta, read_meta
from .tenx import read_10x_h5, read_10x_mtx

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["Format", "detect_format", "read_expression"]

Format = Literal["h5ad", "10x_h5", "10x_mtx", "table"]
_TABLE_SUFFIXES = (".tsv", ".txt", ".csv", ".tab")


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format :func:`read_expression` reads ``path`` as (by name; ``.h5`` files by content).

    Raises :class:`InputFileError` when the path does not exist or the name is not a known kind.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file or directory")
    if p.is_dir():
        if find(p, ("matrix.mtx",)) is None:
            raise InputFileError(p, "a directory, but no matrix.mtx or matrix.mtx.gz in it (10x matrix directory expected)")
        return "10x_mtx"
    name = strip_gz(p.name.lower())
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".h5", ".hdf5")):
        try:
            import h5py

            with h5py.File(p, "r") as f:
                if "X" in f and "obs" in f and "var" in f:
                    return "h5ad"
        except OSError as exc:
            raise InputFileError(p, f"not a readable HDF5 file ({one_line(exc)})") from exc
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


def read_expression(
    path: str | os.PathLike[str],
    *,
    meta: str | os.PathLike[str] | pd.DataFrame | None = None,
    format: Format | None = None,
    gex_only: bool = True,
    var_names: Literal["gene_symbols", "gene_ids"] = "gene_symbols",
    backed: bool = False,
) -> AnnData:
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
            adata = read_10x_h5(p, gex_only=gex_only, var_names=var_names)
        elif fmt == "10x_mtx":
            adata = read_10x_mtx(p if p.is_dir() else p.parent, gex_only=gex_only, var_names=var_names)
        elif fmt == "table":
            adata = _read_table(p)
        else:
            raise InputFileError(p, f"unknown format {fmt!r}")
    except (InputFileError, MemoryError):
        raise
    except Exception as exc:  # garbled files raise many kinds (zlib.error, OSError, ParserError...)
        raise InputFileError(p, f"cannot read it as {_FORMAT_NAMES[fmt]}: {one_line(exc)}") from exc
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


def _read_h5ad(p: Path, *, backed: bool = False) -> AnnData:
    import anndata as ad

    adata = ad.read_h5ad(p, backed="r" if backed else None)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    check_unique(p, adata.obs_names, "cell ids")
    return adata


def _read_table(p: Path) -> AnnData:
    import anndata as ad

    sep = sep_for(p)
    header, n_first = read_header(p, sep)
    if n_first == len(header) + 1:  # R write.table: no field for the row names in the header
        cells = header
    elif n_first == len(header):
        cells = header[1:]
    else:
        raise InputFileError(p, f"the header has {len(header)} fields but the first row has {n_first} "
                             f"(is the separator {'comma' if sep == ',' else 'tab'} right?)")
    if not cells:
        raise InputFileError(p, "no cell columns (the table must be genes x cells, gene names first)")
    check_unique(p, pd.Index(cells), "cell ids (header)")
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
    check_unique(p, genes, "gene names (first column)")
    x = sp.csr_matrix(values.T)
    return ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(cells)), var=pd.DataFrame(index=genes))

