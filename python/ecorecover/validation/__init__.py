"""Cross-validation of recovery models: R SpatialEcoTyper's ``LoocvPredict`` and ``ComputeMetrics``.

:func:`loocv` trains models on some samples and recovers the SEs of the cells of the others,
repeated with several seeds; the most frequent call per cell is its cross-validated prediction
(``obs["cvPred"]``). :func:`metrics` compares predictions with the true SEs (recall, precision,
F1/F2 per SE, per sample, averaged over samples) exactly as R's ``ComputeMetrics`` does.

Two schemes (METHOD.md section 6):

- ``"leave_one_out"`` (default): for each sample, train on all the other samples and recover the
  cells of the held-out one; every cell gets one prediction per repeat. This is what R's
  documentation describes.
- ``"train_one"``: what R's ``LoocvPredict`` 1.0.4 actually does (upstream issue 10): for each
  sample, train on that ONE sample and recover the cells of all the others; every cell gets
  (samples - 1) predictions per repeat. ``seed=1`` reproduces ``set.seed(1); LoocvPredict(...)``.

With a single sample, the cells of each cell type are split at random into two halves per repeat
(two-fold cross-validation; R's single-sample branch fails in 1.0.4).

Modules: :mod:`~ecorecover.validation.cross_validate` (:func:`loocv` as named steps),
:mod:`~ecorecover.validation.splits` (seeds, split plan, training and recovering each split),
:mod:`~ecorecover.validation.majority` (:func:`vote`), :mod:`~ecorecover.validation.agreement`
(:func:`metrics`) and :mod:`~ecorecover.validation.common` (the warning and label types).
"""

from __future__ import annotations

from .common import METRICS, Metric as Metric, MetricScheme as MetricScheme, Scheme as Scheme, ValidationWarning
from .cross_validate import loocv
from .agreement import metrics
from .majority import vote

__all__ = ["loocv", "metrics", "vote", "ValidationWarning", "METRICS"]
