"""Marker gene-set expression per group: R SpatialEcoTyper's ``AverageMarkerExpression``, and a
reader for gene sets saved by R (``SE_consensus_markers.rds``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._collate import collate_sorted
from ._params import validate_params
from ._validation import as_float_matrix
from .preprocessing import looks_like_raw_counts, scale
from ._warnings import warn

__all__ = ["MarkerWarning", "marker_expression", "read_r_markers"]

#: The label R's ``RecoverSE`` gives unassigned cells; ``AverageMarkerExpression`` drops it.
_UNASSIGNED = "NonSE"


class MarkerWarning(UserWarning):
    """A gene set matched no expressed gene: its row of the result is all NaN."""


def _gene_list(value: Any, name: str, where: str) -> list[str]:
    """One gene set as a list of strings (R character vector or factor; NA entries dropped)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, pd.Categorical):
        value = np.asarray(value.astype(object))
    if not isinstance(value, (np.ndarray, list, tuple, pd.Index, pd.Series)):
        raise ValueError(
            f"{where}: gene set {name!r} must be a character vector of gene names, got {type(value).__name__}"
        )
    arr = np.asarray(value, dtype=object).ravel()
    if arr.size == 0:
        return []
    kept = [v for v in arr if v is not None and not (isinstance(v, float) and np.isnan(v))]
    bad = [v for v in kept if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{where}: gene set {name!r} must hold gene names (strings), found {bad[:3]!r}")
    return [str(v) for v in kept]


def _r_attribute(obj: Any, key: str) -> Any:
    """Attribute ``key`` of a parsed R object, following serialised symbol references (R writes
    each symbol once; later uses of ``names`` are references to it)."""
    node = obj.attributes
    while node is not None and node.info.type.name == "LIST":
        tag = node.tag
        if tag is not None and tag.info.type.name == "REF":
            tag = tag.referenced_object
        if tag is not None and tag.info.type.name == "SYM" and getattr(tag.value, "value", None) == key.encode():
            return node.value[0]
        node = node.value[1]
    return None


def _parse_rds_list(p: Path) -> tuple[list[str], Any]:
    """Parse an .rds with the model readers' guards; return the top-level list's names and the
    converted object. Refuses anything but a list with unique, non-empty names."""
    from .io.rds import check_list_names
    from .io.rds import check_r_object as _check_r_object, import_rdata as _import_rdata, parse_rds_file as _parse_rds_file

    rdata = _import_rdata()
    # size limits, decompression-bomb guard, and the model reader's bounded parser (declared
    # lengths, compact sequences, byte code); problems raise ModelFileError naming the file
    parsed = _parse_rds_file(p)
    top = parsed.object
    _check_r_object(top, str(p))  # plain vectors / lists only, names matching lengths
    if top.info.type.name != "VEC" or _r_attribute(top, "class") is not None:
        what = "a classed list (data.frame?)" if top.info.type.name == "VEC" else f"an R {top.info.type.name} object"
        raise ValueError(f"{p}: expected a named list of character vectors (gene sets), got {what}")
    rnames = _r_attribute(top, "names")
    raw = [c.value for c in rnames.value] if rnames is not None and rnames.info.type.name == "STR" else []
    names = ["" if x is None else x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in raw]
    if raw and len(raw) != len(top.value):
        raise ValueError(f"{p}: {len(raw)} names for {len(top.value)} gene sets")
    if not top.value:
        raise ValueError(f"{p}: the list of gene sets is empty")
    check_list_names(names, p, "gene sets (character vectors)", "gene-set name", ValueError)
    try:
        return names, rdata.conversion.convert(parsed)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot convert the R objects of {p}: {type(exc).__name__}: {exc}") from None


@validate_params({"path": [str, os.PathLike]})
def read_r_markers(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read gene sets saved by R with ``saveRDS``: a named list of character vectors, e.g. the
    packaged ``SE_consensus_markers.rds`` of R SpatialEcoTyper (set name -> genes).

    The file is treated as untrusted (the size, decompression and R object-type checks of
    :func:`ecorecover.read_r_models` apply): anything but a non-empty named list of character
    vectors (or factors) with unique, non-empty names raises ``ValueError`` (possibly its
    subclass :class:`ecorecover.ModelFileError`) naming the problem. ``NA`` entries are dropped
    (in R they match no gene). Needs the ``rdata`` package.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"gene-set file not found: {p}")
    names, obj = _parse_rds_list(p)
    values = list(obj.values()) if isinstance(obj, Mapping) else list(obj)
    if len(values) != len(names):  # pragma: no cover - guarded by the names check above
        raise ValueError(f"{p}: {len(names)} names for {len(values)} gene sets")
    return {n: _gene_list(v, n, str(p)) for n, v in zip(names, values)}


def _check_genesets(genesets: Any) -> dict[str, list[str]]:
    if isinstance(genesets, (str, os.PathLike)):
        raise TypeError("genesets must be a mapping name -> genes; read an R .rds with ecorecover.read_r_markers first")
    if not isinstance(genesets, Mapping):
        raise TypeError(f"genesets must be a mapping of set name -> list of genes, got {type(genesets).__name__}")
    if not genesets:
        raise ValueError("genesets is empty")
    return {str(k): _gene_list(v, str(k), "genesets") for k, v in genesets.items()}


def _expression(adata: Any, layer: str | None) -> Any:
    if not (hasattr(adata, "obs_names") and hasattr(adata, "var_names")):
        raise TypeError(f"adata must be an AnnData (cells x genes), got {type(adata).__name__}")
    from ._input_data import check_nonnegative, select_matrix

    src = select_matrix(adata, layer=layer)
    x = as_float_matrix(src.x, "expression", allow_sparse=True)
    # the one refusal of scaled data (names the cell and gene, and where log-normalised data usually are)
    check_nonnegative(src, x, [str(c) for c in adata.obs_names], [str(g) for g in adata.var_names])
    if looks_like_raw_counts(x):
        raise ValueError(
            "the expression looks like raw counts (max > 80); marker_expression needs log-normalised data "
            "(it averages expm1 of the values): use ecorecover.preprocessing.log_normalize first"
        )
    return x


def _group_means_expm1(x: Any, labels: np.ndarray, levels: list[str]) -> np.ndarray:
    """Genes x groups: mean of ``expm1(x)`` over each group's cells (Seurat 4.3 AverageExpression)."""
    codes = pd.Categorical(labels, categories=levels).codes
    counts = np.bincount(codes, minlength=len(levels)).astype(np.float64)
    ind = sp.csr_matrix((1.0 / counts[codes], (codes, np.arange(codes.size))), shape=(len(levels), codes.size))
    if sp.issparse(x):
        e = x.copy()
        e.data = np.expm1(e.data)
        out: np.ndarray = np.asarray((ind @ e).todense()).T
        return out
    dense: np.ndarray = np.asarray(ind @ np.expm1(x)).T
    return dense


@validate_params({"groupby": [str], "layer": [str, None]})
def marker_expression(
    adata: Any,
    *,
    groupby: str = "SE",
    genesets: Mapping[str, Iterable[str] | str],
    layer: str | None = None,
) -> pd.DataFrame:
    """Average expression of marker gene sets per group, z-scored across groups: R
    SpatialEcoTyper's ``AverageMarkerExpression`` (with Seurat 4.3).

    Per group, the mean of ``expm1`` of the log-normalised data (Seurat ``AverageExpression``);
    genes expressed in no group are dropped; ``log2(x + 1)``; a ``NonSE`` group (R's label for
    unassigned cells) is dropped; each gene set is the mean over its genes present (each gene
    once); each set is then z-scored across the groups as Seurat ``ScaleData`` does (sd with
    n - 1, values above 10 set to 10, a constant set -> 0). A set with no gene present gives an
    all-NaN row (R: NA) and a :class:`MarkerWarning` naming it.

    Parameters
    ----------
    adata
        AnnData, cells x genes, log-normalised expression in ``X`` (or ``layers[layer]``),
        dense or sparse. Negative values (scaled data) and raw counts (max > 80) raise
        ``ValueError``.
    groupby
        ``.obs`` column with the group (e.g. SE) of each cell; no missing labels.
    genesets
        Set name -> gene names (a single string is a one-gene set); see :func:`read_r_markers`
        for R's ``.rds`` gene-set lists.
    layer
        Layer holding the log-normalised data (default ``X``).

    Returns
    -------
    DataFrame gene sets (in the given order) x groups (R's sorted order, ICU collation).
    """
    sets = _check_genesets(genesets)
    x = _expression(adata, layer)
    if groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})")
    col = adata.obs[groupby]
    if col.isna().any():
        raise ValueError(f"groupby={groupby!r} has {int(col.isna().sum())} missing label(s); label every cell")
    if col.shape[0] == 0:
        raise ValueError("adata has no cells")
    labels = col.astype(str).to_numpy(dtype=object)
    levels = collate_sorted(labels)
    avg = pd.DataFrame(_group_means_expm1(x, labels, levels), index=[str(g) for g in adata.var_names], columns=levels)
    avg = cast(pd.DataFrame, np.log2(avg[(avg > 0).any(axis=1)] + 1.0)).drop(columns=[_UNASSIGNED], errors="ignore")
    if avg.shape[1] < 2:
        raise ValueError(
            f"z-scoring across groups needs at least 2 groups besides {_UNASSIGNED!r}, got {list(avg.columns)}"
        )
    present = set(avg.index)
    rows = np.full((len(sets), avg.shape[1]), np.nan)
    for i, (name, genes) in enumerate(sets.items()):
        use = list(dict.fromkeys(g for g in genes if g in present))
        if use:
            rows[i] = avg.loc[use].to_numpy().mean(axis=0)
        else:
            warn(
                f"gene set {name!r}: none of its {len(genes)} gene(s) is expressed in the data; its row is NaN",
                MarkerWarning,
            )
    ok = ~np.isnan(rows).any(axis=1)
    if ok.any():
        rows[ok] = scale(rows[ok].T, method="dense", n_jobs=1).T
    return pd.DataFrame(rows, index=pd.Index(list(sets), name="geneset"), columns=list(avg.columns))
