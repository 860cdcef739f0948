"""R serialization (XDR, format version 3: what ``saveRDS`` writes) built by hand, so that tests can
write the .rds files they read without an .rds writer (rdata >= 1.0 needs Python >= 3.11) and can
craft files no writer would produce.

Each builder returns the bytes of one serialized R object; :func:`rds` / :func:`write_rds` add the
header (and gzip). Layout as in R's ``serialize.c``: a 32-bit flags word (type in bits 0-7, object
bit 8, has-attributes bit 9, has-tag bit 10, levels from bit 12), then the payload, then the
attributes as a tagged pairlist ending in ``NILVALUE_SXP``. Strings are ``CHARSXP`` records flagged
ASCII or UTF-8; ``None`` is ``NA_character_``.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# SEXP types (R's Rinternals.h) and serialization-only codes (serialize.c).
SYMSXP, LISTSXP, LANGSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 6, 9, 10, 13, 14, 16, 19
BCODESXP, ALTREP_SXP, NILVALUE_SXP = 21, 238, 254
_OBJECT, _ATTR, _TAG = 1 << 8, 1 << 9, 1 << 10
_UTF8, _ASCII = 1 << 3, 1 << 6  # CHARSXP levels (gp): encoding
NA_INTEGER = -(2**31)

Attributes = Sequence[tuple[str, bytes]]


def i32(*values: int) -> bytes:
    """Big-endian 32-bit integers."""
    return struct.pack(f">{len(values)}i", *values)


def flags(sexp_type: int, *, attrs: bool = False, tag: bool = False, obj: bool = False, levels: int = 0) -> int:
    """The flags word of an object of ``sexp_type``."""
    return sexp_type | (_OBJECT if obj else 0) | (_ATTR if attrs else 0) | (_TAG if tag else 0) | (levels << 12)


NIL = i32(NILVALUE_SXP)  # R's NULL, and the end of a pairlist


def charsxp(s: str | bytes | None) -> bytes:
    """One string (``None``: ``NA_character_``), flagged ASCII or UTF-8 as R flags it."""
    if s is None:
        return i32(CHARSXP, -1)
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    enc = _ASCII if all(c < 128 for c in b) else _UTF8
    return i32(flags(CHARSXP, levels=enc), len(b)) + b


def sym(name: str) -> bytes:
    """A symbol (written in full: the builders never emit references, ``REFSXP``)."""
    return i32(SYMSXP) + charsxp(name)


def attributes(pairs: Attributes) -> bytes:
    """A tagged pairlist ``name = value, ...`` (an object's attributes), ``NIL``-terminated."""
    return b"".join(i32(flags(LISTSXP, tag=True)) + sym(name) + value for name, value in pairs) + NIL


def _with_attrs(sexp_type: int, payload: bytes, attrs: Attributes | None) -> bytes:
    has_class = any(name == "class" for name, _ in attrs or ())
    return i32(flags(sexp_type, attrs=bool(attrs), obj=has_class)) + payload + (attributes(attrs) if attrs else b"")


def real(values, attrs: Attributes | None = None) -> bytes:
    """A double vector (``numeric``)."""
    v = np.asarray(values, dtype=">f8").ravel()
    return _with_attrs(REALSXP, i32(v.size) + v.tobytes(), attrs)


def integer(values, attrs: Attributes | None = None) -> bytes:
    """An integer vector (``NA_INTEGER`` is ``NA``)."""
    v = np.asarray(values, dtype=">i4").ravel()
    return _with_attrs(INTSXP, i32(v.size) + v.tobytes(), attrs)


def strings(values: Sequence[str | bytes | None], attrs: Attributes | None = None) -> bytes:
    """A character vector (``None``: ``NA``)."""
    return _with_attrs(STRSXP, i32(len(values)) + b"".join(charsxp(s) for s in values), attrs)


def vector(items: Sequence[bytes], attrs: Attributes | None = None) -> bytes:
    """A generic vector (R ``list``) of serialized objects."""
    return _with_attrs(VECSXP, i32(len(items)) + b"".join(items), attrs)


def named_list(items: Mapping[str, bytes] | Sequence[tuple[str | bytes, bytes]]) -> bytes:
    """``list(name = object, ...)``; a sequence of pairs may repeat names or leave them empty."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    return vector([obj for _, obj in pairs], [("names", strings([name for name, _ in pairs]))])


def matrix(rows: Sequence[str], cols: Sequence[str], values=None, dim: Sequence[int] | None = None) -> bytes:
    """A numeric matrix with ``dimnames`` (``values`` column-major, default all 0.25); ``dim``
    may be given to disagree with the names or values."""
    values = np.full(len(rows) * len(cols), 0.25) if values is None else values
    dim = list(dim) if dim is not None else [len(rows), len(cols)]
    return real(values, [("dim", integer(dim)), ("dimnames", vector([strings(list(rows)), strings(list(cols))]))])


def frame_matrix(w: pd.DataFrame) -> bytes:
    """A DataFrame of floats as the R matrix with the same bits and dimnames."""
    values = np.asarray(w.to_numpy(), dtype=np.float64).ravel(order="F")
    return matrix([str(x) for x in w.index], [str(x) for x in w.columns], values)


def data_frame(columns: Mapping[str, bytes], nrow: int) -> bytes:
    """``data.frame(...)`` of serialized column vectors with automatic row names, attributes in
    R's order (names, class, row.names = ``c(NA_integer_, -nrow)``)."""
    return vector(list(columns.values()), [("names", strings(list(columns))), ("class", strings(["data.frame"])),
                                           ("row.names", integer([NA_INTEGER, -nrow]))])


def rds(obj: bytes) -> bytes:
    """The uncompressed stream ``saveRDS`` writes: XDR header, version 3 (R 4.3.0, readable
    from 3.5.0), native encoding UTF-8, then the object."""
    return b"X\n" + i32(3, 0x040300, 0x030500, 5) + b"UTF-8" + obj


def write_rds(path: Path, obj: bytes, *, compress: bool = True) -> Path:
    """Write ``obj`` as an .rds file (gzip-compressed like ``saveRDS``'s default); returns ``path``."""
    data = rds(obj)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def serialized_object(path: Path) -> bytes:
    """The object bytes of an XDR .rds file R wrote (header stripped), to embed in another object.
    Valid for objects without references (``REFSXP``), e.g. plain matrices: a reference counts
    the symbols and environments written before it in the whole stream."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] != b"X\n":
        raise ValueError(f"{path}: not an XDR R serialization")
    version = struct.unpack(">i", data[2:6])[0]
    start = 14
    if version == 3:
        start += 4 + struct.unpack(">i", data[14:18])[0]
    return data[start:]
