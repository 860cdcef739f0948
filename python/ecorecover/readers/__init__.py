"""Readers for the expression and metadata files users have.

:func:`read_expression` reads, by file name:

- ``.h5ad`` (AnnData, cells x genes) with :func:`anndata.read_h5ad`;
- 10x Genomics ``.h5`` (Cell Ranger v3 ``matrix`` group, or v2 one-group-per-genome) with h5py;
- a 10x ``matrix.mtx[.gz]`` directory (``features.tsv[.gz]`` or ``genes.tsv[.gz]``,
  ``barcodes.tsv[.gz]``) with :func:`scipy.io.mmread` (the path may name the directory or its
  ``matrix.mtx[.gz]``);
- a **genes x cells** text table ``.tsv``/``.txt``/``.csv`` (optionally ``.gz``): first column
  gene names, header row cell ids (the orientation of R's matrices and of the SpatialEcoTyper
  tutorial's files; R's ``write.table`` header without a name for the row-name column is
  accepted).

:func:`read_meta` reads a cell metadata table (``.tsv``/``.txt``/``.csv``, optionally ``.gz``;
first column cell ids). Passing ``meta=`` to :func:`read_expression` aligns it to the cells by id.

scanpy is not needed. Every problem raises :class:`InputFileError` (a ``ValueError``) whose message
names the file and the problem.

Modules: :mod:`~ecorecover.readers.expression` (formats, :func:`read_expression`),
:mod:`~ecorecover.readers.tenx` (10x files), :mod:`~ecorecover.readers.meta` (metadata tables,
:func:`align_meta`), :mod:`~ecorecover.readers.files` (the error and text helpers).
"""

from __future__ import annotations

from .expression import Format as Format, detect_format, read_expression
from .files import InputFileError
from .meta import align_meta, read_meta

__all__ = ["InputFileError", "read_expression", "read_meta", "align_meta", "detect_format"]
