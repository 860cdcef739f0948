"""Readers for R SpatialEcoTyper recovery models (.rds / .tsv) and the published MERSCOPE models.

``.rds`` files are read with the ``rdata`` package (``pip install ecorecover[rds]``); ``.tsv``
files need nothing extra and are parsed exactly (17-digit numbers round-trip).

Model files are untrusted input: a file is at most :data:`MAX_MODEL_FILE_BYTES` on disk, a
compressed one is decompressed as a stream and refused once it grows past
``max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO x its size)`` (before anything is parsed), an
``.rds`` may hold only vectors, lists and their attributes (no environments, closures, language
objects...), and every name list (list names, dimnames, row names) must match what it labels.
Problems raise :class:`ecorecover.errors.ModelFileError` (a ``ValueError``) naming the file.

The package's modules, one job each: :mod:`~ecorecover.io.bounded` (size limits and
decompression bombs), :mod:`~ecorecover.io.rds` (the bounded ``.rds`` parser and its checks),
:mod:`~ecorecover.io.tsv` (TSV W matrices), :mod:`~ecorecover.io.r_models`
(:func:`read_r_models`) and :mod:`~ecorecover.io.published` (the published models and R's
post-processing of their results).
"""

from __future__ import annotations

from ..errors import ModelFileError as ModelFileError
from ..model import RecoveryModel as RecoveryModel
from .bounded import (
    MAX_COMPRESSION_RATIO as MAX_COMPRESSION_RATIO,
    MAX_MODEL_FILE_BYTES as MAX_MODEL_FILE_BYTES,
    MIN_DECOMPRESSED_LIMIT as MIN_DECOMPRESSED_LIMIT,
)
from .published import (
    PUBLISHED_CELL_TYPES,
    PUBLISHED_SE_RENAME,
    PublishedModelsNotFoundError,
    apply_published_postprocess,
    load_published_models,
)
from .r_models import PathLike as PathLike, read_r_models
from .rds import check_list_names as check_list_names

__all__ = [
    "read_r_models",
    "load_published_models",
    "apply_published_postprocess",
    "PublishedModelsNotFoundError",
    "PUBLISHED_CELL_TYPES",
    "PUBLISHED_SE_RENAME",
]

