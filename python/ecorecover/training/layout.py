"""One cell type and one seed up to R's initial W: the cells kept, the SEs and V's features.

:func:`posneg_features` is R's posneg (when anything is negative; R skips it otherwise) and the
zero-variance filter, both computed by the Rust core (:func:`ecorecover._core.posneg`,
:func:`ecorecover._core.constant_columns`); :func:`nmf_generate_w` uses it too.
:func:`layout` adds R's draws (:mod:`ecorecover.training.sampling`) and the SE membership.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .. import _core
from .._naming import NEG, POS
from ..rng import RRandom
from .plan import Prepared
from .sampling import DrawOptions, draw

__all__ = ["MIN_SE_CELLS", "Features", "Layout", "layout", "posneg_features"]

#: An SE needs more than this many of the kept cells to get a column of W (R's rule).
MIN_SE_CELLS = 2

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Features:
    """V's features: ``p`` cells x features (posneg'ed, NaN -> 0, varying columns only), the
    gene index of each feature, whether it is a ``__neg`` half, and its name."""

    p: F64
    gene: I64
    neg: npt.NDArray[np.bool_]
    names: list[str]


def posneg_features(z: F64, genes: Sequence[str]) -> Features:
    """posneg of ``z`` (cells x genes) when anything is negative, NaN -> 0, and R's zero-variance
    filter. Features are labelled by origin, ``__pos`` half first (R names them by first
    occurrence, which can mislabel a ``__neg`` row whose ``__pos`` twin was dropped; a
    documented divergence); without negative values R skips posneg and they are the genes."""
    n = z.shape[1]
    has_neg = bool((z < 0).any())
    full = _core.posneg(np.asarray(z, dtype=np.float64))  # cells x 2n: [max(z, 0) | max(-z, 0)]
    if not has_neg:
        full = full[:, :n]  # = z with NaN -> 0
    keep = np.flatnonzero(~_core.constant_columns(full)).astype(np.int64)
    gene = keep % n if n else keep
    neg = keep >= n
    if has_neg:
        names = [f"{genes[g]}{NEG if q else POS}" for g, q in zip(gene.tolist(), neg.tolist())]
    else:
        names = [str(genes[g]) for g in gene.tolist()]
    return Features(np.ascontiguousarray(full[:, keep]), gene, neg, names)


@dataclass
class Layout:
    """One cell type, one seed, up to the initial W: the cells R keeps and the features of V."""

    cells: npt.NDArray[np.intp]          # global indices of the cells used, R's order
    rng: RRandom | None                  # the generator after R's set.seed + draws (None: R drew nothing)
    reason: str = ""                     # why there is no model ("" when there is one)
    ses: list[str] = field(default_factory=list)
    codes: I64 | None = None             # SE column of each kept cell (-1: its SE was dropped)
    features: Features | None = None     # V's features over the kept cells

    @property
    def w0_size(self) -> int:
        """Uniforms R draws for this cell type's W0 (``runif(m * k)``; 0 without a model)."""
        return 0 if self.features is None else int(self.features.gene.size) * len(self.ses)


def layout(prep: Prepared, *, seed: int, draw_options: DrawOptions) -> Layout:
    """R's draws, SE membership (SEs in order of first appearance, those with more than 2 of
    the kept cells) and the posneg features for one cell type and seed."""
    rows, rng = draw(prep.block_sizes, seed, draw_options)
    cells = prep.cells[rows]
    labels, first, inverse, counts = np.unique(prep.se[rows], return_index=True, return_inverse=True, return_counts=True)
    by_first = np.argsort(first, kind="stable")  # SEs in order of first appearance
    kept = [int(i) for i in by_first if counts[i] > MIN_SE_CELLS]
    if len(kept) < 2:
        return Layout(cells, rng, f"fewer than 2 SEs with more than {MIN_SE_CELLS} of the {rows.size} cells kept")
    code_of_label = np.full(labels.size, -1, dtype=np.int64)
    code_of_label[kept] = np.arange(len(kept))
    features = posneg_features(prep.z[rows], prep.genes)  # cells in R's order x genes
    if features.gene.size == 0:
        return Layout(cells, rng, "no feature varies over the kept cells")
    return Layout(cells, rng, "", [str(labels[i]) for i in kept], code_of_label[inverse.ravel()], features)
