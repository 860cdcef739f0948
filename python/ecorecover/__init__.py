"""ecorecover: fast, R-exact spatial ecotype (SE) recovery models for single-cell data.

Train cell-type-specific NMF recovery models from annotated single-cell data
(:func:`train`, :func:`aggregate`) and recover SE-specific cell states in new data
(:func:`recover`), matching R SpatialEcoTyper's ``NMFGenerateWList`` / ``RecoverSE``
numerically where asked (``mode="exact"``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("ecorecover")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from . import errors, nmf, pl, preprocessing, rng, spatial  # noqa: E402
from ._aggregate import AggregateWarning, aggregate  # noqa: E402
from .recovery import GeneMatchError, RecoveryWarning, nmf_predict, recover  # noqa: E402
from ._versions import show_versions  # noqa: E402
from .training import SkippedCellTypeWarning, TrainingInputError, nmf_generate_w, train  # noqa: E402
from .io import apply_published_postprocess, load_published_models, read_r_models  # noqa: E402
from .deconvolution import DeconvolutionWarning, deconvolve  # noqa: E402
from .model import ModelFileError, RecoveryModel, load_model  # noqa: E402
from .validation import ValidationWarning, loocv, metrics  # noqa: E402
from .markers import MarkerWarning, marker_expression, read_r_markers  # noqa: E402
from .pseudobulk import pseudobulks  # noqa: E402
from . import dask as dask  # noqa: E402  (registers the Dask engine of recover(..., client=))

__all__ = [
    "__version__",
    "AggregateWarning",
    "DeconvolutionWarning",
    "GeneMatchError",
    "RecoveryWarning",
    "ValidationWarning",
    "ModelFileError",
    "RecoveryModel",
    "SkippedCellTypeWarning",
    "TrainingInputError",
    "aggregate",
    "deconvolve",
    "errors",
    "loocv",
    "metrics",
    "nmf_predict",
    "pl",
    "recover",
    "apply_published_postprocess",
    "load_model",
    "load_published_models",
    "nmf",
    "nmf_generate_w",
    "preprocessing",
    "read_r_models",
    "read_r_markers",
    "marker_expression",
    "MarkerWarning",
    "pseudobulks",
    "rng",
    "show_versions",
    "spatial",
    "train",
]
