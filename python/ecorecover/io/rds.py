"""Untrusted R ``.rds`` files, parsed within bounds: W matrices, named lists of them, vectors.

``.rds`` files are read with the ``rdata`` package (``pip install ecorecover[rds]``), after
:func:`ecorecover.io.bounded.read_bounded`. The parser is bounded too: vectors declared longer
than the data, compact sequences expanding past it and byte code are refused. Before conversion,
:func:`check_r_object` allows only vectors, lists and their attributes (no environments,
closures, language objects...) and checks that every name list (list names, dimnames, row names)
matches what it labels. Problems raise :class:`ecorecover.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelFileError
from .bounded import read_bounded

__all__ = [
    "check_list_names",
    "check_r_object",
    "has_rdata",
    "import_rdata",
    "parse_rds_file",
    "r_attributes",
    "r_text",
    "read_rds",
]

#: R object types a model .rds may hold: vectors, lists, strings and the pairlists / symbols of
#: their attributes (no environments, closures, promises, language objects, external pointers...).
_R_ALLOWED = ("NIL", "NILVALUE", "SYM", "LIST", "CHAR", "LGL", "INT", "REAL", "STR", "VEC")
_R_MAX_DEPTH = 32
_R_VECTORS = ("LGL", "INT", "REAL", "STR", "VEC")


def import_rdata() -> Any:
    """The ``rdata`` module, or an ImportError naming the extra that brings it."""
    try:
        import rdata
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading R .rds files needs the 'rdata' package: pip install ecorecover[rds] "
            "(or read the .tsv versions of the models instead)"
        ) from None
    return rdata


def has_rdata() -> bool:
    """Whether ``rdata`` can be imported (then ``.rds`` models are preferred over ``.tsv``)."""
    try:
        import rdata  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


# -- checks on the parsed (not yet converted) R objects --------------------------------------------
def _r_len(obj: Any) -> int:
    v = obj.value
    if v is None:
        return 0
    return int(v.size) if isinstance(v, np.ndarray) else len(v)


def r_attributes(obj: Any, what: str) -> dict[str, Any]:
    """The attributes of a parsed R object (a tagged pairlist) as name -> RObject."""
    out: dict[str, Any] = {}
    node = obj.attributes
    while node is not None and node.info.type.name == "LIST":
        tag = node.tag
        name = tag.value.value if tag is not None and tag.info.type.name == "SYM" else None
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        out[name] = node.value[0]
        node = node.value[1]
    return out


def _r_strings(obj: Any) -> list[Any]:
    if obj.info.type.name != "STR":
        return []
    return [None if c.value is None else c.value for c in obj.value]


def r_text(obj: Any, na: str | None = None) -> list[str | None]:
    """The strings of a parsed R character vector (``na`` for R's NA; [] for another type)."""
    return [na if x is None else x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
            for x in _r_strings(obj)]


def check_r_object(obj: Any, what: str, depth: int = 0) -> None:
    """Refuse R objects a model file has no business holding, and name lists (names, dim,
    dimnames, data.frame row names) that do not match what they label, before conversion."""
    kind = obj.info.type.name
    if kind not in _R_ALLOWED:
        raise ModelFileError(
            f"{what}: holds an R object of type {kind}; a model file holds only numeric matrices, data.frames "
            "and named lists of them"
        )
    if depth > _R_MAX_DEPTH:
        raise ModelFileError(f"{what}: R objects nested more than {_R_MAX_DEPTH} deep")
    attrs = r_attributes(obj, what)
    for name, value in attrs.items():
        check_r_object(value, f"{what} (attribute {name!r})", depth + 1)
    if kind == "VEC":
        for i, el in enumerate(obj.value):
            check_r_object(el, f"{what}[[{i + 1}]]", depth + 1)
    if kind not in _R_VECTORS:
        return
    n = _r_len(obj)
    if "names" in attrs:
        names = attrs["names"]
        if names.info.type.name != "STR" or _r_len(names) != n:
            raise ModelFileError(f"{what}: has {n} elements but {_r_len(names)} names")
    classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in _r_strings(attrs["class"])] \
        if "class" in attrs else []
    if "dim" in attrs:
        _check_dims(attrs, n, what)
    if "data.frame" in classes and kind == "VEC":
        _check_data_frame(obj, attrs, what)


