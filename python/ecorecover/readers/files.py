"""Shared pieces of the input readers: the error naming the file, text-table helpers.

:class:`InputFileError` (an :class:`~ecorecover.errors.InputDataError`, so a ``ValueError``)
carries the file and the problem; the helpers open (optionally gzipped) text, choose the
separator by name, read a header, and list examples of offending values.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputDataError

__all__ = ["InputFileError", "check_unique", "examples", "find", "read_header", "one_line", "open_text", "sep_for", "strip_gz"]


class InputFileError(InputDataError):
    """An input file is missing, unreadable, or does not hold what it should.

    ``path`` is the file; the message starts with it.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


def examples(values: Iterable[Any], n: int = 3) -> str:
    """The first ``n`` values, quoted, and how many there are in all."""
    vals = list(values)
    shown = ", ".join(repr(str(v)) for v in vals[:n])
    return shown + (f", ... ({len(vals)} in all)" if len(vals) > n else "")


def strip_gz(name: str) -> str:
    """``name`` without a trailing ``.gz``."""
    return name[:-3] if name.lower().endswith(".gz") else name


def open_text(path: Path) -> io.TextIOBase:
    """``path`` opened as UTF-8 text (gunzipped when its name ends in ``.gz``)."""
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def sep_for(path: Path) -> str:
    """The field separator by file name: comma for ``.csv``, tab otherwise."""
    return "," if strip_gz(path.name).lower().endswith(".csv") else "\t"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its class name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def find(d: Path, stems: Sequence[str]) -> Path | None:
    """The first file ``<stem>`` or ``<stem>.gz`` of directory ``d``, or None."""
    for stem in stems:
        for cand in (d / stem, d / (stem + ".gz")):
            if cand.is_file():
                return cand
    return None


def read_header(p: Path, sep: str) -> tuple[list[str], int]:
    """The header fields and the number of fields of the first data row."""
    with open_text(p) as fh:
        reader = csv.reader(fh, delimiter=sep)
        fields = next(reader, None)
        first = next(reader, None)
    if fields is None:
        raise InputFileError(p, "is empty")
    return fields, (len(first) if first is not None else len(fields))


def check_unique(p: Path | str, index: pd.Index, what: str) -> None:
    """Refuse repeated entries of ``index`` (naming some of them)."""
    if not index.is_unique:
        dup = index[index.duplicated()].unique()
        raise InputFileError(p, f"repeated {what}: {examples(dup)}")

