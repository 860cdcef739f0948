"""Recovery of spatial ecotypes in new single-cell data (R's ``RecoverSE`` / ``NMFpredict``).

A pipeline of small steps, one module each: :mod:`.inputs` (read and check), :mod:`.matching`
(model genes against the data, scored cell types), :mod:`.source` (row blocks),
:mod:`.statistics` (per-gene statistics per block, folded in cell order), :mod:`.plan` (runs),
:mod:`.solvers` (one run, exact or fast), :mod:`.engine` (where the blocks and runs are
processed: threads here, or Dask via :mod:`ecorecover.dask`), :mod:`.assemble` (R's table and
the AnnData fields), and the entry points :mod:`.api` (:func:`recover`) and :mod:`.predict`
(:func:`nmf_predict`).
"""

from __future__ import annotations

from ..errors import GeneMatchError, RecoveryWarning
from .api import recover
from .constants import (
    EXPRESSED, MIN_CELLS, MIN_GENES_EXPRESSED, MIN_MODEL_GENES, OUTPUT_COLUMNS, Mode,
)
from .engine import Engine, ThreadEngine, make_engine, register_client_engine
from .predict import nmf_predict

__all__ = [
    "EXPRESSED",
    "MIN_CELLS",
    "MIN_GENES_EXPRESSED",
    "MIN_MODEL_GENES",
    "OUTPUT_COLUMNS",
    "Engine",
    "GeneMatchError",
    "Mode",
    "RecoveryWarning",
    "ThreadEngine",
    "make_engine",
    "nmf_predict",
    "recover",
    "register_client_engine",
]