def _check_dims(attrs: dict[str, Any], n: int, what: str) -> None:
    """``dim`` matches the ``n`` values; each ``dimnames`` entry matches its dimension."""
    dim = attrs["dim"]
    dims = [int(x) for x in np.asarray(dim.value).ravel()] if dim.info.type.name in ("INT", "REAL") else []
    if not dims or any(d < 0 for d in dims) or int(np.prod(np.array(dims, dtype=object))) != n:
        raise ModelFileError(f"{what}: dim {dims} does not match its {n} values")
    if "dimnames" not in attrs:
        return
    dn = attrs["dimnames"]
    parts = dn.value if dn.info.type.name == "VEC" else None
    if parts is None or len(parts) != len(dims):
        raise ModelFileError(f"{what}: dimnames do not match its {len(dims)} dimensions")
    for axis, (part, d) in enumerate(zip(parts, dims)):
        if part.info.type.name not in ("NIL", "NILVALUE") and _r_len(part) != d:
            label = ("row", "column")[axis] if axis < 2 else f"dimension {axis + 1}"
            raise ModelFileError(f"{what}: has {d} {label}s but {_r_len(part)} {label} names")


def _check_data_frame(obj: Any, attrs: dict[str, Any], what: str) -> None:
    """A data.frame's columns have one length, and its row names that many entries."""
    lengths = {_r_len(col) for col in obj.value}
    if len(lengths) > 1:
        raise ModelFileError(f"{what}: a data.frame with columns of different lengths {sorted(lengths)}")
    nrow = lengths.pop() if lengths else 0
    rn = attrs.get("row.names")
    if rn is None:
        return
    v = np.asarray(rn.value) if rn.info.type.name in ("INT", "REAL") else None
    # R's compact form c(NA, -n) / c(NA, n) for automatic row names
    if v is not None and v.size == 2 and rn.info.type.name == "INT" and v[0] == np.iinfo(np.int32).min:
        declared = abs(int(v[1]))
    else:
        declared = _r_len(rn)
    if declared != nrow:
        raise ModelFileError(f"{what}: a data.frame of {nrow} rows with {declared} row names")


def check_list_names(names: Sequence[str | None], path: Any, items: str, name: str,
                     error: type[ValueError] = ModelFileError) -> None:
    """The names of an R list read from ``path`` (a list of ``items``, each named by a ``name``):
    present, none empty, none repeated; else ``error`` naming the file and the problem."""
    if not names:
        raise error(f"{path}: holds an unnamed list; a list of {items} must be named by {name}")
    blank = [i for i, n in enumerate(names) if not n]
    if blank:
        raise error(f"{path}: the list has unnamed elements (element {blank[0] + 1}); each must be named by {name}")
    dup = sorted({n for n in names if n is not None and names.count(n) > 1})
    if dup:
        raise error(f"{path}: the list names {name}(s) {dup} more than once")


# -- the bounded parser ------------------------------------------------------------------------
def _safe_altrep_map(budget: int) -> dict[bytes, Any]:
    """rdata's ALTREP constructors, with compact sequences (declared length, start, step: a few
    bytes that expand to any size) limited to ``budget`` elements."""
    from rdata.parser import DEFAULT_ALTREP_MAP

    out = dict(DEFAULT_ALTREP_MAP)
    for key in (b"compact_intseq", b"compact_realseq"):
        inner = out.get(key)
        if inner is None:  # pragma: no cover - rdata version without it
            continue

        def checked(state: Any, _inner: Any = inner, _key: bytes = key) -> Any:
            n = int(np.asarray(state.value).ravel()[0])
            if not 0 <= n <= budget:
                raise ModelFileError(f"a {_key.decode()} sequence declares {n} elements (at most {budget} here)")
            return _inner(state)

        out[key] = checked
    return out


def _parser_for(rdata: Any, data: bytes) -> tuple[bytes, Any] | None:
    """(header, rdata parser class) for the serialization format of ``data``; None when rdata's
    parser classes are not where rdata 0.11 to 1.x keep them."""
    try:  # rdata's parser classes (private, but in the same place in rdata 0.11 to 1.x)
        from rdata.parser._ascii import ParserASCII
        from rdata.parser._xdr import ParserXDR
    except ImportError:  # pragma: no cover - another rdata layout
        return None
    try:
        from rdata.parser._binary import ParserBinary
    except ImportError:  # rdata < 1.0 (Python 3.10) reads XDR and ASCII only
        ParserBinary = None  # type: ignore[assignment, misc]
    formats = ((b"X\n", ParserXDR), (b"A\r\n", ParserASCII), (b"A\n", ParserASCII), (b"B\n", ParserBinary))
    base = next(((m, c) for m, c in formats if data.startswith(m)), None)
    if base is None:
        head = data[:5]
        if head in (b"RDX2\n", b"RDX3\n", b"RDA2\n", b"RDA3\n", b"RDB2\n", b"RDB3\n"):
            raise ModelFileError("it is an .RData file (save()), not an .rds file (saveRDS())")
        raise ModelFileError("no R serialization header")
    if base[1] is None:
        raise ModelFileError(
            f"native binary R serialization (saveRDS(xdr = FALSE)) needs rdata >= 1.0, this is rdata "
            f"{getattr(rdata, '__version__', '?')}; re-save it with saveRDS's default xdr = TRUE"
        )
    return base


