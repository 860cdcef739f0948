"""Reading the training input: the expression matrix, cell and gene names and the labels.

:func:`read_training_data` accepts an AnnData (cells x genes, labels in ``obs``; ``layer`` /
``use_raw`` choose the matrix as scanpy does) or a genes x cells DataFrame with a ``meta``
DataFrame, checks names, labels and values, applies R's raw-count guard and returns one
:class:`TrainingData`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from .. import preprocessing as pp
from .._input_data import check_nonnegative, select_matrix
from .._labels import label_column
from .._validation import as_float_matrix
from ..errors import MissingLabelWarning, TrainingInputError
from .options import TrainOptions
from .._warnings import warn

__all__ = ["NA_SE", "TrainingData", "read_training_data"]

#: R's label for cells without an SE (a missing SE label becomes this).
NA_SE = "nonSE"

Labels = npt.NDArray[np.str_]


@dataclass
class TrainingData:
    """The checked input: ``x`` cells x genes (CSR matrix or C-ordered array, log scale)."""

    x: Any
    cells: list[str]
    genes: list[str]
    celltype: Labels
    se: Labels
    sample: Labels | None
    raw_guard_fired: bool


def read_training_data(adata: object, meta: pd.DataFrame | None, options: TrainOptions) -> TrainingData:
    """The matrix, names and labels of the training input, checked (see module docstring)."""
    x, cells, genes, obs = _matrix_and_obs(adata, meta, options.layer, options.use_raw)
    ct = _labels(obs, options.celltype_key, "celltype_key")
    se = _labels(obs, options.se_key, "se_key", na_label=NA_SE)
    sample = _labels(obs, options.sample_key, "sample_key") if options.sample_key is not None else None
    if not cells or not genes:
        raise TrainingInputError(
            f"the expression matrix is empty ({len(cells)} cells x {len(genes)} genes); training needs cells and genes"
        )
    _check_finite(x, cells, genes)
    x, fired = pp.raw_count_guard(x, what="the training expression matrix")
    if sp.issparse(x):
        x = x.tocsr()
    return TrainingData(x, cells, genes, ct, se, sample, bool(fired))


def _labels(obs: pd.DataFrame, key: str, what: str, *, na_label: str | None = None) -> Labels:
    """Labels of column ``key`` as strings. Missing labels raise, unless ``na_label`` is given:
    then they become ``na_label`` with a :class:`MissingLabelWarning` (R's NMFGenerateWList
    maps a missing SE to ``"nonSE"``). Labels that differ as written but have the same text
    (``1`` and ``"1"``) raise rather than merge (:func:`ecorecover._labels.check_label_types`)."""
    hint = None if na_label is not None else "drop or label those cells first"
    # missing_hint=None: missing labels come back as None for the caller (label_column's docstring)
    out, missing = label_column(obs, key, what, error=TrainingInputError, missing_hint=hint)  # type: ignore[arg-type]
    if missing.any():
        warn(
            f"{what}={key!r} has {int(missing.sum())} missing label(s) (first for cell {obs.index[int(np.argmax(missing))]!r}); "
            f"they are labelled {na_label!r}, as R SpatialEcoTyper does",
            MissingLabelWarning,
        )
        out[missing] = na_label
    labels: Labels = out
    return labels


def _matrix_and_obs(
    adata: object, meta: pd.DataFrame | None, layer: str | None, use_raw: bool
) -> tuple[Any, list[str], list[str], pd.DataFrame]:
    """(X cells x genes as CSR or C-ordered ndarray, cell names, gene names, obs)."""
    if isinstance(adata, pd.DataFrame):
        if layer is not None or use_raw:
            raise TypeError("layer= and use_raw= choose a matrix of an AnnData; a DataFrame input is the matrix itself")
        return _from_dataframe(adata, meta)
    import anndata

    if not isinstance(adata, anndata.AnnData):
        raise TypeError(
            f"adata must be an AnnData (cells x genes) or a pandas DataFrame (genes x cells) with meta, "
            f"got {type(adata).__name__}"
        )
    if meta is not None:
        raise TypeError("meta is only for DataFrame input; with an AnnData the labels come from adata.obs")
    if layer is None and not use_raw and adata.X is None:
        raise TrainingInputError("adata.X is empty (None); put the log-normalised expression in X (or pass layer= / use_raw=)")
    src = select_matrix(adata, layer=layer, use_raw=use_raw)  # X, a layer or raw (scanpy's convention)
    cells = [str(c) for c in adata.obs_names]
    genes = list(src.var_names)
    _check_unique(genes, f"gene names ({'adata.raw.var_names' if use_raw else 'adata.var_names'})")
    _check_unique(cells, "cell names (adata.obs_names)")
    x = src.x
    if sp.issparse(x):
        x = as_float_matrix(x, src.where, allow_sparse=True, finite=False).tocsr()
        x.sum_duplicates()
    else:
        x = as_float_matrix(np.asarray(x), src.where, finite=False)
    check_nonnegative(src, x, cells, genes)  # scaled data (sc.pp.scale) are refused, naming raw / layers
    obs: pd.DataFrame = adata.obs
    return x, cells, genes, obs


def _from_dataframe(df: pd.DataFrame, meta: pd.DataFrame | None) -> tuple[Any, list[str], list[str], pd.DataFrame]:
    """A genes x cells DataFrame and its ``meta`` (indexed by cell id, any order)."""
    if meta is None:
        raise TypeError("a DataFrame input (genes x cells) needs meta: a DataFrame of cell metadata indexed by cell id")
    if not isinstance(meta, pd.DataFrame):
        raise TypeError(f"meta must be a pandas DataFrame indexed by cell id, got {type(meta).__name__}")
    genes = [str(g) for g in df.index]
    cells = [str(c) for c in df.columns]
    _check_unique(genes, "gene names (DataFrame index)")
    _check_unique(cells, "cell names (DataFrame columns)")
    midx = [str(c) for c in meta.index]
    _check_unique(midx, "cell ids of meta (index)")
    if len(midx) != len(cells) or set(midx) != set(cells):
        missing = [c for c in cells if c not in set(midx)]
        extra = [c for c in midx if c not in set(cells)]
        raise TrainingInputError(
            "meta rows must match the data's cells one to one: "
            f"{len(missing)} cell(s) without a meta row (e.g. {missing[:3]}), "
            f"{len(extra)} meta row(s) without a cell (e.g. {extra[:3]})"
        )
    obs = meta.copy()
    obs.index = pd.Index(midx)
    obs = obs.loc[cells]
    kinds = {d.kind for d in df.dtypes}
    if not kinds <= set("iuf"):
        bad = [str(c) for c, d in df.dtypes.items() if d.kind not in "iuf"]
        raise TypeError(
            f"the expression DataFrame must hold numbers only (integer or float columns), got dtypes "
            f"{sorted(set(map(str, df.dtypes)))}; first non-numeric column (cell): {bad[0]!r}"
        )
    try:
        x = df.to_numpy(dtype=np.float64).T
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the expression DataFrame must hold numbers: {exc}") from None
    return np.ascontiguousarray(x), cells, genes, obs


def _check_finite(x: Any, cells: Sequence[str], genes: Sequence[str]) -> None:
    """Raise naming the cell and gene of the first NaN/inf (x: cells x genes, CSR or dense)."""
    if sp.issparse(x):
        bad = ~np.isfinite(x.data)
        if not bad.any():
            return
        e = int(np.argmax(bad))
        i = int(np.searchsorted(x.indptr, e, side="right") - 1)
        j = int(x.indices[e])
        value, n_bad = x.data[e], int(bad.sum())
    else:
        bad = ~np.isfinite(x)
        if not bad.any():
            return
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(bad)), x.shape))
        value, n_bad = x[i, j], int(bad.sum())
    raise TrainingInputError(
        f"the expression matrix holds {n_bad} non-finite value(s) (NaN or inf), first at cell {cells[i]!r}, "
        f"gene {genes[j]!r}: {float(value)!r}; remove or impute them first"
    )


def _check_unique(names: list[str], what: str) -> None:
    s = pd.Index(names)
    if s.has_duplicates:
        dup = s[s.duplicated()].unique().tolist()
        raise TrainingInputError(f"duplicated {what}: {dup[:10]}")
