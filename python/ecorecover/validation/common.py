"""Names shared by the cross-validation modules: the warning, the label types, the constants."""

from __future__ import annotations

from typing import Literal

__all__ = ["METRICS", "NON_SE", "Metric", "MetricScheme", "Scheme", "ValidationWarning", "COLLATIONS"]

Scheme = Literal["leave_one_out", "train_one"]
Metric = Literal["F1", "F2", "precision", "recall"]
MetricScheme = Literal["r", "all"]
#: The metrics :func:`~ecorecover.validation.metrics` computes.
METRICS: tuple[str, ...] = ("F1", "F2", "precision", "recall")
#: R's label for cells in no SE.
NON_SE = "NonSE"
#: R's string orders: ICU (any normal locale) or byte order.
COLLATIONS = {"icu", "C"}


class ValidationWarning(UserWarning):
    """A cross-validation split could not be trained or scored, or labels are missing."""