def _parse_rds(rdata: Any, data: bytes) -> Any:
    """Parse decompressed .rds bytes with rdata's parsers, refusing what can make them allocate
    more than the data holds: vectors declared longer than the data (the ASCII parser allocates
    the declared length), compact sequences, and byte code (which declares a table size)."""
    budget = len(data) + 1024
    altrep = _safe_altrep_map(budget // 4)
    base = _parser_for(rdata, data)
    if base is None:  # pragma: no cover - another rdata layout: its own parser on the bounded data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata's "wrong extension" / "unknown file type"
            return rdata.parser.parse_data(data, expand_altrep=True, altrep_constructor_dict=altrep, extension=".rds")
    magic, parser_class = base

    class _Bounded(parser_class):  # type: ignore[misc, valid-type]
        def _parse_array_values(self, dtype: Any, length: int) -> Any:
            if not 0 <= length <= budget:
                raise ModelFileError(f"a vector declares {length} elements in {len(data)} bytes of data")
            values = super()._parse_array_values(dtype, length)
            if len(values) != length:  # the XDR / binary parsers read what is left
                raise ModelFileError("the R data ends in the middle of an object (truncated file?)")
            return values

        def _parse_bytecode(self, *args: Any, **kwargs: Any) -> Any:
            raise ModelFileError("it holds R byte code (compiled functions), not data")

    parser = _Bounded(memoryview(data)[len(magic):], expand_altrep=True, altrep_constructor_dict=altrep)
    parsed = parser.parse_all()
    try:
        parser.check_complete()
    except AssertionError:
        raise ModelFileError("trailing data after the R object") from None
    return parsed


def parse_rds_file(path: Path) -> Any:
    """Read an untrusted .rds file within the size limits and parse it with the bounded parser;
    any problem raises :class:`ModelFileError` naming the file."""
    rdata = import_rdata()
    data = read_bounded(path)
    try:
        return _parse_rds(rdata, data)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot read {path} as an R .rds file: {exc}") from None
    except Exception as exc:  # rdata raises assorted errors on bad input  # noqa: BLE001
        raise ModelFileError(f"cannot read {path} as an R .rds file: {type(exc).__name__}: {exc}") from None


# -- W matrices ----------------------------------------------------------------------------------
def _r_object_to_frame(obj: Any, what: str) -> pd.DataFrame:
    """Convert one rdata-converted R object (matrix with dimnames or data.frame) to a W frame."""
    if isinstance(obj, pd.DataFrame):
        if isinstance(obj.index, pd.RangeIndex):
            raise ModelFileError(f"{what}: the data.frame has no row names; the feature names are needed")
        return obj
    values = getattr(obj, "values", obj)
    values = np.asarray(values)
    if values.ndim != 2:
        raise ModelFileError(f"{what}: expected a matrix (features x SEs), got an R object of shape {values.shape}")
    coords: list[Any] = [getattr(obj, "coords", {}).get(d) for d in getattr(obj, "dims", ())]
    if len(coords) != 2 or any(c is None for c in coords):
        raise ModelFileError(
            f"{what}: the matrix has no row and column names (dimnames); feature and SE names are needed"
        )
    rows, cols = [str(x) for x in coords[0].values], [str(x) for x in coords[1].values]
    if (len(rows), len(cols)) != values.shape:
        raise ModelFileError(f"{what}: a {values.shape} matrix with {len(rows)} row and {len(cols)} column names")
    return pd.DataFrame(values, index=rows, columns=cols)


def read_rds(path: Path) -> dict[str | None, pd.DataFrame]:
    """An .rds holding one W matrix (key None) or a named list of them (keys = cell types)."""
    rdata = import_rdata()
    parsed = parse_rds_file(path)
    top = parsed.object
    check_r_object(top, str(path))
    if top.info.type.name == "VEC":
        attrs = r_attributes(top, str(path))
        classes = _r_strings(attrs["class"]) if "class" in attrs else []
        if b"data.frame" not in classes and "data.frame" not in classes:
            names = r_text(attrs["names"]) if "names" in attrs else []
            check_list_names(names, path, "W matrices", "cell type", ModelFileError)
    try:
        obj = rdata.conversion.convert(parsed)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"cannot convert the R objects of {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, Mapping):
        return {str(k): _r_object_to_frame(v, f"{path}[[{str(k)!r}]]") for k, v in obj.items()}
    if isinstance(obj, list):
        raise ModelFileError(f"{path}: holds an unnamed list; a list of W matrices must be named by cell type")
    return {None: _r_object_to_frame(obj, str(path))}
