"""R RecoverSE's fixed rules and the names of recovery's outputs, in one place.

Every threshold here is a number R SpatialEcoTyper 1.0.4 hard-codes (METHOD.md sections 4 and
7); the other modules of :mod:`ecorecover.recovery` import them from here.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "EXPRESSED",
    "FAST_CHUNK",
    "MIN_CELLS",
    "MIN_GENES_EXPRESSED",
    "MIN_MODEL_GENES",
    "MISSING_GENES_WARN",
    "NON_SE",
    "OUTPUT_COLUMNS",
    "SCALE_MAX",
    "SEED",
    "UNSCORED_REASONS",
    "Mode",
]

#: A cell type needs at least this many cells to be scored (R's RecoverSE).
MIN_CELLS = 20
#: With ``scale=True``, a cell expressing fewer genes (of any model) than this is not scored.
MIN_GENES_EXPRESSED = 3
#: A model with fewer of its genes in the data than this gives NaN scores in R (here: unscored).
MIN_MODEL_GENES = 5
#: NMFpredict's seed for the initial H.
SEED = 39
#: Values above this count as expressed in the "< 3 genes" rule.
EXPRESSED = 1e-16
#: ScaleData's upper clip.
SCALE_MAX = 10.0
#: The SE of a cell that is not assigned one.
NON_SE = "NonSE"
#: Cells per chunk of fast mode (each cell is solved on its own; the chunk only bounds memory).
FAST_CHUNK = 4096
#: The columns recover() writes besides one per SE (an SE must not be named like them).
OUTPUT_COLUMNS = ("CellType", "InitSE", "SE", "PredScore", "scored")
#: Warn when more than this share of a model's genes is missing from the data.
MISSING_GENES_WARN = 0.10
#: Why a cell is not scored (the keys of ``uns[key_added]["unscored"]``).
UNSCORED_REASONS = ("no_model", "too_few_cells", "too_few_genes_expressed", "too_few_model_genes", "no_features")

#: ``"exact"`` reproduces R; ``"fast"`` solves each cell on its own.
Mode = Literal["exact", "fast"]
