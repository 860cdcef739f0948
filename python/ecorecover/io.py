"""Readers for R SpatialEcoTyper recovery models (.rds / .tsv) and the published MERSCOPE models.

``.rds`` files are read with the ``rdata`` package (``pip install ecorecover[rds]``); ``.tsv``
files need nothing extra and are parsed exactly (17-digit numbers round-trip).

Model files are untrusted input: a file is at most :data:`MAX_MODEL_FILE_BYTES` on disk, a
compressed one is decompressed as a stream and refused once it grows past
``max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO x its size)`` (before anything is parsed), an
``.rds`` may hold only vectors, lists and their attributes (no environments, closures, language
objects...), and every name list (list names, dimnames, row names) must match what it labels.
Problems raise :class:`ecorecover.model.ModelFileError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from ._collate import collate_sorted
from .model import ModelFileError, RecoveryModel, _as_weight_frame

__all__ = [
    "read_r_models",
    "load_published_models",
    "apply_published_postprocess",
    "PublishedModelsNotFoundError",
    "PUBLISHED_CELL_TYPES",
    "PUBLISHED_SE_RENAME",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Cell types of the published MERSCOPE models (``MERSCOPE_W_v1_<CellType>.rds`` / ``.tsv``).
PUBLISHED_CELL_TYPES: tuple[str, ...] = (
    "B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma",
)
#: R's renaming of the published SEs on its default ``RecoverSE(Ws = NULL)`` branch (METHOD.md 4.4).
PUBLISHED_SE_RENAME: dict[str, str] = dict(
    zip(
        [f"SE{i:02d}" for i in range(1, 12)],
        ["SE1", "SE2", "SE3", "SE4", "SE5", "NonSE", "SE6", "SE7", "NonSE", "SE8", "SE9"],
    )
)
_PUBLISHED_PREFIX = "MERSCOPE_W_v1_"
_NON_SE = "NonSE"

# "<anything>_W_v<digits>_<CellType>.<ext>": the published naming scheme.
_PUBLISHED_NAME = re.compile(r"^(?:.*_)?W_v\d+_(?P<ct>.+)$")
_MODEL_SUFFIXES = (".rds", ".tsv", ".tsv.gz")


class PublishedModelsNotFoundError(FileNotFoundError):
    """The published-models directory is missing or lacks some of the expected files."""


def _import_rdata() -> Any:
    try:
        import rdata
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading R .rds files needs the 'rdata' package: pip install ecorecover[rds] "
            "(or read the .tsv versions of the models instead)"
        ) from None
    return rdata


def _has_rdata() -> bool:
    try:
        import rdata  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suf in (".tsv.gz", ".tsv", ".rds"):
        if name.endswith(suf):
            return suf
    return None


def _cell_type_from_name(path: Path) -> str:
    suf = _suffix(path)
    stem = path.name[: -len(suf)] if suf else path.stem
    m = _PUBLISHED_NAME.match(stem)
    return m.group("ct") if m else stem


# -- bounded reading of untrusted files ---------------------------------------------------------
#: Largest model file read (bytes on disk).
MAX_MODEL_FILE_BYTES = 1 << 30
#: A compressed model file may always decompress to this many bytes...
MIN_DECOMPRESSED_LIMIT = 16 << 20
#: ... or to this many times its size if that is more (real models compress 1.2-3 fold).
MAX_COMPRESSION_RATIO = 64

_COMPRESSED = {b"\x1f\x8b": ("gzip", gzip.open), b"BZh": ("bzip2", bz2.open), b"\xfd7zXZ\x00": ("xz", lzma.open)}


def _compression(head: bytes) -> tuple[str, Any] | None:
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return kind
    return None


def _read_bounded(path: Path) -> bytes:
    """The (decompressed) content of a model file, refusing oversized files and decompression
    bombs before they are materialised: the stream is decompressed in 1 MiB pieces and abandoned
    as soon as it exceeds the limit."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from None
    if not path.is_file():
        raise ModelFileError(f"{path} is not a regular file")
    if size > MAX_MODEL_FILE_BYTES:
        raise ModelFileError(f"{path} is {size} bytes, more than the {MAX_MODEL_FILE_BYTES} a model file may have")
    with open(path, "rb") as fh:
        head = fh.read(8)
    kind = _compression(head)
    if kind is None:
        return path.read_bytes()
    name, opener = kind
    limit = min(MAX_MODEL_FILE_BYTES, max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO * size))
    chunks: list[bytes] = []
    total = 0
    try:
        with opener(path, "rb") as fh:
            while True:
                piece = fh.read(1 << 20)
                if not piece:
                    break
                total += len(piece)
                if total > limit:
                    raise ModelFileError(
                        f"{path}: the {size}-byte {name} stream decompresses to more than {limit} bytes "
                        f"(limit max({MIN_DECOMPRESSED_LIMIT}, {MAX_COMPRESSION_RATIO} x the file size)); refusing it "
                        "as a decompression bomb"
                    )
                chunks.append(piece)
    except ModelFileError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise ModelFileError(f"{path}: damaged {name} stream: {exc}") from None
    data = b"".join(chunks)
    if _compression(data[:8]) is not None:
        raise ModelFileError(f"{path}: compressed twice ({name} of a compressed stream); not a model file")
    return data


