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
know; this one raises :class:`ModelFileError` for newer versions.
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
    """Validate one W (finite, >= 0, unique string labels) into a read-only float64 frame;
    ``owner`` names the argument in messages (``weights`` here, ``model`` in recovery)."""
    if not isinstance(w, pd.DataFrame):
        raise TypeError(
            f"{owner}[{cell_type!r}] must be a pandas DataFrame (features x SEs), got {type(w).__name__}"
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
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (HDF5, see the module docstring), atomically.

        The file is written to a temporary file in the same directory, flushed to disk and then
        renamed onto ``path``; if anything fails, the temporary file is removed and ``path`` is
        left as it was (no truncated model under the final name).
        """
        import h5py

        path = Path(path)
        directory = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise IsADirectoryError(f"cannot save the model to {path}: it is a directory; give a file name")
        if not directory.is_dir():
            raise FileNotFoundError(f"cannot save the model to {path}: directory {directory} does not exist")
        # Created like open(..., "w") would (permissions follow the umask), name never in use.
        tmp = str(directory / f".{path.name}.{secrets.token_hex(8)}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            with h5py.File(tmp, "w") as f:
                self._write_group(f)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
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

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ModelFileError
            (a ``ValueError``) ``path`` is not HDF5, is truncated or damaged, is an HDF5 file
            that is not an ecorecover model, or was written by a newer format version.
        """
        import h5py

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        if path.is_dir():
            raise ModelFileError(f"{path} is a directory, not an ecorecover model file")
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
            with h5py.File(path, "r") as f:
                return cls._read_group(f, path, "/")
        except ModelFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ModelFileError(f"{path} is damaged or truncated (cannot read it as a model file: {exc})") from None

    @classmethod
    def _read_group(cls, g: Any, path: Path, where: str) -> RecoveryModel:
        fmt = g.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt != FORMAT:
            raise ModelFileError(
                f"{path} is an HDF5 file but not an ecorecover model (group {where!r} has "
                f"format attribute {fmt!r}, expected {FORMAT!r})"
            )
        version = g.attrs.get("format_version")
        if version is None or not np.issubdtype(np.asarray(version).dtype, np.integer):
            raise ModelFileError(f"{path}: group {where!r} has no valid integer format_version ({version!r})")
        if int(version) > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} has model format_version {int(version)}, newer than the {FORMAT_VERSION} this "
                f"ecorecover {_package_version()} reads (written by ecorecover "
                f"{g.attrs.get('ecorecover_version', '?')}); upgrade ecorecover to load it"
            )
        if int(version) < 1:
            raise ModelFileError(f"{path}: group {where!r} has invalid format_version {int(version)}")
        params = json.loads(g.attrs["params"])
        source = g.attrs.get("source")
        cell_types = [str(x) for x in g["cell_types"].asstr()[()]]
        weights: dict[str, pd.DataFrame] = {}
        for i, ct in enumerate(cell_types):
            sub = g["weights"][str(i)]
            if sub.attrs["cell_type"] != ct:
                raise ModelFileError(
                    f"{path}: {where}weights/{i} holds cell type {sub.attrs['cell_type']!r}, "
                    f"but cell_types[{i}] is {ct!r}"
                )
            w = np.asarray(sub["W"][()], dtype=np.float64)
            features = [str(x) for x in sub["features"].asstr()[()]]
            ses = [str(x) for x in sub["se_names"].asstr()[()]]
            if w.shape != (len(features), len(ses)):
                raise ModelFileError(
                    f"{path}: {where}weights/{i} ({ct!r}) has W of shape {w.shape} but "
                    f"{len(features)} features and {len(ses)} SE names"
                )
            weights[ct] = pd.DataFrame(w, index=features, columns=ses)
        n_runs = len(g["runs"]) if "runs" in g else 0
        runs = [cls._read_group(g["runs"][str(r)], path, f"{where}runs/{r}/") for r in range(n_runs)]
        try:
            return cls(weights, params=params, runs=runs, source=None if source is None else str(source))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid model content in group {where!r}: {exc}") from None


def load_model(path: str | os.PathLike) -> RecoveryModel:
    """Load a model saved with :meth:`RecoveryModel.save` (see :meth:`RecoveryModel.load`)."""
    return RecoveryModel.load(path)

