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

__all__ = ["MixedLabelTypesError", "check_label_types"]


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
