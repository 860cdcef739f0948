"""One W matrix from a TSV model file (R's ``write.table`` or pandas), parsed exactly.

The first column holds the feature names, the header the SE names (R's header without a field
for the row names is accepted); 17-digit numbers round-trip. The file is read within the limits
of :mod:`ecorecover.io.bounded`; problems raise :class:`ecorecover.errors.ModelFileError`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from ..errors import ModelFileError
from .bounded import read_bounded

__all__ = ["read_tsv"]


def read_tsv(path: Path) -> pd.DataFrame:
    """A W matrix written by R (``write.table``) or pandas: features in the first column."""
    data = read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: not UTF-8 text ({exc}); expected a W matrix as TSV") from None
    rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header = next(rows, None)
    first = next(rows, None)
    if header is None:
        raise ModelFileError(f"{path} is empty, expected a W matrix (features x SEs) as TSV")
    # R's write.table(row.names = TRUE) omits the row-name column from the header.
    ses = header if first is not None and len(first) == len(header) + 1 else header[1:]
    dup = sorted({s for s in ses if ses.count(s) > 1})
    if dup:
        raise ModelFileError(f"{path}: duplicated SE column names {dup}")
    width = len(ses) + 1
    if first is not None:  # every row: a feature name and one value per SE (blank lines skipped)
        row: list[str] | None = first
        line = rows.line_num
        while row is not None:
            if row and len(row) != width:
                raise ModelFileError(
                    f"{path}: ragged table: line {line} has {len(row)} fields, expected {width} "
                    f"(a feature name and {len(ses)} SE values)"
                )
            row = next(rows, None)
            line = rows.line_num
    try:
        df: pd.DataFrame = pd.read_csv(  # type: ignore[call-overload]  # na_values keyed by column number
            io.StringIO(text), sep="\t", header=None, skiprows=1, index_col=0, float_precision="round_trip",
            dtype={0: str}, keep_default_na=False, na_values={c: ["NA", "NaN", ""] for c in range(1, len(ses) + 1)},
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ModelFileError(f"{path}: cannot parse the W matrix: {exc}") from None
    if df.shape[1] != len(ses):
        raise ModelFileError(f"{path}: the header names {len(ses)} SE columns but the rows hold {df.shape[1]}")
    df.columns = ses
    df.index.name = None
    return df
