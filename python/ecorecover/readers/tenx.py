"""10x Genomics matrices: Cell Ranger ``.h5`` files and ``matrix.mtx`` directories.

Cell Ranger v3 ``.h5`` files hold one ``matrix`` group, v2 files one group per genome; a
``matrix.mtx[.gz]`` directory has ``features.tsv[.gz]`` (or ``genes.tsv[.gz]``) and
``barcodes.tsv[.gz]``. Both become an AnnData of cells x genes with sparse CSR ``X``.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .files import InputFileError, check_unique, examples, find, one_line
from .._warnings import warn

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_10x_h5", "read_10x_mtx"]


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _finish_10x(p: Path, x: sp.csr_matrix, barcodes: np.ndarray, ids: np.ndarray, names: np.ndarray,
                types: np.ndarray | None, gex_only: bool, var_names: str) -> AnnData:
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
    check_unique(p, obs.index, "cell barcodes")
    n_dup = int(var.index.duplicated().sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's "Variable names are not unique": handled below
        adata = ad.AnnData(X=x, obs=obs, var=var)
        if n_dup:
            adata.var_names_make_unique()
    if n_dup:
        warn(f"{p}: {n_dup} repeated gene name(s) made unique with suffixes -1, -2, ...",
                      UserWarning)
    return adata


def read_10x_h5(p: Path, *, gex_only: bool, var_names: str) -> AnnData:
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
                    f"'barcodes') nor an AnnData file; top-level keys: {examples(list(f.keys()), 6)}")
            if len(groups) > 1:
                raise InputFileError(p, f"holds several genomes ({examples(groups)}); not supported")
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


def read_10x_mtx(d: Path, *, gex_only: bool, var_names: str) -> AnnData:
    from scipy.io import mmread

    mtx = find(d, ("matrix.mtx",))
    if mtx is None:
        raise InputFileError(d, "no matrix.mtx or matrix.mtx.gz in this directory")
    feats = find(d, ("features.tsv", "genes.tsv"))
    bars = find(d, ("barcodes.tsv",))
    if feats is None or bars is None:
        missing = [n for n, f in (("features.tsv[.gz] or genes.tsv[.gz]", feats), ("barcodes.tsv[.gz]", bars)) if f is None]
        raise InputFileError(d, f"10x matrix directory lacks {' and '.join(missing)}")
    # scipy >= 1.15 warns unless told which sparse type to return.
    kw = {"spmatrix": True} if "spmatrix" in inspect.signature(mmread).parameters else {}
    try:
        if mtx.name.endswith(".gz"):
            with gzip.open(mtx, "rb") as fh:
                m = mmread(fh, **kw)
        else:
            m = mmread(mtx, **kw)
    except Exception as exc:  # scipy raises many kinds on garbled input
        raise InputFileError(mtx, f"cannot read it as a Matrix Market file: {one_line(exc)}") from exc
    x = sp.csr_matrix(sp.coo_matrix(m).T)
    try:
        f = pd.read_csv(feats, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE)
        b = pd.read_csv(bars, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE)
    except Exception as exc:  # garbled files raise many kinds
        raise InputFileError(d, f"cannot read its features/barcodes: {one_line(exc)}") from exc
    if f.shape[0] != x.shape[1] or b.shape[0] != x.shape[0]:
        raise InputFileError(d, f"matrix.mtx is {x.shape[1]} genes x {x.shape[0]} cells but there are "
                             f"{f.shape[0]} features and {b.shape[0]} barcodes")
    ids = f.iloc[:, 0].to_numpy(dtype=object)
    names = f.iloc[:, 1].to_numpy(dtype=object) if f.shape[1] > 1 else ids
    types = f.iloc[:, 2].to_numpy(dtype=object) if f.shape[1] > 2 else None
    return _finish_10x(d, x, b.iloc[:, 0].to_numpy(dtype=object), ids, names, types, gex_only, var_names)

