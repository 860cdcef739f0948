"""The recovery model: one W matrix (features x SEs) per cell type, checked and read-only.

:class:`RecoveryModel` holds the W matrices (in R's order, bit-exact), the training parameters
and the per-run models of an ensemble. Its file format (HDF5) is written by
:mod:`ecorecover._model_file` and read, as untrusted input, by :mod:`ecorecover._model_reader`;
:func:`load_model` / :meth:`RecoveryModel.load` raise :class:`ModelFileError` for anything that is
not a readable model file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._model_file import FORMAT, FORMAT_VERSION, package_version, save_atomically, write_group
from ._model_reader import read_model
from ._naming import model_genes
from ._params import validate_params
from .errors import (
    InputDataError,
    ModelFileError,
    NegativeValueError,
    NonFiniteValueError,
    ParameterTypeError,
    ShapeError,
)

__all__ = ["RecoveryModel", "ModelFileError", "load_model", "FORMAT", "FORMAT_VERSION"]


def _check_labels(labels: pd.Index, what: str, cell_type: str, owner: str = "weights", coerce: bool = False) -> list[str]:
    out = [str(x) for x in labels] if coerce else list(labels)
    bad = [x for x in out if not isinstance(x, str)]
    if bad:
        raise ParameterTypeError(
            f"{owner}[{cell_type!r}]: {what} must be strings, got {type(bad[0]).__name__} {bad[0]!r}"
        )
    if len(set(out)) != len(out):
        dup = pd.Index(out)[pd.Index(out).duplicated()].unique().tolist()
        raise InputDataError(f"{owner}[{cell_type!r}]: duplicated {what}: {dup[:10]}")
    return out


def _as_weight_frame(cell_type: str, w: Any, owner: str = "weights", coerce_labels: bool = False) -> pd.DataFrame:
    """Validate one W (not empty, finite, >= 0, unique string labels) into a read-only float64 frame;
    ``owner`` names the argument in messages (``weights`` here, ``model`` in recovery)."""
    if not isinstance(w, pd.DataFrame):
        raise ParameterTypeError(
            f"{owner}[{cell_type!r}] must be a pandas DataFrame (features x SEs), got {type(w).__name__}"
        )
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ShapeError(
            f"{owner}[{cell_type!r}] is empty ({w.shape[0]} features x {w.shape[1]} SEs); a W needs at least one "
            "feature and one SE"
        )
    features = _check_labels(w.index, "feature names (index)", cell_type, owner, coerce_labels)
    ses = _check_labels(w.columns, "SE names (columns)", cell_type, owner, coerce_labels)
    try:
        values = np.array(w.to_numpy(dtype=np.float64), dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise ParameterTypeError(f"{owner}[{cell_type!r}] must hold numbers: {exc}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise NonFiniteValueError(
            f"{owner}[{cell_type!r}] holds {int(bad.sum())} non-finite value(s), first at "
            f"feature {features[i]!r}, SE {ses[j]!r}: {float(values[i, j])!r}"
        )
    neg = values < 0
    if neg.any():
        i, j = np.argwhere(neg)[0]
        raise NegativeValueError(
            f"{owner}[{cell_type!r}] holds {int(neg.sum())} negative value(s) (NMF weights are >= 0), "
            f"first at feature {features[i]!r}, SE {ses[j]!r}: {float(values[i, j])!r}"
        )
    values.setflags(write=False)
    return pd.DataFrame(values, index=pd.Index(features, dtype=object), columns=pd.Index(ses, dtype=object))


def _normalise_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ParameterTypeError(f"params must be a dict or None, got {type(params).__name__}")
    try:
        # JSON round trip: the in-memory params equal what a saved file gives back.
        out: dict[str, Any] = json.loads(json.dumps(dict(params)))
    except (TypeError, ValueError) as exc:
        raise ParameterTypeError(f"params must be JSON-serialisable (str keys; numbers, strings, lists, dicts): {exc}") from None
    out.setdefault("ecorecover_version", package_version())
    return out


class RecoveryModel(Mapping[str, pd.DataFrame]):
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
        params: Mapping[str, Any] | None = None,
        runs: Sequence[RecoveryModel] = (),
        source: str | None = None,
    ) -> None:
        if not isinstance(weights, Mapping):
            raise ParameterTypeError(f"weights must be a mapping cell type -> W DataFrame, got {type(weights).__name__}")
        self._weights: dict[str, pd.DataFrame] = {}
        for ct, w in weights.items():
            if not isinstance(ct, str) or not ct:
                raise ParameterTypeError(f"cell type names must be non-empty strings, got {ct!r}")
            self._weights[ct] = _as_weight_frame(ct, w)
        self._params = _normalise_params(params)
        runs = tuple(runs)
        for i, r in enumerate(runs):
            if not isinstance(r, RecoveryModel):
                raise ParameterTypeError(f"runs[{i}] must be a RecoveryModel, got {type(r).__name__}")
        self._runs: tuple[RecoveryModel, ...] = runs
        if source is not None and not isinstance(source, str):
            raise ParameterTypeError(f"source must be a string or None, got {type(source).__name__}")
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
        return model_genes(f for w in self._weights.values() for f in w.index)

    @property
    def params(self) -> dict[str, Any]:
        """Parameters (a deep copy; JSON-serialisable)."""
        out: dict[str, Any] = json.loads(json.dumps(self._params))
        return out

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
    @validate_params({"overwrite": ["boolean"]}, where="ecorecover.RecoveryModel.save()")
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the model to ``path`` (HDF5, see :mod:`ecorecover._model_file`), atomically.

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
        save_atomically(path, self._write_group, overwrite=overwrite)

    def _write_group(self, g: Any) -> None:
        write_group(g, self._weights, self._params, self._source, [run._write_group for run in self._runs])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecoveryModel:
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
        file = Path(path)

        def build(w: dict[str, pd.DataFrame], params: Any, runs: list[RecoveryModel], source: Any, where: str) -> RecoveryModel:
            return cls._from_file_parts(w, params, runs, source, file, where)

        return read_model(file, build)

    @classmethod
    def _from_file_parts(
        cls, weights: dict[str, pd.DataFrame], params: Any, runs: list[RecoveryModel], source: Any, path: Path, where: str
    ) -> RecoveryModel:
        try:
            return cls(weights, params=params, runs=runs, source=source)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid model content in group {where!r}: {exc}") from None


def load_model(path: str | os.PathLike[str]) -> RecoveryModel:
    """Load a model saved with :meth:`RecoveryModel.save` (see :meth:`RecoveryModel.load`)."""
    return RecoveryModel.load(path)

