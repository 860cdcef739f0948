"""Recovery's inputs read and checked: the expression matrix, cell ids, gene names, cell-type
labels, the models and the run options, before any work is done.

:func:`read_input` turns an AnnData (any layer, ``raw``) or R's genes x cells DataFrame into a
:class:`RecoveryInput` and one label per cell; :func:`check_model` turns a model into plain
W DataFrames. Everything here raises on bad input and reads no more of the matrix than its
names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._input_data import MatrixSource, negative_values_error, select_matrix
from .._labels import check_label_types
from .._params import Interval, StrOptions
from .._validation import resolve_threads
from .._warnings import warn
from ..errors import InputDataError, ParameterError, ParameterTypeError, RecoveryWarning, ShapeError
from ..model import _as_weight_frame
from .constants import OUTPUT_COLUMNS, Mode

__all__ = [
    "GeneNames",
    "RecoveryInput",
    "align_labels",
    "check_model",
    "check_se_names",
    "check_unique_ids",
    "label_array",
    "read_input",
    "resolve_threads",  # re-exported for ecorecover.dask
    "RUN_PARAMS",
    "RunOptions",
    "unique_names",
]

ObjArray = npt.NDArray[np.object_]


@dataclass
class RecoveryInput:
    """The matrix to read (cells x genes, or genes x cells from a DataFrame) and its names."""

    x: Any
    genes_by_cells: bool
    cell_ids: list[str]
    genes: list[str]
    adata: Any  # the AnnData, or None
    var: pd.DataFrame | None = None  # the chosen matrix's var (AnnData)
    where: str = "a genes x cells DataFrame"
    src: MatrixSource | None = None

    def negative_error(self, value: float, where: str = "") -> ValueError | None:
        """The error for negative values in an AnnData's matrix (None for a DataFrame: R's input)."""
        return None if self.src is None else negative_values_error(self.src, value, where)


class GeneNames:
    """Gene name of a kept column, for messages."""

    def __init__(self, genes: Sequence[str], kept: Sequence[int]) -> None:
        self.genes, self.kept = genes, kept

    def __getitem__(self, i: int) -> str:
        return self.genes[self.kept[i]]


#: What the run options shared by recover() and nmf_predict() accept (their ``validate_params``
#: declarations), in the order they are checked.
RUN_PARAMS: dict[str, list[Any]] = {
    "cells_per_run": [Interval(Integral, 1, None)],
    "mode": [StrOptions({"exact", "fast"})],
    "n_jobs": ["n_jobs"],
}


class RunOptions(TypedDict, total=False):
    """The types of the options recover() and nmf_predict() share (for their overloads)."""

    scale: bool
    cells_per_run: int
    mode: Mode
    n_jobs: int | None


def check_model(model: Any) -> dict[str, pd.DataFrame]:
    """cell type -> W (features x SEs) of a RecoveryModel or mapping, checked."""
    if not isinstance(model, Mapping):
        raise ParameterTypeError(
            f"model must be a RecoveryModel or a mapping cell type -> W DataFrame, got {type(model).__name__}"
        )
    if len(model) == 0:
        raise ParameterError("model holds no cell types")
    out: dict[str, pd.DataFrame] = {}
    for ct in model:
        w = model[ct]
        if not isinstance(w, pd.DataFrame):
            raise ParameterTypeError(
                f"model[{ct!r}] must be a pandas DataFrame (features x SEs, row names = features), "
                f"got {type(w).__name__}"
            )
        if w.shape[0] == 0 or w.shape[1] == 0:
            raise ShapeError(f"model[{ct!r}] is empty ({w.shape[0]} features x {w.shape[1]} SEs)")
        out[str(ct)] = _as_weight_frame(str(ct), w, owner="model", coerce_labels=True)
    return out


def check_se_names(models: Mapping[str, pd.DataFrame]) -> None:
    """SE names that are also output columns would crash or duplicate headers: refuse them first."""
    for ct, w in models.items():
        clash = [str(se) for se in w.columns if str(se) in OUTPUT_COLUMNS]
        if clash:
            raise ParameterError(
                f"model[{ct!r}] has an SE named {clash[0]!r}, which is also a column of recover()'s table "
                f"{list(OUTPUT_COLUMNS)}; rename the SE (e.g. model[{ct!r}].rename(columns={{{clash[0]!r}: "
                f"'SE_{clash[0]}'}}))"
            )


def unique_names(names: Sequence[str], what: str) -> dict[str, int]:
    """name -> first position; duplicated names warn (R keeps the first match)."""
    pos: dict[str, int] = {}
    dups: list[str] = []
    for i, nm in enumerate(names):
        if nm in pos:
            dups.append(nm)
        else:
            pos[nm] = i
    if dups:
        warn(
            f"{len(dups)} duplicated {what} (e.g. {dups[:3]}); the first occurrence of each is used",
            RecoveryWarning,
        )
    return pos


def check_unique_ids(ids: Sequence[str]) -> None:
    """Refuse duplicated cell ids."""
    idx = pd.Index(ids)
    if idx.has_duplicates:
        d = list(dict.fromkeys(idx[idx.duplicated()]))
        raise InputDataError(
            f"cell ids must be unique, found {len(d)} duplicated (e.g. {d[:3]}); "
            "call adata.obs_names_make_unique() first"
        )


def label_array(values: Any, n: int, what: str) -> ObjArray:
    """One label (str, or None when missing) per cell."""
    if isinstance(values, (pd.Series, pd.Index)):
        arr = values.to_numpy(dtype=object)
    else:
        arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ShapeError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise ShapeError(f"{what} has {len(arr)} labels but the data have {n} cells; give one cell type per cell")
    check_label_types(arr, what)
    return np.array(
        [None if (x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))) else str(x) for x in arr],
        dtype=object,
    )


def align_labels(celltypes: Any, cell_ids: list[str]) -> Any:
    """A Series indexed by the cell ids is matched by id; a Series with a default
    (0..n-1) index, or any other sequence, by position. A Series indexed by other labels is
    an error rather than a silent positional match."""
    if isinstance(celltypes, pd.Series) and len(celltypes) == len(cell_ids):
        if isinstance(celltypes.index, pd.RangeIndex) and celltypes.index.start == 0 and celltypes.index.step == 1:
            return celltypes
        idx = [str(i) for i in celltypes.index]
        if idx == cell_ids:
            return celltypes
        if set(idx) == set(cell_ids) and len(set(idx)) == len(idx):
            return celltypes.set_axis(idx).reindex(cell_ids)
        known = set(cell_ids)
        stray = next(i for i in idx if i not in known) if not set(idx) <= known else None
        raise InputDataError(
            "celltypes is a Series whose index does not match the cell ids"
            + (f" (e.g. {stray!r} is not a cell id)" if stray is not None else " (duplicated ids)")
            + "; index it by cell id, or pass a list/array to match by position"
        )
    return celltypes


def read_input(
    adata: Any, celltype_key: str, celltypes: Any, gene_symbols: str | None, layer: str | None = None,
    use_raw: bool = False,
) -> tuple[RecoveryInput, ObjArray]:
    """The input's matrix and names, and one cell-type label per cell."""
    import anndata

    if isinstance(adata, anndata.AnnData):
        return _read_anndata(adata, celltype_key, celltypes, gene_symbols, layer, use_raw)
    if layer is not None or use_raw:
        raise ParameterError("layer= and use_raw= choose a matrix of an AnnData; a DataFrame input is the matrix itself")
    if isinstance(adata, pd.DataFrame):
        return _read_frame(adata, celltypes, gene_symbols)
    raise ParameterTypeError(
        f"adata must be an AnnData (cells x genes) or a genes x cells pandas DataFrame, got {type(adata).__name__}"
    )


