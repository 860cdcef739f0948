"""Writing the recovery model's file format (HDF5), atomically; the format itself.

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
array it labels before reading (see :mod:`ecorecover._model_reader`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ModelFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "package_version", "save_atomically", "write_group"]

#: Value of the root ``format`` attribute of a model file.
FORMAT = "ecorecover.RecoveryModel"
#: Highest file format version this release reads and the version it writes.
FORMAT_VERSION = 1


def package_version() -> str:
    """This package's version (the writer's version recorded in a model file)."""
    from . import __version__

    return __version__


def save_atomically(path: str | os.PathLike[str], write: Callable[[Any], None], *, overwrite: bool) -> None:
    """Write an HDF5 file with ``write(h5py_file)`` to a temporary file next to ``path``, flush it
    to disk and rename it onto ``path`` (see :meth:`ecorecover.model.RecoveryModel.save`)."""
    import h5py

    from ._atomic import check_target, replace_into, terminate_cleanly

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
                write(f)
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


def write_group(
    g: Any,
    weights: Mapping[str, pd.DataFrame],
    params: Mapping[str, Any],
    source: str | None,
    runs: Sequence[Callable[[Any], None]],
) -> None:
    """Write one model into the HDF5 group ``g`` in the layout above; ``runs`` write the
    per-run models, each into its own group ``runs/<r>``."""
    import h5py

    strings = h5py.string_dtype("utf-8")
    g.attrs["format"] = FORMAT
    g.attrs["format_version"] = FORMAT_VERSION
    g.attrs["ecorecover_version"] = package_version()
    g.attrs["params"] = json.dumps(params)
    if source is not None:
        g.attrs["source"] = source
    g.attrs["n_cell_types"] = len(weights)
    g.attrs["n_runs"] = len(runs)
    g.create_dataset("cell_types", data=np.array(list(weights), dtype=object), dtype=strings)
    group = g.create_group("weights")
    for i, (ct, w) in enumerate(weights.items()):
        sub = group.create_group(str(i))
        sub.attrs["cell_type"] = ct
        sub.create_dataset("W", data=w.to_numpy(), dtype=np.float64)
        sub.create_dataset("features", data=np.array(list(w.index), dtype=object), dtype=strings)
        sub.create_dataset("se_names", data=np.array(list(w.columns), dtype=object), dtype=strings)
    group = g.create_group("runs")
    for i, write_run in enumerate(runs):
        write_run(group.create_group(str(i)))
