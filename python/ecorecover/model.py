"""The recovery model: one W matrix (features x SEs) per cell type, and its file format.

File format (HDF5 via h5py, ``format_version`` 1)
-------------------------------------------------
Everything is plain arrays, strings and JSON; loading never executes code (no pickle, no eval)::

    /                      attrs: format = "ecorecover.RecoveryModel", format_version = 1,
                                  ecorecover_version (the writer's), params (JSON string),
                                  source (absent when None), n_cell_types, n_runs
    /cell_types            UTF-8 string dataset: the cell types, in the model's order
    /weights/<i>/          one group per cell type, i = 0, 1, ... in the order of /cell_types;
                           attr cell_type
        W                  float64 (n_features, n_SEs), stored bit-exactly
        features           UTF-8 strings, the rows of W in order
        se_names           UTF-8 strings, the columns of W in order
    /runs/<r>/             per-run models of an ensemble, r = 0, 1, ..., each with the same
                           layout as the root (attrs, cell_types, weights, runs)

Groups are numbered rather than named after cell types so that any cell-type name (including
``/`` or ``.``) can be stored. A reader should reject files whose ``format_version`` it does not
know; this one raises :class:`ModelFileError` for newer versions. Files are untrusted: the
reader follows no soft or external links, reads only contiguous unfiltered datasets stored in
the file, checks every declared size against the file's size and every name list against the
array it labels before reading (see :class:`_Reader`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RecoveryModel", "ModelFileError", "load_model", "FORMAT", "FORMAT_VERSION"]

#: Value of the root ``format`` attribute of a model file.
FORMAT = "ecorecover.RecoveryModel"
#: Highest file format version this release reads and the version it writes.
FORMAT_VERSION = 1

_POSNEG_SUFFIXES = ("__pos", "__neg")


class ModelFileError(ValueError):
    """A file is not a readable ecorecover model (not HDF5, truncated, foreign or too new)."""


def _package_version() -> str:
    from . import __version__

    return __version__


def _check_labels(labels: pd.Index, what: str, cell_type: str, owner: str = "weights", coerce: bool = False) -> list[str]:
    out = [str(x) for x in labels] if coerce else list(labels)
    bad = [x for x in out if not isinstance(x, str)]
    if bad:
        raise TypeError(
            f"{owner}[{cell_type!r}]: {what} must be strings, got {type(bad[0]).__name__} {bad[0]!r}"
        )
    dup = pd.Index(out)[pd.Index(out).duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{owner}[{cell_type!r}]: duplicated {what}: {dup[:10]}")
    return out


def _as_weight_frame(cell_type: str, w: Any, owner: str = "weights", coerce_labels: bool = False) -> pd.DataFrame:
    """Validate one W (not empty, finite, >= 0, unique string labels) into a read-only float64 frame;
    ``owner`` names the argument in messages (``weights`` here, ``model`` in recovery)."""
    if not isinstance(w, pd.DataFrame):
        raise TypeError(
            f"{owner}[{cell_type!r}] must be a pandas DataFrame (features x SEs), got {type(w).__name__}"
        )
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(
            f"{owner}[{cell_type!r}] is empty ({w.shape[0]} features x {w.shape[1]} SEs); a W needs at least one "
            "feature and one SE"
        )
    features = _check_labels(w.index, "feature names (index)", cell_type, owner, coerce_labels)
    ses = _check_labels(w.columns, "SE names (columns)", cell_type, owner, coerce_labels)
    try:
        values = np.array(w.to_numpy(dtype=np.float64), dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}[{cell_type!r}] must hold numbers: {exc}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{owner}[{cell_type!r}] holds {int(bad.sum())} non-finite value(s), first at "
            f"feature {features[i]!r}, SE {ses[j]!r}: {float(values[i, j])!r}"
        )
    neg = values < 0
    if neg.any():
        i, j = np.argwhere(neg)[0]
        raise ValueError(
            f"{owner}[{cell_type!r}] holds {int(neg.sum())} negative value(s) (NMF weights are >= 0), "
            f"first at feature {features[i]!r}, SE {ses[j]!r}: {float(values[i, j])!r}"
        )
    values.setflags(write=False)
    return pd.DataFrame(values, index=pd.Index(features, dtype=object), columns=pd.Index(ses, dtype=object))


def _normalise_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict or None, got {type(params).__name__}")
    try:
        # JSON round trip: the in-memory params equal what a saved file gives back.
        out = json.loads(json.dumps(dict(params)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"params must be JSON-serialisable (str keys; numbers, strings, lists, dicts): {exc}") from None
    out.setdefault("ecorecover_version", _package_version())
    return out


class RecoveryModel(Mapping):
    """Cell-type-specific SE recovery model: a read-only mapping cell type -> W.

    Parameters
    ----------
    weights
        Cell type -> W as a DataFrame: index = feature names (``"GENE__pos"`` / ``"GENE__neg"``,
        or plain gene names for R models without posneg), columns = SE names, non-negative
        finite numbers (stored as float64). The order of cell types, rows and columns is kept
        exactly as given (R's order). Index and column names (``.name``) are not kept.
    params
        JSON-serialisable parameters (training parameters, post-processing metadata...). It is
        normalised through JSON (tuples become lists) and gets ``"ecorecover_version"`` (this
        package's version) when it has none.
    runs
        Per-run models of an ensemble (empty otherwise).
    source
        Provenance, e.g. ``"ecorecover.train"`` or ``"R:/path/MERSCOPE_W_v1_B.rds"``.

    Notes
    -----
    ``model[ct]`` returns a copy, so the model cannot be changed through it. Save with
    :meth:`save`, load with :meth:`load` / :func:`load_model` (HDF5, see the module docstring).
    """

    __hash__ = None  # type: ignore[assignment]  # mutable-looking container semantics

    def __init__(
        self,
        weights: Mapping[str, pd.DataFrame],
        *,
        params: dict | None = None,
        runs: Sequence[RecoveryModel] = (),
        source: str | None = None,
    ) -> None:
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a mapping cell type -> W DataFrame, got {type(weights).__name__}")
        self._weights: dict[str, pd.DataFrame] = {}
        for ct, w in weights.items():
            if not isinstance(ct, str) or not ct:
                raise TypeError(f"cell type names must be non-empty strings, got {ct!r}")
            self._weights[ct] = _as_weight_frame(ct, w)
        self._params = _normalise_params(params)
        runs = tuple(runs)
        for i, r in enumerate(runs):
            if not isinstance(r, RecoveryModel):
                raise TypeError(f"runs[{i}] must be a RecoveryModel, got {type(r).__name__}")
        self._runs: tuple[RecoveryModel, ...] = runs
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be a string or None, got {type(source).__name__}")
        self._source = source

    # -- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, cell_type: str) -> pd.DataFrame:
        try:
            w = self._weights[cell_type]
        except KeyError:
            raise KeyError(f"cell type {cell_type!r} is not in the model (cell types: {self.cell_types})") from None
        return w.copy()

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, cell_type: object) -> bool:
        return cell_type in self._weights

    # -- properties ------------------------------------------------------------------------
    @property
    def cell_types(self) -> list[str]:
        """Cell types, in the model's order."""
        return list(self._weights)

    @property
    def se_names(self) -> list[str]:
        """Union of the SE columns over cell types, in first-seen order."""
        return list(dict.fromkeys(se for w in self._weights.values() for se in w.columns))

    @property
    def genes(self) -> list[str]:
        """Union of the gene names (``__pos`` / ``__neg`` suffix removed), in first-seen order."""
        out: dict[str, None] = {}
        for w in self._weights.values():
            for f in w.index:
                for suf in _POSNEG_SUFFIXES:
                    if f.endswith(suf):
                        f = f[: -len(suf)]
                        break
                out[f] = None
        return list(out)

    @property
    def params(self) -> dict[str, Any]:
        """Parameters (a deep copy; JSON-serialisable)."""
        return json.loads(json.dumps(self._params))

    @property
    def runs(self) -> tuple[RecoveryModel, ...]:
        """Per-run models of an ensemble (empty for a single model)."""
        return self._runs

    @property
    def source(self) -> str | None:
        """Provenance of the model (None when unknown)."""
        return self._source

    # -- comparison / display --------------------------------------------------------------
    def equals(self, other: object) -> bool:
        """Exact equality: same cell types, features, SEs (all in the same order), bit-identical
        W, same params, source and runs."""
        if not isinstance(other, RecoveryModel):
            return False
        if list(self._weights) != list(other._weights):
            return False
        for ct, w in self._weights.items():
            o = other._weights[ct]
            if list(w.index) != list(o.index) or list(w.columns) != list(o.columns):
                return False
            if not np.array_equal(w.to_numpy().view(np.uint64), o.to_numpy().view(np.uint64)):
                return False
        return (
            self._params == other._params
            and self._source == other._source
            and len(self._runs) == len(other._runs)
            and all(a.equals(b) for a, b in zip(self._runs, other._runs))
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecoveryModel):
            return NotImplemented
        return self.equals(other)

    def __repr__(self) -> str:
        ses = self.se_names
        head = f"RecoveryModel: {len(self)} cell type(s), {len(ses)} SE(s), {len(self.genes)} gene(s)"
        if self._runs:
            head += f", ensemble of {len(self._runs)} run(s)"
        lines = [head]
        if self._source:
            lines.append(f"  source: {self._source}")
        for ct, w in self._weights.items():
            lines.append(f"  {ct}: {w.shape[0]} features x {w.shape[1]} SEs")
        shown = ", ".join(ses[:20]) + (", ..." if len(ses) > 20 else "")
        lines.append(f"  SEs: {shown}")
        return "\n".join(lines)

    # -- I/O -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the model to ``path`` (HDF5, see the module docstring), atomically.

        Parameters
        ----------
        path
            The file to write (its directory must exist).
        overwrite
            Replace ``path`` if it is an existing regular file (its permission bits are kept).
            A symbolic link, device, fifo, socket or directory at ``path`` is never replaced.

        The file is written to a temporary file in the same directory, flushed to disk and then
        renamed onto ``path``; if anything fails (including SIGTERM in the main thread), the
        temporary file is removed and ``path`` is left as it was (no truncated model under the
        final name).

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is false.
        OSError
            ``path`` is not a regular file (:class:`IsADirectoryError` for a directory), its
            directory does not exist (:class:`FileNotFoundError`), or writing failed.
        """
        import h5py

        from ._atomic import check_target, replace_into, terminate_cleanly

        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
        path = Path(path)
        hint = "pass overwrite=True to replace it"
        directory = path.parent if str(path.parent) else Path(".")
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(f"cannot save the model to {path}: it is a directory; give a file name")
        if not directory.is_dir():
            raise FileNotFoundError(f"cannot save the model to {path}: directory {directory} does not exist")
        check_target(path, overwrite=overwrite, hint=hint)  # fail before writing anything
        with terminate_cleanly():
            # Created like open(..., "w") would (permissions follow the umask), name never in use.
            tmp = Path(directory / f".{path.name}.{secrets.token_hex(8)}.tmp")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                with h5py.File(tmp, "w") as f:
                    self._write_group(f)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                replace_into(tmp, path, overwrite=overwrite, hint=hint)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        with contextlib.suppress(OSError):  # make the rename durable (best effort, POSIX)
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _write_group(self, g: Any) -> None:
        import h5py

        strings = h5py.string_dtype("utf-8")
        g.attrs["format"] = FORMAT
        g.attrs["format_version"] = FORMAT_VERSION
        g.attrs["ecorecover_version"] = _package_version()
        g.attrs["params"] = json.dumps(self._params)
        if self._source is not None:
            g.attrs["source"] = self._source
        g.attrs["n_cell_types"] = len(self._weights)
        g.attrs["n_runs"] = len(self._runs)
        g.create_dataset("cell_types", data=np.array(list(self._weights), dtype=object), dtype=strings)
        weights = g.create_group("weights")
        for i, (ct, w) in enumerate(self._weights.items()):
            sub = weights.create_group(str(i))
            sub.attrs["cell_type"] = ct
            sub.create_dataset("W", data=w.to_numpy(), dtype=np.float64)
            sub.create_dataset("features", data=np.array(list(w.index), dtype=object), dtype=strings)
            sub.create_dataset("se_names", data=np.array(list(w.columns), dtype=object), dtype=strings)
        runs = g.create_group("runs")
        for i, run in enumerate(self._runs):
            run._write_group(runs.create_group(str(i)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> RecoveryModel:
        """Read a model written by :meth:`save`.

        The file is treated as untrusted: only plain datasets stored inside the file are read
        (no external storage, external or soft links, virtual, chunked or compressed datasets),
        every declared size is checked against the file's size and the name lists against the
        arrays they label before anything is read, and no code is executed (see the README's
        "Security" section).

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ModelFileError
            (a ``ValueError``) ``path`` is not HDF5, is truncated or damaged, is an HDF5 file
            that is not an ecorecover model, was written by a newer format version, or holds
            something a model file may not (links to other files, declared sizes the file
            cannot hold, names that do not match their arrays...).
        """
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
                reader = _Reader(f, path)
                return reader.model(f, "/", 0)
        except ModelFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError, MemoryError) as exc:
            raise ModelFileError(f"{path} is damaged or truncated (cannot read it as a model file: {exc})") from None

    @classmethod
    def _from_file_parts(
        cls, weights: dict[str, pd.DataFrame], params: Any, runs: list[RecoveryModel], source: Any, path: Path, where: str
    ) -> RecoveryModel:
        try:
            return cls(weights, params=params, runs=runs, source=source)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid model content in group {where!r}: {exc}") from None


# -- reading untrusted model files ----------------------------------------------------------------
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

    def __init__(self, f: Any, path: Path) -> None:
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

    def model(self, g: Any, where: str, depth: int) -> RecoveryModel:
        path = self.path
        if depth > MAX_RUN_DEPTH:
            raise self.error(f"runs nest deeper than {MAX_RUN_DEPTH} levels at {where!r} (a cycle of links?)")
        if depth == 0:
            self.charge(_GROUP_COST, "the root group")
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
                f"ecorecover {_package_version()} reads (written by ecorecover "
                f"{writer}); upgrade ecorecover to load it"
            )
        if version < 1:
            raise ModelFileError(f"{path}: group {where!r} has invalid format_version {version}")
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
        cell_types = self.names(g, "cell_types", where, n_ct, "cell types", f"n_cell_types is {n_ct}")
        dup = sorted({c for c in cell_types if cell_types.count(c) > 1}) if len(set(cell_types)) != n_ct else []
        if dup:
            raise self.error(f"{where}cell_types names cell type(s) {dup[:10]} more than once")
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
        weights: dict[str, pd.DataFrame] = {}
        for i, ct in enumerate(cell_types):
            at = f"{where}weights/{i}/"
            sub = self.member(wg, str(i), f"{where}weights/", "group")
            stored = self.attr(sub, "cell_type", at, "str")
            if stored != ct:
                raise ModelFileError(
                    f"{path}: {where}weights/{i} holds cell type {stored!r}, but cell_types[{i}] is {ct!r}"
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
            weights[ct] = pd.DataFrame(w, index=features, columns=ses)
        rg = self.member(g, "runs", where, "group", required=n_runs > 0)
        if rg is not None:
            members = sorted(rg.keys(), key=lambda k: (len(k), k))
            if members != [str(r) for r in range(n_runs)]:
                raise self.error(
                    f"{where}runs holds groups {members[:10]}{'...' if len(members) > 10 else ''} but n_runs is {n_runs}"
                )
        runs = [
            self.model(self.member(rg, str(r), f"{where}runs/", "group"), f"{where}runs/{r}/", depth + 1)
            for r in range(n_runs)
        ]
        return RecoveryModel._from_file_parts(weights, params, runs, source, path, where)


def load_model(path: str | os.PathLike) -> RecoveryModel:
    """Load a model saved with :meth:`RecoveryModel.save` (see :meth:`RecoveryModel.load`)."""
    return RecoveryModel.load(path)