def _read_anndata(
    adata: Any, celltype_key: str, celltypes: Any, gene_symbols: str | None, layer: str | None, use_raw: bool,
) -> tuple[RecoveryInput, ObjArray]:
    src = select_matrix(adata, layer=layer, use_raw=use_raw)
    cell_ids = [str(c) for c in adata.obs_names]
    if gene_symbols is None:
        genes = list(src.var_names)
    else:
        if gene_symbols not in src.var.columns:
            raise KeyError(
                f"gene_symbols={gene_symbols!r} is not a column of the var of {src.where} "
                f"(columns: {list(src.var.columns)})"
            )
        genes = [str(g) for g in src.var[gene_symbols]]
    if celltypes is None:
        if celltype_key not in adata.obs.columns:
            raise KeyError(
                f"celltype_key={celltype_key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)}); pass the cell-type column's name or celltypes="
            )
        labels = label_array(adata.obs[celltype_key], adata.n_obs, f"adata.obs[{celltype_key!r}]")
    else:
        labels = label_array(align_labels(celltypes, cell_ids), adata.n_obs, "celltypes")
    return RecoveryInput(src.x, False, cell_ids, genes, adata, src.var, src.where, src), labels


def _read_frame(frame: pd.DataFrame, celltypes: Any, gene_symbols: str | None) -> tuple[RecoveryInput, ObjArray]:
    if gene_symbols is not None:
        raise ParameterError("gene_symbols names a column of adata.var; with a DataFrame input, name its rows by gene")
    if celltypes is None:
        raise ParameterError(
            "a genes x cells DataFrame needs celltypes= (one cell-type label per column), as R's RecoverSE"
        )
    cell_ids = [str(c) for c in frame.columns]
    genes = [str(g) for g in frame.index]
    labels = label_array(align_labels(celltypes, cell_ids), len(cell_ids), "celltypes")
    kinds = {d.kind for d in frame.dtypes}
    if not kinds <= set("iuf"):
        raise TypeError(f"the expression DataFrame must hold numbers only, got dtypes {sorted(set(map(str, frame.dtypes)))}")
    return RecoveryInput(frame.to_numpy(dtype=np.float64), True, cell_ids, genes, None), labels
