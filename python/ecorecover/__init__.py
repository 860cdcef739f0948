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

from . import nmf, preprocessing, rng  # noqa: E402

__all__ = ["__version__", "nmf", "preprocessing", "rng"]