# -- readers for one file ---------------------------------------------------------------------
def _read_tsv(path: Path) -> pd.DataFrame:
    """A W matrix written by R (``write.table``) or pandas: features in the first column."""
    data = _read_bounded(path)
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
        row, line = first, rows.line_num
        while row is not None:
            if row and len(row) != width:
                raise ModelFileError(
                    f"{path}: ragged table: line {line} has {len(row)} fields, expected {width} "
                    f"(a feature name and {len(ses)} SE values)"
                )
            row = next(rows, None)
            line = rows.line_num
    try:
        df = pd.read_csv(
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
    coords = [getattr(obj, "coords", {}).get(d) for d in getattr(obj, "dims", ())]
    if len(coords) != 2 or any(c is None for c in coords):
        raise ModelFileError(
            f"{what}: the matrix has no row and column names (dimnames); feature and SE names are needed"
        )
    rows, cols = [str(x) for x in coords[0].values], [str(x) for x in coords[1].values]
    if (len(rows), len(cols)) != values.shape:
        raise ModelFileError(f"{what}: a {values.shape} matrix with {len(rows)} row and {len(cols)} column names")
    return pd.DataFrame(values, index=rows, columns=cols)


#: R object types a model .rds may hold: vectors, lists, strings and the pairlists / symbols of
#: their attributes (no environments, closures, promises, language objects, external pointers...).
_R_ALLOWED = ("NIL", "NILVALUE", "SYM", "LIST", "CHAR", "LGL", "INT", "REAL", "STR", "VEC")
_R_MAX_DEPTH = 32


def _r_len(obj: Any) -> int:
    v = obj.value
    if v is None:
        return 0
    return int(v.size) if isinstance(v, np.ndarray) else len(v)


def _r_attributes(obj: Any, what: str) -> dict[str, Any]:
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


def _check_r_object(obj: Any, what: str, depth: int = 0) -> None:
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
    attrs = _r_attributes(obj, what)
    for name, value in attrs.items():
        _check_r_object(value, f"{what} (attribute {name!r})", depth + 1)
    if kind == "VEC":
        for i, el in enumerate(obj.value):
            _check_r_object(el, f"{what}[[{i + 1}]]", depth + 1)
    if kind not in ("LGL", "INT", "REAL", "STR", "VEC"):
        return
    n = _r_len(obj)
    if "names" in attrs:
        names = attrs["names"]
        if names.info.type.name != "STR" or _r_len(names) != n:
            raise ModelFileError(f"{what}: has {n} elements but {_r_len(names)} names")
    classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in _r_strings(attrs["class"])] \
        if "class" in attrs else []
    if "dim" in attrs:
        dim = attrs["dim"]
        dims = [int(x) for x in np.asarray(dim.value).ravel()] if dim.info.type.name in ("INT", "REAL") else []
        if not dims or any(d < 0 for d in dims) or int(np.prod(np.array(dims, dtype=object))) != n:
            raise ModelFileError(f"{what}: dim {dims} does not match its {n} values")
        if "dimnames" in attrs:
            dn = attrs["dimnames"]
            parts = dn.value if dn.info.type.name == "VEC" else None
            if parts is None or len(parts) != len(dims):
                raise ModelFileError(f"{what}: dimnames do not match its {len(dims)} dimensions")
            for axis, (part, d) in enumerate(zip(parts, dims)):
                if part.info.type.name not in ("NIL", "NILVALUE") and _r_len(part) != d:
                    label = ("row", "column")[axis] if axis < 2 else f"dimension {axis + 1}"
                    raise ModelFileError(f"{what}: has {d} {label}s but {_r_len(part)} {label} names")
    if "data.frame" in classes and kind == "VEC":
        lengths = {_r_len(col) for col in obj.value}
        if len(lengths) > 1:
            raise ModelFileError(f"{what}: a data.frame with columns of different lengths {sorted(lengths)}")
        nrow = lengths.pop() if lengths else 0
        rn = attrs.get("row.names")
        if rn is not None:
            v = np.asarray(rn.value) if rn.info.type.name in ("INT", "REAL") else None
            # R's compact form c(NA, -n) / c(NA, n) for automatic row names
            if v is not None and v.size == 2 and rn.info.type.name == "INT" and v[0] == np.iinfo(np.int32).min:
                declared = abs(int(v[1]))
            else:
                declared = _r_len(rn)
            if declared != nrow:
                raise ModelFileError(f"{what}: a data.frame of {nrow} rows with {declared} row names")


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


