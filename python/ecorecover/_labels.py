"""Labels as the user wrote them: one check, used wherever a column of labels is read.

ecorecover compares labels (cell types, SEs, samples, cell states) as text, as R does after
``as.character``. Two labels that differ as written but have the same text (``1`` and ``"1"``,
``1.0`` and ``"1.0"``, ``True`` and ``"True"``) would silently become one: they are refused.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MixedLabelTypesError", "check_label_types", "label_column"]


class MixedLabelTypesError(ValueError):
    """A label column mixes types whose texts coincide (``1`` and ``"1"``)."""


def _kind(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, numbers.Integral):
        return "int"
    if isinstance(v, numbers.Real):
        return "float"
    return "str" if isinstance(v, str) else type(v).__name__


def check_label_types(values: Any, what: str, fix: str = "make the labels one type first",
                      error: type[ValueError] = MixedLabelTypesError) -> None:
    """Raise :class:`MixedLabelTypesError` when two labels of ``values`` (a Series, Index or
    sequence; missing values are skipped) have different types and the same text. ``what``
    names the labels in the message (e.g. ``"celltype_key='CellType'"``), ``fix`` says what to do;
    ``error`` is the exception class raised (the caller's input error)."""
    if isinstance(values, (pd.Series, pd.Index)):
        if values.dtype != object and not isinstance(values.dtype, pd.CategoricalDtype):
            return  # one dtype: distinct values have distinct texts
        arr = values.to_numpy(dtype=object)
    else:
        arr = np.asarray(values, dtype=object).ravel()
    if pd.api.types.infer_dtype(arr, skipna=True) in ("string", "integer", "floating", "boolean", "empty"):
        return
    first: dict[str, tuple[str, Any]] = {}
    for v in arr:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        kind, text = _kind(v), str(v)
        seen = first.setdefault(text, (kind, v))
        if seen[0] != kind:
            raise error(
                f"{what} mixes label types: {seen[1]!r} ({seen[0]}) and {v!r} ({kind}) would both become the label "
                f"{text!r}. Labels that differ must stay distinct: {fix}"
            )


def label_column(
    obs: pd.DataFrame,
    key: str,
    what: str,
    *,
    column_error: type[Exception] = KeyError,
    error: type[ValueError] = ValueError,
    missing_hint: str = "drop or label those cells first",
) -> tuple[np.ndarray, np.ndarray]:
    """Column ``key`` of ``obs`` as text labels, and the mask of its missing values.

    Raises ``column_error`` when ``key`` is not a column (``TypeError`` when it is not a string),
    ``error`` when labels that differ as written would merge (:func:`check_label_types`) and, when
    ``missing_hint`` is not None, when a label is missing (the message ends with the hint; with
    ``missing_hint=None`` the caller handles the mask: missing values come back as None).
    """
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a column name (a string), got {type(key).__name__}")
    if key not in obs.columns:
        raise column_error(f"{what}={key!r} is not a column of the cell metadata (columns: {list(obs.columns)[:20]})")
    col = obs[key]
    missing = col.isna().to_numpy()
    if missing.any() and missing_hint is not None:
        first = obs.index[int(np.argmax(missing))]
        raise error(f"{what}={key!r} has {int(missing.sum())} missing label(s), first for cell {first!r}; {missing_hint}")
    check_label_types(col[~missing], f"{what}={key!r}",
                      f"e.g. obs[{key!r}] = obs[{key!r}].astype(str) if they are the same label", error)
    if not missing.any():
        return col.astype(str).to_numpy(dtype=object), missing
    out = col.astype(object).astype(str).to_numpy(dtype=object)
    out[missing] = None
    return out, missing
