"""One cell type and one seed up to R's initial W: the cells kept, the SEs and V's features.

:func:`posneg_features` is R's posneg (when anything is negative; R skips it otherwise) and the
zero-variance filter, decided from per-gene minima and maxima without building posneg (the
features' per-SE sums come from the Rust core, their columns are built only when needed);
:func:`nmf_generate_w` uses it too.
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
    """V's features over cells ``rows`` of ``z`` (R's order): posneg'ed (NaN -> 0), varying
    columns only: the gene (column of ``z``) of each feature, whether it is a ``__neg`` half,
    and its name. The cells x features matrix itself is built only on demand (:meth:`columns`):
    the per-SE means need only sums (:meth:`sums`), which the Rust core takes from ``z``."""

    z: F64
    rows: npt.NDArray[np.int64]
    gene: I64
    neg: npt.NDArray[np.bool_]
    names: list[str]

    @property
    def size(self) -> int:
        """Number of features."""
        return int(self.gene.size)

    def columns(self, idx: I64 | None = None) -> F64:
        """Features ``idx`` (all when None) as a cells x features matrix: ``max(z, 0)`` for a
        ``__pos`` feature, ``max(-z, 0)`` for a ``__neg`` one, +0.0 for zeros and NaN."""
        gene = self.gene if idx is None else self.gene[idx]
        neg = self.neg if idx is None else self.neg[idx]
        x = self.z[np.ix_(self.rows, gene)]
        np.negative(x, out=x, where=neg[None, :])
        out: F64 = np.where(x > 0.0, x, 0.0)
        return out

    def sums(self, order: npt.NDArray[np.intp], starts: I64) -> F64:
        """Sums of every feature over the groups of cells ``order[starts[a]:starts[a + 1]]``
        (groups x features), added as :func:`numpy.add.reduceat` adds the rows of
        :meth:`columns` (:func:`ecorecover._core.posneg_group_sums`)."""
        pos, neg = _core.posneg_group_sums(self.z, self.rows[order], starts)
        return np.where(self.neg, neg[:, self.gene], pos[:, self.gene])


def posneg_features(z: F64, genes: Sequence[str], rows: npt.NDArray[np.integer] | None = None) -> Features:
    """posneg of cells ``rows`` (all when None) of ``z`` (cells x genes) when anything is
    negative, NaN -> 0, and R's zero-variance filter, decided from each gene's minimum and
    maximum over those cells (posneg is monotone in ``z``: its ``__pos`` half is constant when
    ``max(z) <= 0`` or ``min(z) == max(z)``, its ``__neg`` half when ``min(z) >= 0`` or
    ``min(z) == max(z)``). Features are labelled by origin, ``__pos`` half first (R names them
    by first occurrence, which can mislabel a ``__neg`` row whose ``__pos`` twin was dropped; a
    documented divergence); without negative values R skips posneg and they are the genes."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    idx = np.arange(z.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    lo, hi = _core.column_ranges(z, idx)
    const = lo == hi
    if not bool((lo < 0).any()):
        gene = np.flatnonzero(~const).astype(np.int64)
        return Features(z, idx, gene, np.zeros(gene.size, dtype=bool), [str(genes[g]) for g in gene.tolist()])
    gp = np.flatnonzero(~(const | (hi <= 0)))  # max(z, 0) varies
    gn = np.flatnonzero(~(const | (lo >= 0)))  # max(-z, 0) varies
    gene = np.concatenate([gp, gn]).astype(np.int64)
    neg = np.concatenate([np.zeros(gp.size, dtype=bool), np.ones(gn.size, dtype=bool)])
    names = [f"{genes[g]}{POS}" for g in gp.tolist()] + [f"{genes[g]}{NEG}" for g in gn.tolist()]
    return Features(z, idx, gene, neg, names)


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
        return 0 if self.features is None else self.features.size * len(self.ses)


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
    features = posneg_features(prep.z, prep.genes, rows)  # cells in R's order
    if features.gene.size == 0:
        return Layout(cells, rng, "no feature varies over the kept cells")
    return Layout(cells, rng, "", [str(labels[i]) for i in kept], code_of_label[inverse.ravel()], features)
