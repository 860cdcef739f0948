"""Reading a recovery model file (HDF5) as untrusted input, within the file's own size.

Every object is reached through a hard link checked before it is opened (soft and external links
are never followed); datasets must be contiguous (or compact), unfiltered, without external
storage, of the expected dtype and rank, with an allocated storage of exactly the declared size
inside the file; every name list is checked against the array it labels. Everything read is
charged to a budget equal to the file's size. The layout is described in
:mod:`ecorecover._model_file`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ._model_file import FORMAT, FORMAT_VERSION, package_version
from .errors import ModelFileError

__all__ = ["read_model", "MAX_FEATURES", "MAX_SES", "MAX_CELL_TYPES", "MAX_RUNS", "MAX_RUN_DEPTH"]

M = TypeVar("M")
#: Builds a model from (weights, params, runs, source, where) of one group.
Build = Callable[[dict[str, pd.DataFrame], Any, list[M], Any, str], M]

#: Sanity limits of a model file (far above any real model: ~20k genes x 2, tens of SEs).
MAX_FEATURES = 5_000_000
MAX_SES = 100_000
MAX_CELL_TYPES = 100_000
MAX_RUNS = 100_000
#: Ensembles of ensembles may nest runs; deeper nesting (or a cycle of hard links) is refused.
MAX_RUN_DEPTH = 8
#: Bytes charged per group read: a real group (object header, links, attributes) takes more file
#: space than this, so a file whose hard links make a group reachable many times runs out.
_GROUP_COST = 256
#: A variable-length string in a dataset is stored as a 16-byte record: uint32 length (bytes),
#: then the global heap id (8-byte collection address, uint32 index).
_VLEN_RECORD = 16


class _Reader:
    """Reads a model file as untrusted input.

    Every object is reached through a hard link checked before it is opened (soft and external
    links are never followed); datasets must be contiguous (or compact), unfiltered, without
    external storage, of the expected dtype and rank, with an allocated storage of exactly the
    declared size inside the file. Everything read is charged to a budget equal to the file's
    size, so hard links that make one dataset reachable many times cannot multiply memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self.left = self.size

    def error(self, msg: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {msg}")

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise self.error(
                f"{what} declares {nbytes} bytes, more than the {self.size}-byte file can hold with what was "
                "read before it (a size bomb or hard links to one object); refusing to read it"
            )
        self.left -= nbytes

    def member(self, g: Any, name: str, where: str, kind: str, required: bool = True) -> Any:
        import h5py

        link = g.get(name, getlink=True)
        if link is None:
            if required:
                raise self.error(f"{where}{name} is missing")
            return None
        if isinstance(link, h5py.ExternalLink):
            raise self.error(
                f"{where}{name} is an external link to {link.filename!r}:{link.path!r}; a model file may not refer to "
                "other files"
            )
        if isinstance(link, h5py.SoftLink):
            raise self.error(f"{where}{name} is a soft link to {link.path!r}; a model file holds no links")
        if not isinstance(link, h5py.HardLink):
            raise self.error(f"{where}{name} is a link of unknown class {type(link).__name__}")
        obj = g[name]
        want = h5py.Group if kind == "group" else h5py.Dataset
        if not isinstance(obj, want):
            raise self.error(f"{where}{name} is a {type(obj).__name__}, expected a {kind}")
        if kind == "group":
            self.charge(_GROUP_COST, f"group {where}{name}")
        return obj

    def attr(self, g: Any, name: str, where: str, kind: str, required: bool = True) -> Any:
        import h5py

        if name not in g.attrs:
            if required:
                raise self.error(f"group {where!r} has no {name!r} attribute")
            return None
        aid = h5py.h5a.open(g.id, name.encode())
        if aid.shape != ():
            raise self.error(f"attribute {name!r} of {where!r} has shape {aid.shape}, expected a scalar")
        dt = aid.dtype
        if kind == "str":
            if h5py.check_string_dtype(dt) is None:
                raise self.error(f"attribute {name!r} of {where!r} has dtype {dt}, expected a string")
            value = g.attrs[name]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if dt.kind not in "iu":
            raise self.error(f"attribute {name!r} of {where!r} has dtype {dt}, expected an integer")
        return int(g.attrs[name])

    def dataset(self, g: Any, name: str, where: str, kind: str) -> Any:
        """A checked dataset: ``kind`` is ``"W"`` (2-D float64) or ``"names"`` (1-D strings)."""
        import h5py

        d = self.member(g, name, where, "dataset")
        what = f"dataset {where}{name}"
        if d.is_virtual:
            raise self.error(f"{what} is a virtual dataset (data in other files); a model file stores its data inside")
        plist = d.id.get_create_plist()
        if plist.get_external_count():
            files = [plist.get_external(i)[0] for i in range(plist.get_external_count())]
            raise self.error(
                f"{what} keeps its data in external file(s) {files}; a model file stores its data inside"
            )
        layout = plist.get_layout()
        if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
            raise self.error(
                f"{what} has a chunked or other layout ({layout}); a model file holds contiguous datasets"
            )
        if plist.get_nfilters():
            raise self.error(f"{what} is filtered (compressed); a model file holds plain datasets")
        dt = d.dtype
        if kind == "W":
            if d.ndim != 2 or dt.kind != "f" or dt.itemsize != 8:
                raise self.error(f"{what} has dtype {dt} and shape {d.shape}, expected 2-D float64")
        else:
            info = h5py.check_string_dtype(dt)
            if d.ndim != 1 or info is None:
                raise self.error(f"{what} has dtype {dt} and shape {d.shape}, expected 1-D strings")
        n = int(np.prod(d.shape, dtype=np.int64))
        vlen = kind == "names" and h5py.check_string_dtype(dt).length is None
        nbytes = n * (_VLEN_RECORD if vlen else dt.itemsize)  # vlen on disk: length + heap id
        stored = d.id.get_storage_size()
        if n and stored != nbytes:
            raise self.error(
                f"{what} declares shape {d.shape} ({nbytes} bytes) but stores {stored} bytes; refusing to read it"
            )
        offset = d.id.get_offset() if layout == h5py.h5d.CONTIGUOUS else None
        if n and layout == h5py.h5d.CONTIGUOUS and (offset is None or offset + nbytes > self.size):
            raise self.error(f"{what} declares {nbytes} bytes at offset {offset}, beyond the end of the file")
        self.charge(nbytes, what)
        return d

    def names(self, g: Any, name: str, where: str, expected: int, labels: str, why: str) -> list[str]:
        """A checked 1-D string dataset of ``expected`` entries, strings charged before reading."""
        import h5py

        d = self.dataset(g, name, where, "names")
        n = d.shape[0]
        if n != expected:
            raise self.error(f"{where}{name} holds {n} {labels}, but {why}")
        if n == 0:
            return []
        if h5py.check_string_dtype(d.dtype).length is None:  # variable length: check the declared lengths
            if d.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
                raise self.error(f"dataset {where}{name} holds variable-length strings in a compact layout")
            with open(self.path, "rb") as fh:
                fh.seek(d.id.get_offset())
                raw = fh.read(_VLEN_RECORD * n)
            if len(raw) != _VLEN_RECORD * n:
                raise self.error(f"dataset {where}{name} is truncated")
            lengths = np.frombuffer(raw, dtype="<u4")[::4].astype(np.int64)
            self.charge(int(lengths.sum()), f"the strings of {where}{name}")
        return [str(x) for x in d.asstr()[()]]

    def model(self, g: Any, where: str, depth: int, build: Build[M]) -> M:
        """The model stored in group ``g`` (``where`` names it), its runs built recursively."""
        if depth > MAX_RUN_DEPTH:
            raise self.error(f"runs nest deeper than {MAX_RUN_DEPTH} levels at {where!r} (a cycle of links?)")
        if depth == 0:
            self.charge(_GROUP_COST, "the root group")
        self.check_format(g, where)
        params, source, n_ct, n_runs = self.header(g, where)
        cell_types = self.cell_types(g, where, n_ct)
        weights = self.weights(g, where, cell_types)
        runs = self.runs(g, where, n_runs, depth, build)
        return build(weights, params, runs, source, where)

    def check_format(self, g: Any, where: str) -> None:
        """The group is an ecorecover model of a format version this release reads."""
        path = self.path
        fmt = self.attr(g, "format", where, "str", required=False) if "format" in g.attrs else None
        if fmt != FORMAT:
            raise ModelFileError(
                f"{path} is an HDF5 file but not an ecorecover model (group {where!r} has "
                f"format attribute {fmt!r}, expected {FORMAT!r})"
            )
        try:
            version = self.attr(g, "format_version", where, "int")
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: group {where!r} has no valid integer format_version ({exc})") from None
        if version > FORMAT_VERSION:
            try:
                writer = self.attr(g, "ecorecover_version", where, "str", required=False) or "?"
            except ModelFileError:
                writer = "?"
            raise ModelFileError(
                f"{path} has model format_version {version}, newer than the {FORMAT_VERSION} this "
                f"ecorecover {package_version()} reads (written by ecorecover "
                f"{writer}); upgrade ecorecover to load it"
            )
        if version < 1:
            raise ModelFileError(f"{path}: group {where!r} has invalid format_version {version}")

    def header(self, g: Any, where: str) -> tuple[Any, str | None, int, int]:
        """(params, source, number of cell types, number of runs) from the group's attributes."""
        raw_params = self.attr(g, "params", where, "str")
        self.charge(len(raw_params), f"attribute params of {where!r}")
        try:
            params = json.loads(raw_params)
        except (ValueError, RecursionError) as exc:
            raise self.error(f"attribute params of group {where!r} is not valid JSON: {exc}") from None
        source = self.attr(g, "source", where, "str", required=False)
        n_ct = self.attr(g, "n_cell_types", where, "int")
        n_runs = self.attr(g, "n_runs", where, "int")
        if not 0 <= n_ct <= MAX_CELL_TYPES:
            raise self.error(f"group {where!r} declares {n_ct} cell types (limit {MAX_CELL_TYPES})")
        if not 0 <= n_runs <= MAX_RUNS:
            raise self.error(f"group {where!r} declares {n_runs} runs (limit {MAX_RUNS})")
        return params, source, n_ct, n_runs

    def cell_types(self, g: Any, where: str, n_ct: int) -> list[str]:
        """The ``n_ct`` cell types, none repeated."""
        cell_types = self.names(g, "cell_types", where, n_ct, "cell types", f"n_cell_types is {n_ct}")
        dup = sorted({c for c in cell_types if cell_types.count(c) > 1}) if len(set(cell_types)) != n_ct else []
        if dup:
            raise self.error(f"{where}cell_types names cell type(s) {dup[:10]} more than once")
        return cell_types

    def weights(self, g: Any, where: str, cell_types: list[str]) -> dict[str, pd.DataFrame]:
        """Cell type -> W from the groups ``weights/0``, ``weights/1``, ... (exactly those)."""
        n_ct = len(cell_types)
        wg = self.member(g, "weights", where, "group")
        expected = [str(i) for i in range(n_ct)]
        members = sorted(wg.keys(), key=lambda k: (len(k), k))
        if members != expected:
            extra = [k for k in members if k not in expected][:10]
            missing = [k for k in expected if k not in members][:10]
            raise self.error(
                f"{where}weights holds groups {members[:10]}{'...' if len(members) > 10 else ''} but cell_types "
                f"lists {n_ct} cell type(s) (missing: {missing}, unexpected: {extra})"
            )
        return {ct: self.weight(wg, where, i, ct) for i, ct in enumerate(cell_types)}

    def weight(self, wg: Any, where: str, i: int, ct: str) -> pd.DataFrame:
        """The W of cell type ``ct`` in group ``weights/<i>``, with its feature and SE names."""
        at = f"{where}weights/{i}/"
        sub = self.member(wg, str(i), f"{where}weights/", "group")
        stored = self.attr(sub, "cell_type", at, "str")
        if stored != ct:
            raise ModelFileError(
                f"{self.path}: {where}weights/{i} holds cell type {stored!r}, but cell_types[{i}] is {ct!r}"
            )
        wd = self.dataset(sub, "W", at, "W")
        n_f, n_se = wd.shape
        if not (0 < n_f <= MAX_FEATURES and 0 < n_se <= MAX_SES):
            raise self.error(
                f"{at}W ({ct!r}) has shape {wd.shape}; a W needs 1..{MAX_FEATURES} features and 1..{MAX_SES} SEs"
            )
        why = f"W of cell type {ct!r} has shape {wd.shape}"
        features = self.names(sub, "features", at, n_f, "feature names", why)
        ses = self.names(sub, "se_names", at, n_se, "SE names", why)
        w = np.asarray(wd[()], dtype=np.float64)
        if w.shape != (n_f, n_se):  # pragma: no cover - h5py returns the declared shape
            raise self.error(f"{at}W read with shape {w.shape}, declared {(n_f, n_se)}")
        return pd.DataFrame(w, index=features, columns=ses)

    def runs(self, g: Any, where: str, n_runs: int, depth: int, build: Build[M]) -> list[M]:
        """The ``n_runs`` per-run models in groups ``runs/0``, ``runs/1``, ... (exactly those)."""
        rg = self.member(g, "runs", where, "group", required=n_runs > 0)
        if rg is not None:
            members = sorted(rg.keys(), key=lambda k: (len(k), k))
            if members != [str(r) for r in range(n_runs)]:
                raise self.error(
                    f"{where}runs holds groups {members[:10]}{'...' if len(members) > 10 else ''} but n_runs is {n_runs}"
                )
        return [
            self.model(self.member(rg, str(r), f"{where}runs/", "group"), f"{where}runs/{r}/", depth + 1, build)
            for r in range(n_runs)
        ]


def read_model(path: str | os.PathLike[str], build: Build[M]) -> M:
    """The model of the file at ``path``, every group turned into a model by ``build``; raises
    :class:`ModelFileError` for anything that is not a readable model file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not an ecorecover model file")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a regular file (device, fifo or socket), not an ecorecover model file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path} as a model file: {exc}") from None
    if not is_hdf5:
        raise ModelFileError(
            f"{path} is not an HDF5 file, so not an ecorecover model file (for R SpatialEcoTyper "
            "models (.rds/.tsv) use ecorecover.read_r_models)"
        )
    try:
        with h5py.File(path, "r") as f:  # default (sec2) driver, read-only
            return _Reader(path).model(f, "/", 0, build)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError, MemoryError) as exc:
        raise ModelFileError(f"{path} is damaged or truncated (cannot read it as a model file: {exc})") from None
