"""Training SE recovery models: R SpatialEcoTyper's ``NMFGenerateWList`` (:func:`train`) and
``NMFGenerateW`` (:func:`nmf_generate_w`), METHOD.md sections 1-3.

The pipeline, one module per step: :mod:`.options` (arguments), :mod:`.inputs` (matrix, names,
labels), :mod:`.plan` (trainable cell types, gene selection and scaling), :mod:`.sampling`
(R's balancing and downsampling draws), :mod:`.streams` (where R's random stream stands for
each initial W), :mod:`.layout` (posneg, zero-variance filter, SE membership), :mod:`.fit` (W
of one run), :mod:`.selection` (R's feature selection and near-ties), :mod:`.ensemble` (the
(run, cell type) pairs on an executor), :mod:`.assemble` (the model and its ensemble) and
:mod:`.api` (:func:`train`); :mod:`.generate_w` is :func:`nmf_generate_w`.

Speed. With a 0/1 membership H (single cells, :func:`train`), R's 420 KL W-steps converge to
the per-SE means of the posneg features (R's W differs from them by < 1e-14), so those means
are computed directly. Only cells whose SE was dropped (an SE with <= 2 cells) couple the rows
of W; then, and for fractional H (:func:`nmf_generate_w` on pseudo-bulks), the real
multiplicative updates run (:func:`ecorecover.nmf.update_w`) from R's initial W. Gene
selection and per-sample scaling do not depend on the seed, so an ensemble (``n_runs > 1``)
computes them once per cell type; only the draws and the means are repeated per run.
"""

from __future__ import annotations

from ..errors import MissingLabelWarning, SkippedCellTypeWarning, TrainingInputError
from .api import train
from .generate_w import nmf_generate_w

__all__ = ["MissingLabelWarning", "SkippedCellTypeWarning", "TrainingInputError", "nmf_generate_w", "train"]
