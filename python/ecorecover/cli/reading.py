"""Reading the commands' inputs: expression data with its metadata, model files, and the checks
of the metadata columns the options name (saying when the data look transposed or ``--meta`` was
forgotten)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .messages import CLIError
from .session import log

__all__ = ["read_data", "load_model", "check_keys", "log_cells_per_type"]


def read_data(path: str, meta: str | None, *, backed: bool = False) -> Any:
    """The AnnData of ``path`` with the metadata table ``meta`` in obs (X on disk when ``backed``)."""
    from ..readers import read_expression

    t0 = time.perf_counter()
    adata = read_expression(path, meta=meta, backed=backed)
    log.info("read %s: %d cells x %d genes%s%s (%.1f s)", path, adata.n_obs, adata.n_vars,
             f", metadata from {meta}" if meta else "", " (X read from disk as needed)" if adata.isbacked else "",
             time.perf_counter() - t0)
    return adata


def load_model(path: str) -> Any:
    """The model of ``path``: an ecorecover model file, or R models (.rds/.tsv or a directory)."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".rds", ".tsv") or p.name.lower().endswith(".tsv.gz"):
        from .. import read_r_models

        if not p.exists():
            raise CLIError(f"{path}: no such file or directory")
        return read_r_models(p)
    from .. import load_model as load

    if not p.exists():
        raise CLIError(f"{path}: no such file or directory")
    return load(p)


def check_keys(adata: Any, keys: Sequence[tuple[str, str | None]], data: str, meta: str | None,
               *, may_be_missing: Sequence[str] = ()) -> None:
    """Every key must be a column; missing values are refused except in the options listed in
    ``may_be_missing`` (``--se-key``: train maps a missing SE to "nonSE" with a warning, as R)."""
    where = meta if meta else data
    for opt, key in keys:
        if key is None:
            continue
        if key not in adata.obs.columns:
            raise CLIError(_missing_key_message(adata, key, opt, data, meta))
        col = adata.obs[key]
        if col.isna().any() and opt in may_be_missing:
            values = col.astype(object).to_numpy()
            na = col.isna().to_numpy()
            values[~na] = col[~na].astype(str).to_numpy()
            adata.obs[key] = values
            continue
        if col.isna().any():
            n = int(col.isna().sum())
            first = adata.obs_names[col.isna().to_numpy()][0]
            raise CLIError(f"{where}: column {key!r} ({opt}) has {n} missing value(s), first for cell {first!r}")
        adata.obs[key] = col.astype(str).to_numpy()


_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_BARCODE = re.compile(r"^[ACGTN]{8,}([-_.]\w+)?$")


def _share(names: Any, pattern: re.Pattern[str], n: int = 200) -> float:
    vals = [str(v) for v in list(names[:n])]
    return sum(bool(pattern.match(v)) for v in vals) / len(vals) if vals else 0.0


def _transposed_hint(adata: Any, key: str) -> str:
    """Why the data may be genes x cells instead of cells x genes ("" when nothing suggests it)."""
    if key in adata.var.columns:
        return f"{key!r} is a column of var, the genes' table"
    if _share(adata.obs_names, _ENSEMBL) > 0.5:
        return f"the cell ids look like genes ({', '.join(map(repr, map(str, adata.obs_names[:2])))})"
    if _share(adata.var_names, _BARCODE) > 0.5:
        return f"the gene names look like cell barcodes ({', '.join(map(repr, map(str, adata.var_names[:2])))})"
    return ""


def _missing_key_message(adata: Any, key: str, opt: str, data: str, meta: str | None) -> str:
    """The message for a metadata column that is not there, saying what is probably wrong."""
    cols = [str(c) for c in adata.obs.columns]
    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    where = meta if meta else data
    msg = f"{where}: no column {key!r} for {opt}"
    transposed = _transposed_hint(adata, key)
    if transposed:
        return (f"{msg}: {transposed}; {data} may be genes x cells: transpose it (cells must be rows of an .h5ad; "
                "in Python: adata.T.write_h5ad(...))" + (f" (columns: {shown})" if cols else ""))
    if not cols and meta is None:
        return (f"{msg}: {data} has no cell metadata columns; pass --meta FILE, a table with the cell ids in its "
                f"first column and a {key!r} column")
    return f"{msg} (columns: {shown or 'none'})"


def log_cells_per_type(adata: Any, key: str) -> None:
    """Log the number of cells of each cell type (the first 40)."""
    counts = adata.obs[key].astype(str).value_counts(sort=False).sort_index()
    shown = ", ".join(f"{ct} {int(n)}" for ct, n in list(counts.items())[:40]) + (", ..." if len(counts) > 40 else "")
    log.info("cells per cell type (%s): %s", key, shown)