def _parse_rds(rdata: Any, data: bytes) -> Any:
    """Parse decompressed .rds bytes with rdata's parsers, refusing what can make them allocate
    more than the data holds: vectors declared longer than the data (the ASCII parser allocates
    the declared length), compact sequences, and byte code (which declares a table size)."""
    budget = len(data) + 1024
    altrep = _safe_altrep_map(budget // 4)
    try:  # rdata's parser classes (private, but in the same place in rdata 0.11 to 1.x)
        from rdata.parser._ascii import ParserASCII
        from rdata.parser._xdr import ParserXDR
    except ImportError:  # pragma: no cover - another rdata layout: its own parser on the bounded data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata's "wrong extension" / "unknown file type"
            return rdata.parser.parse_data(data, expand_altrep=True, altrep_constructor_dict=altrep, extension=".rds")
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
    magic, parser_class = base
    if parser_class is None:
        raise ModelFileError(
            f"native binary R serialization (saveRDS(xdr = FALSE)) needs rdata >= 1.0, this is rdata "
            f"{getattr(rdata, '__version__', '?')}; re-save it with saveRDS's default xdr = TRUE"
        )

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


def _parse_rds_file(path: Path) -> Any:
    """Read an untrusted .rds file within the size limits and parse it with :func:`_parse_rds`;
    any problem raises :class:`ModelFileError` naming the file."""
    rdata = _import_rdata()
    data = _read_bounded(path)
    try:
        return _parse_rds(rdata, data)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot read {path} as an R .rds file: {exc}") from None
    except Exception as exc:  # rdata raises assorted errors on bad input  # noqa: BLE001
        raise ModelFileError(f"cannot read {path} as an R .rds file: {type(exc).__name__}: {exc}") from None


def _read_rds(path: Path) -> dict[str | None, pd.DataFrame]:
    """An .rds holding one W matrix (key None) or a named list of them (keys = cell types)."""
    rdata = _import_rdata()
    parsed = _parse_rds_file(path)
    top = parsed.object
    _check_r_object(top, str(path))
    if top.info.type.name == "VEC":
        attrs = _r_attributes(top, str(path))
        classes = _r_strings(attrs["class"]) if "class" in attrs else []
        if b"data.frame" not in classes and "data.frame" not in classes:
            names = [None if x is None else x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                     for x in _r_strings(attrs["names"])] if "names" in attrs else []
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


# -- public API ---------------------------------------------------------------------------------
def _directory_files(directory: Path) -> list[Path]:
    """Model files of a directory, one per cell type (.rds preferred when rdata is available)."""
    candidates = [p for p in directory.iterdir() if p.is_file() and _suffix(p)]
    published = [p for p in candidates if _PUBLISHED_NAME.match(p.name[: -len(_suffix(p))])]
    if published:  # other files (SE_CellStates.rds, marker lists...) are not models
        candidates = published
    by_ct: dict[str, dict[str, Path]] = {}
    for p in candidates:
        by_ct.setdefault(_cell_type_from_name(p), {})[_suffix(p)] = p
    order = [".rds", ".tsv", ".tsv.gz"] if _has_rdata() else [".tsv", ".tsv.gz", ".rds"]
    return [next(by_ct[ct][s] for s in order if s in by_ct[ct]) for ct in collate_sorted(by_ct)]


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


def read_r_models(path_or_paths: PathLike | Sequence[PathLike], *, source: str | None = None) -> RecoveryModel:
    """Read R SpatialEcoTyper recovery models (lists of W matrices) into a :class:`RecoveryModel`.

    Parameters
    ----------
    path_or_paths
        One of

        - a directory of per-cell-type W files: the published ``MERSCOPE_W_v1_<CellType>.rds``
          / ``.tsv`` (files not following ``..._W_v<n>_<CellType>`` are then ignored, such as
          ``SE_CellStates.rds``), or ``<CellType>.rds`` / ``.tsv`` / ``.tsv.gz``. Cell types
          are sorted as R sorts strings. When a cell type has both an ``.rds`` and a ``.tsv``,
          the ``.rds`` is read if ``rdata`` is installed, the ``.tsv`` otherwise;
        - an ``.rds`` file holding a named list of W matrices (as ``NMFGenerateWList`` returns;
          cell types = list names, in list order), or a single W matrix;
        - a ``.tsv`` / ``.tsv.gz`` file (one W; first column = feature names);
        - a list of such files, in the order given.

        The cell type of a single-matrix file is its name without extension and without a
        ``..._W_v<n>_`` prefix (``MERSCOPE_W_v1_CD8T.rds`` -> ``CD8T``).
    source
        Provenance to record; default ``"R:<path>"``.

    Returns
    -------
    RecoveryModel
        W as R stores it (features x SEs, R's row and column order, values bit-exact).
        ``params["files"]`` maps each cell type to the file it came from.

    Raises
    ------
    FileNotFoundError
        A path does not exist, or a directory holds no model files.
    ValueError
        A file cannot be parsed, a matrix has no dimnames, two files give the same cell type,
        or a W holds negative or non-finite values.
    ImportError
        An ``.rds`` file is read without the ``rdata`` package installed.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        root = Path(path_or_paths)
        if not root.exists():
            raise FileNotFoundError(f"no such file or directory: {root}")
        if root.is_dir():
            files = _directory_files(root)
            if not files:
                raise FileNotFoundError(
                    f"{root} holds no model files (expected <CellType>.rds / .tsv / .tsv.gz or "
                    f"MERSCOPE_W_v1_<CellType>.rds / .tsv); found: {sorted(p.name for p in root.iterdir())}"
                )
        else:
            files = [root]
        default_source = f"R:{root}"
    else:
        files = [Path(p) for p in path_or_paths]
        if not files:
            raise ValueError("path_or_paths is an empty list; give at least one model file")
        for p in files:
            if not p.is_file():
                raise FileNotFoundError(f"model file not found: {p}")
        default_source = "R:" + (str(files[0]) if len(files) == 1 else ", ".join(str(p) for p in files))

    weights: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    for p in files:
        suf = _suffix(p)
        if suf == ".rds":
            read = _read_rds(p)
        elif suf in (".tsv", ".tsv.gz"):
            read = {None: _read_tsv(p)}
        else:
            raise ValueError(f"{p}: unknown model file type; expected .rds, .tsv or .tsv.gz")
        for ct, w in read.items():
            ct = _cell_type_from_name(p) if ct is None else ct
            if ct in weights:
                raise ValueError(f"cell type {ct!r} is given twice: by {origin[ct]} and by {p}")
            if not ct:
                raise ModelFileError(f"{p}: gives an empty cell type name")
            try:  # checked here so that the message names the file
                weights[ct] = _as_weight_frame(ct, w, coerce_labels=True)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{p}: {exc}") from None
            origin[ct] = str(p)
    params = {"reader": "ecorecover.read_r_models", "files": origin}
    return RecoveryModel(weights, params=params, source=source or default_source)


def _read_se_cellstates(path: Path) -> list[list[str]]:
    """SE_CellStates: ``SE01_Fibroblast`` per line (.txt) or a character vector (.rds)."""
    if path.suffix == ".rds":  # untrusted like the models: bounded, vectors only
        parsed = _parse_rds_file(path)
        _check_r_object(parsed.object, str(path))
        if parsed.object.info.type.name != "STR":
            raise ModelFileError(f"{path}: expected a character vector, got an R {parsed.object.info.type.name} object")
        entries = ["NA" if x is None else x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                   for x in _r_strings(parsed.object)]
    else:
        entries = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pairs = []
    for e in entries:
        se, sep, ct = e.partition("_")
        if not sep or not se or not ct:
            raise ValueError(f"{path}: entry {e!r} is not of the form <SE>_<CellType> (e.g. SE01_Fibroblast)")
        pairs.append([se, ct])
    return pairs


def load_published_models(path: PathLike) -> RecoveryModel:
    """Load the published SpatialEcoTyper MERSCOPE models, with R's default-branch metadata.

    Parameters
    ----------
    path
        Directory holding ``MERSCOPE_W_v1_<CellType>.rds`` or ``.tsv`` for the 9 cell types
        (B, CD4T, CD8T, DC, Endothelial, Fibroblast, Macrophage, NK, Plasma) and
        ``SE_CellStates.txt`` (or ``.rds``). The models are not shipped (non-commercial
        licence); download them from the SpatialEcoTyper repository.

    Returns
    -------
    RecoveryModel
        W exactly as published (SE names SE01..SE11). What R's ``RecoverSE(Ws = NULL)`` applies
        after recovery is recorded in ``params["postprocess"]``: ``se_cellstates`` (the allowed
        ``[SE, CellType]`` pairs) and ``rename`` (SE01..SE11 -> SE1..SE9 / NonSE); apply it to
        recovery results with :func:`apply_published_postprocess`. Recovery scores and InitSE
        are the same with or without it.

    Raises
    ------
    PublishedModelsNotFoundError
        (a ``FileNotFoundError``) the directory is missing or incomplete; the message lists
        the files expected and those found.
    """
    root = Path(path)
    expected = [f"{_PUBLISHED_PREFIX}{ct}.rds|.tsv" for ct in PUBLISHED_CELL_TYPES] + ["SE_CellStates.txt|.rds"]
    if not root.is_dir():
        raise PublishedModelsNotFoundError(
            f"published models directory not found: {root}; expected it to hold: {', '.join(expected)}"
        )
    found = sorted(p.name for p in root.iterdir())
    prefer = (".rds", ".tsv") if _has_rdata() else (".tsv", ".rds")
    files: list[Path] = []
    missing: list[str] = []
    for ct in PUBLISHED_CELL_TYPES:
        hit = [root / f"{_PUBLISHED_PREFIX}{ct}{s}" for s in prefer if (root / f"{_PUBLISHED_PREFIX}{ct}{s}").is_file()]
        if hit:
            files.append(hit[0])
        else:
            missing.append(f"{_PUBLISHED_PREFIX}{ct}.rds|.tsv")
    states = [root / "SE_CellStates.txt", root / "SE_CellStates.rds"]
    states = [p for p in states if p.is_file()]
    if not states:
        missing.append("SE_CellStates.txt|.rds")
    if missing:
        raise PublishedModelsNotFoundError(
            f"incomplete published models directory {root}: missing {', '.join(missing)}. "
            f"Expected: {', '.join(expected)}. Found: {', '.join(found) if found else 'nothing'}"
        )
    if not _has_rdata():
        states = [p for p in states if p.suffix == ".txt"] or states
    pairs = _read_se_cellstates(states[0])
    model = read_r_models(files)
    unknown = [se for se in model.se_names if se not in PUBLISHED_SE_RENAME]
    if unknown:
        raise ValueError(f"{root}: the models hold SE names {unknown} outside SE01..SE11; not the published models?")
    params = model.params
    params.update(
        reader="ecorecover.load_published_models",
        published="MERSCOPE_W_v1",
        se_cellstates_file=str(states[0]),
        postprocess={"se_cellstates": pairs, "rename": dict(PUBLISHED_SE_RENAME)},
    )
    return RecoveryModel({ct: model[ct] for ct in model}, params=params, source=f"R:{root}")


def apply_published_postprocess(assignments: pd.DataFrame, model: RecoveryModel | Mapping[str, Any]) -> pd.DataFrame:
    """Apply R's default-branch post-processing of the published models to recovery results.

    R's ``RecoverSE(Ws = NULL)`` sets ``SE`` to ``"NonSE"`` for every cell whose
    ``(SE, CellType)`` pair is not in ``SE_CellStates`` (this includes cells already NonSE and
    cell types without a model), then renames the kept SEs (SE01 -> SE1, ..., SE06 -> NonSE,
    ...). ``InitSE``, ``PredScore`` and the scores are left as they are (R keeps SE01..SE11
    there).

    Parameters
    ----------
    assignments
        Recovery results with (at least) columns ``CellType`` and ``SE``.
    model
        The model from :func:`load_published_models` (or its ``params`` dict), carrying
        ``params["postprocess"]``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``assignments`` with the ``SE`` column post-processed (strings).
        :func:`ecorecover.recover` applies this itself to models from
        :func:`load_published_models`; a table it already post-processed is returned as is.
    """
    params = model.params if isinstance(model, RecoveryModel) else model
    post = params.get("postprocess") if isinstance(params, Mapping) else None
    if not isinstance(post, Mapping) or "se_cellstates" not in post or "rename" not in post:
        raise ValueError(
            "model carries no published post-processing metadata (params['postprocess'] with "
            "'se_cellstates' and 'rename'); use ecorecover.load_published_models"
        )
    missing = [c for c in ("CellType", "SE") if c not in assignments.columns]
    if missing:
        raise KeyError(f"assignments lack column(s) {missing}; expected CellType and SE as recovery returns")
    done = assignments.attrs.get("ecorecover", {}).get("params", {}).get("published_postprocess", False)
    if done:  # recover() already applied it (the model came from load_published_models)
        return assignments.copy()
    allowed = pd.MultiIndex.from_tuples([tuple(p) for p in post["se_cellstates"]])
    se = assignments["SE"].astype(object).to_numpy()
    ct = assignments["CellType"].astype(object).to_numpy()
    keep = pd.MultiIndex.from_arrays([se, ct]).isin(allowed)
    rename: Mapping[str, str] = post["rename"]
    out = assignments.copy()
    out["SE"] = np.array([rename.get(s, s) if k else _NON_SE for s, k in zip(se, keep)], dtype=object)
    return out

