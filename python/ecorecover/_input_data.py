"""Which expression matrix of an AnnData to use (``X``, a layer or ``.raw``), and refusing
matrices that are not log-normalised expression.

scanpy's convention: ``layer="name"`` reads ``adata.layers[name]``, ``use_raw=True`` reads
``adata.raw.X`` (with ``adata.raw.var_names`` as genes); the two are exclusive. Recovery models
are applied to log-normalised expression that ecorecover scales per cell type itself; a matrix
holding negative values has already been scaled or centred (``sc.pp.scale``, a regression) and
is refused with a message saying where the log-normalised data usually are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._warnings import warn

__all__ = ["MatrixSource", "select_matrix", "negative_values_error", "check_nonnegative", "layer_names"]


@dataclass
class MatrixSource:
    """The chosen matrix (cells x genes), its genes and where it came from (for messages)."""

    x: Any
    var: pd.DataFrame  # the matrix's var (gene_symbols columns are looked up here)
    where: str  # "adata.X", "adata.layers['counts']" or "adata.raw.X"
    adata: Any

    @property
    def var_names(self) -> list[str]:
        return [str(g) for g in self.var.index]


def select_matrix(adata: Any, *, layer: str | None = None, use_raw: bool = False) -> MatrixSource:
    """The matrix of ``adata`` that ``layer`` / ``use_raw`` name (default ``adata.X``).

    Raises ``ValueError`` for both at once, ``use_raw`` without ``adata.raw`` or an empty
    matrix, ``KeyError`` for an unknown layer (naming the layers there are).
    """
    if not isinstance(use_raw, (bool, np.bool_)):
        raise TypeError(f"use_raw must be True or False, got {use_raw!r}")
    if layer is not None and use_raw:
        raise ValueError(f"layer={layer!r} and use_raw=True both name a matrix; pass one of them")
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but adata.raw is None; use adata.X (use_raw=False) or layer=")
        return MatrixSource(adata.raw.X, adata.raw.var, "adata.raw.X", adata)
    if layer is not None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be the name of a layer (a string), got {type(layer).__name__}")
        if layer not in adata.layers:
            raise KeyError(f"layer={layer!r} is not a layer of adata (layers: {layer_names(adata)})")
        x = adata.layers[layer]
        where = f"adata.layers[{layer!r}]"
    else:
        x, where = adata.X, "adata.X"
    if x is None:
        raise ValueError(f"{where} is empty; put the log-normalised expression there, or choose layer= / use_raw=")
    return MatrixSource(x, adata.var, where, adata)


def _alternatives(src: MatrixSource) -> str:
    """Where log-normalised data usually are, given what ``src.adata`` holds."""
    tips = []
    a = src.adata
    if a is not None and getattr(a, "raw", None) is not None and src.where != "adata.raw.X":
        tips.append(f"adata.raw ({a.raw.n_vars} genes): pass use_raw=True")
    layers = [k for k in (layer_names(a) if a is not None else []) if f"[{k!r}]" not in src.where]
    if layers:
        tips.append(f"a layer: pass layer= one of {layers[:8]}")
    tips.append("or log-normalise the counts (ecorecover.preprocessing.log_normalize)")
    return "; ".join(tips)


def negative_values_error(src: MatrixSource, value: float, where: str = "") -> ValueError:
    """The error for a matrix holding negative values (``where``: e.g. " at cell 'c1', gene 'CD4'")."""
    tips = _alternatives(src)
    return ValueError(
        f"{src.where} holds negative values (e.g. {value:g}{where}): it looks like scaled or centred "
        "data (e.g. after scanpy's sc.pp.scale), not log-normalised expression, which ecorecover "
        f"needs (it scales each gene per cell type itself). The log-normalised data are usually in {tips}"
    )


def check_nonnegative(src: MatrixSource, x: Any, cells: list[str], genes: list[str]) -> None:
    """Raise :func:`negative_values_error` (naming the first cell and gene) if ``x`` (cells x
    genes, dense or CSR/CSC, the matrix of ``src`` after conversion) holds a negative value."""
    if sp.issparse(x):
        csr = x.tocsr()
        neg = np.flatnonzero((csr.data < 0) & np.isfinite(csr.data))  # NaN/inf: reported elsewhere
        if not neg.size:
            return
        e = int(neg[0])
        r = int(np.searchsorted(csr.indptr, e, side="right") - 1)
        c = int(csr.indices[e])
        value = float(csr.data[e])
    else:
        arr = np.asarray(x)
        if not arr.size or not np.nanmin(arr) < 0:  # no copy unless something is negative
            return
        neg = (arr < 0) & np.isfinite(arr)  # NaN/inf: reported elsewhere
        if not neg.any():
            return
        r, c = (int(v) for v in np.unravel_index(int(np.argmax(neg)), arr.shape))
        value = float(arr[r, c])
    raise negative_values_error(src, value, f" at cell {cells[r]!r}, gene {genes[c]!r}")


# --------------------------------------------------------------------------------------------
# Keys written into an AnnData: never replace a user's data silently

#: ``adata.uns[RECORD]["written_keys"]`` lists, per slot, the keys ecorecover wrote.
RECORD = "ecorecover"


def _written(adata: Any) -> dict[str, set[str]]:
    rec = adata.uns.get(RECORD) if hasattr(adata.uns, "get") else None
    keys = rec.get("written_keys") if isinstance(rec, dict) else None
    if not isinstance(keys, dict):
        return {}
    return {str(s): {str(k) for k in np.atleast_1d(np.asarray(v, dtype=object))} for s, v in keys.items()}


def check_writable(adata: Any, targets: list[tuple[str, str]], *, overwrite: bool, category: type[Warning],
                   key_arg: str = "key_added") -> None:
    """Refuse (before any work) to replace a user's ``adata.<slot>[key]`` for ``(slot, key)`` in
    ``targets``: keys an earlier ecorecover call wrote (recorded in ``uns["ecorecover"]``) are
    replaced with a warning; any other existing key needs ``overwrite=True``."""
    written = _written(adata)
    if RECORD in adata.uns and not isinstance(adata.uns[RECORD], dict) and not overwrite:
        raise ValueError(f"adata.uns[{RECORD!r}] exists and was not written by ecorecover; pass overwrite=True to replace it")
    taken: list[str] = []
    replaced: list[str] = []
    for slot, key in targets:
        container = getattr(adata, slot)
        if key not in container:
            continue
        (replaced if key in written.get(slot, set()) else taken).append(f"adata.{slot}[{key!r}]")
    if taken and not overwrite:
        raise ValueError(
            f"{', '.join(taken)} already exist(s) and {'was' if len(taken) == 1 else 'were'} not written by "
            f"ecorecover (it may hold your labels); choose another {key_arg}=, or pass overwrite=True to replace it"
        )
    if replaced:
        warn(f"replacing {', '.join(replaced)}, written by an earlier ecorecover call", category)


def record_written(adata: Any, targets: list[tuple[str, str]]) -> None:
    """Add ``targets`` to ``adata.uns["ecorecover"]["written_keys"]``."""
    written = _written(adata)
    for slot, key in targets:
        written.setdefault(slot, set()).add(key)
    rec = adata.uns.get(RECORD)
    rec = dict(rec) if isinstance(rec, dict) else {}
    rec["written_keys"] = {s: sorted(v) for s, v in written.items()}
    adata.uns[RECORD] = rec


def layer_names(adata: Any) -> list[str]:
    """The named layers of ``adata`` (anndata >= 0.12 also lists ``None``, an alias of X)."""
    return [k for k in adata.layers.keys() if k is not None]
