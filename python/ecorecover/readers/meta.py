"""Cell metadata tables (first column cell ids) and their alignment to the cells of the data.

:func:`read_meta` reads a ``.tsv``/``.txt``/``.csv`` (optionally ``.gz``) table keeping labels
as written; :func:`align_meta` puts its rows in the order of an AnnData's cells, by id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .files import InputFileError, check_unique, examples, one_line, read_header, sep_for
from .._warnings import warn

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["align_meta", "read_meta"]


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
    sep = sep_for(p)
    try:
        header, n_first = read_header(p, sep)
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
            raise InputFileError(p, f"repeated column name(s) in the header: {examples(list(dict.fromkeys(dup)))}")
        df = pd.read_csv(p, sep=sep, header=None, skiprows=1, names=names, dtype=str,
                         keep_default_na=False, na_values=list(_META_NA))
    except (InputFileError, MemoryError):
        raise
    except Exception as exc:  # garbled files raise many kinds
        raise InputFileError(p, f"cannot read it as a metadata table: {one_line(exc)}") from exc
    if df.shape[1] < 2:
        raise InputFileError(p, "no metadata columns (expected cell ids in the first column, then e.g. CellType, SE, Sample)")
    if df.shape[0] == 0:
        raise InputFileError(p, "no rows")
    df = df.set_index(names[0])
    if np.asarray(df.index.isna()).any():
        raise InputFileError(p, f"empty cell id in row {int(np.flatnonzero(df.index.isna())[0]) + 2}")
    df.index = pd.Index(df.index.astype(str), name=names[0])
    check_unique(p, df.index, "cell ids")
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


def align_meta(adata: AnnData, meta: pd.DataFrame, *, data_name: str = "data", meta_name: str = "meta") -> AnnData:
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
    check_unique(meta_name, ids, "cell ids")
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
            meta_name, f"no cell id matches a cell of {data_name} (metadata ids {examples(ids)}; "
            f"data cells {examples(cells)}){hint}")
    if not found.all():
        missing = cells[~found]
        raise InputFileError(
            meta_name, f"{len(missing)} of {len(cells)} cells of {data_name} have no metadata row: {examples(missing)}")
    extra = int((~ids.isin(cells)).sum())
    if extra:
        warn(f"{meta_name}: {extra} metadata row(s) for cells not in {data_name} were ignored",
                      UserWarning)
    m = meta.copy()
    m.index = ids
    m = m.loc[cells]
    obs = adata.obs.copy()
    for c in m.columns:
        obs[c] = m[c].to_numpy()
    adata.obs = obs
    return adata
