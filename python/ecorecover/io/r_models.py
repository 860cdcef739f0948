"""R SpatialEcoTyper recovery models (lists of W matrices) from .rds / .tsv files or a directory.

:func:`read_r_models` finds the model files (a directory's per-cell-type files, one file, or a
list), reads each with :mod:`ecorecover.io.rds` or :mod:`ecorecover.io.tsv`, and checks every W
into a :class:`~ecorecover.model.RecoveryModel`, naming the file on any problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import pandas as pd

from .._collate import collate_sorted
from ..errors import ModelFileError, ParameterError
from ..model import RecoveryModel, _as_weight_frame
from .rds import has_rdata, read_rds
from .tsv import read_tsv

__all__ = ["read_r_models", "PathLike", "PUBLISHED_NAME", "cell_type_from_name"]

PathLike = Union[str, "os.PathLike[str]"]

#: "<anything>_W_v<digits>_<CellType>.<ext>": the published naming scheme.
PUBLISHED_NAME = re.compile(r"^(?:.*_)?W_v\d+_(?P<ct>.+)$")


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suf in (".tsv.gz", ".tsv", ".rds"):
        if name.endswith(suf):
            return suf
    return None


def cell_type_from_name(path: Path) -> str:
    """The cell type a single-matrix file names: its name without extension and without a
    ``..._W_v<n>_`` prefix (``MERSCOPE_W_v1_CD8T.rds`` -> ``CD8T``)."""
    suf = _suffix(path)
    stem = path.name[: -len(suf)] if suf else path.stem
    m = PUBLISHED_NAME.match(stem)
    return m.group("ct") if m else stem


def _directory_files(directory: Path) -> list[Path]:
    """Model files of a directory, one per cell type (.rds preferred when rdata is available)."""
    candidates = [p for p in directory.iterdir() if p.is_file() and _suffix(p)]
    published = [p for p in candidates if PUBLISHED_NAME.match(p.name[: -len(_suffix(p) or "")])]
    if published:  # other files (SE_CellStates.rds, marker lists...) are not models
        candidates = published
    by_ct: dict[str, dict[str | None, Path]] = {}
    for p in candidates:
        by_ct.setdefault(cell_type_from_name(p), {})[_suffix(p)] = p
    order = [".rds", ".tsv", ".tsv.gz"] if has_rdata() else [".tsv", ".tsv.gz", ".rds"]
    return [next(by_ct[ct][s] for s in order if s in by_ct[ct]) for ct in collate_sorted(by_ct)]


def _model_files(path_or_paths: PathLike | Sequence[PathLike]) -> tuple[list[Path], str]:
    """(the model files to read, in order; the default provenance ``"R:<path>"``)."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        root = Path(path_or_paths)
        if not root.exists():
            raise FileNotFoundError(f"no such file or directory: {root}")
        if not root.is_dir():
            return [root], f"R:{root}"
        files = _directory_files(root)
        if not files:
            raise FileNotFoundError(
                f"{root} holds no model files (expected <CellType>.rds / .tsv / .tsv.gz or "
                f"MERSCOPE_W_v1_<CellType>.rds / .tsv); found: {sorted(p.name for p in root.iterdir())}"
            )
        return files, f"R:{root}"
    files = [Path(p) for p in path_or_paths]
    if not files:
        raise ParameterError("path_or_paths is an empty list; give at least one model file")
    for p in files:
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
    return files, "R:" + (str(files[0]) if len(files) == 1 else ", ".join(str(p) for p in files))


def _read_file(p: Path) -> dict[str | None, pd.DataFrame]:
    """The W matrices of one file: cell type -> W (None: the file's name gives the cell type)."""
    suf = _suffix(p)
    if suf == ".rds":
        return read_rds(p)
    if suf in (".tsv", ".tsv.gz"):
        return {None: read_tsv(p)}
    raise ModelFileError(f"{p}: unknown model file type; expected .rds, .tsv or .tsv.gz")


def _read_weights(files: list[Path]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """(cell type -> checked W, cell type -> the file it came from) over ``files`` in order."""
    weights: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    for p in files:
        for key, w in _read_file(p).items():
            ct = cell_type_from_name(p) if key is None else key
            if ct in weights:
                raise ModelFileError(f"cell type {ct!r} is given twice: by {origin[ct]} and by {p}")
            if not ct:
                raise ModelFileError(f"{p}: gives an empty cell type name")
            try:  # checked here so that the message names the file
                weights[ct] = _as_weight_frame(ct, w, coerce_labels=True)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{p}: {exc}") from None
            origin[ct] = str(p)
    return weights, origin


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
    files, default_source = _model_files(path_or_paths)
    weights, origin = _read_weights(files)
    params = {"reader": "ecorecover.read_r_models", "files": origin}
    return RecoveryModel(weights, params=params, source=source or default_source)
