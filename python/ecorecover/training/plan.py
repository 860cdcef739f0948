"""Planning the training: which cell types are trained, and their seed-independent part.

:func:`trainable_cell_types` applies R's rule (at least two SEs with more than ``min_cells``
cells of the type); :func:`prepare_cell_type` does what every run of a cell type shares: gene
selection (variance, or rank sums of per-sample variances) and (per-sample) Seurat scaling. The
result, a :class:`Prepared`, is what the runs (:mod:`ecorecover.training.fit`) draw cells from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from .. import preprocessing as pp
from .._collate import collate_sorted
from ..errors import TrainingInputError
from .inputs import TrainingData
from .options import TrainOptions

__all__ = ["Prepared", "prepare_cell_type", "top_by_score", "trainable_cell_types", "variances"]

F64 = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]


@dataclass
class Prepared:
    """Seed-independent part of one cell type: genes, scaled blocks, labels."""

    cell_type: str
    genes: list[str]                 # selected genes, R's order
    z: F64                           # scaled cells x genes, blocks in sample order (C order)
    cells: Index                     # global cell index of each row of z
    se: npt.NDArray[np.str_]         # SE label of each row of z
    block_sizes: list[int]           # rows per sample block (one block without samples)
    samples: list[str] = field(default_factory=list)


def trainable_cell_types(data: TrainingData, min_cells: int) -> tuple[dict[str, Index], dict[str, str]]:
    """Cell types with at least two SEs holding more than ``min_cells`` of their cells, in R's
    (sorted) order, with their rows; and the others with the reason. Raises when none is left."""
    table = pd.crosstab(pd.Series(data.celltype, name="ct"), pd.Series(data.se, name="se"))
    n_big = (table > min_cells).sum(axis=1)
    skipped: dict[str, str] = {}
    trainable: list[str] = []
    for c in collate_sorted(data.celltype):
        if int(n_big.loc[c]) >= 2:
            trainable.append(c)
        else:
            skipped[c] = f"{int(n_big.loc[c])} SE(s) with more than min_cells={min_cells} cells (needs 2)"
    if not trainable:
        raise TrainingInputError(
            f"no cell type can be trained: each needs at least 2 SEs with more than min_cells={min_cells} "
            f"cells ({'; '.join(f'{c}: {r}' for c, r in skipped.items())})"
        )
    return {c: np.flatnonzero(data.celltype == c) for c in trainable}, skipped


def prepare_cell_type(data: TrainingData, cell_type: str, rows: Index, options: TrainOptions) -> Prepared | str:
    """Gene selection and (per-sample) scaling for one cell type; a string says why not."""
    d = _dense_rows(data.x, rows)  # cells of this type x all genes
    n_sel = min(options.n_features, d.shape[1])
    samples: list[str] = []
    if data.sample is None:
        gsel = top_by_score(variances(d), n_sel)
        blocks = [np.arange(d.shape[0])]
    else:
        ct_samples = data.sample[rows]
        samples = [s for s in collate_sorted(ct_samples) if int(np.sum(ct_samples == s)) > options.min_cells]
        if not samples:
            return f"no sample has more than min_cells={options.min_cells} cells of this type"
        blocks = [np.flatnonzero(ct_samples == s) for s in samples]
        ranks = np.zeros(d.shape[1])
        for b in blocks:
            ranks += rankdata(variances(d[b]), method="average")
        gsel = top_by_score(ranks, n_sel)
    parts = []
    for b in blocks:
        block = d[np.ix_(b, gsel)]
        parts.append(pp.scale(block, method="sparse", n_jobs=1) if options.scale else block)
    order = np.concatenate(blocks)
    z = np.ascontiguousarray(np.vstack(parts)) if len(parts) > 1 else np.ascontiguousarray(parts[0])
    return Prepared(
        cell_type=cell_type,
        genes=[data.genes[i] for i in gsel],
        z=z,
        cells=rows[order],
        se=data.se[rows][order],
        block_sizes=[len(b) for b in blocks],
        samples=samples,
    )


def top_by_score(score: F64, n: int) -> Index:
    """Indices of the ``n`` highest scores, highest first; ties keep the earlier index first."""
    order: Index = np.argsort(-score, kind="stable")
    return order[:n]


def variances(d: F64) -> F64:
    """Per-gene variance over the rows (denominator n - 1; two-pass), 0 for a single cell."""
    if d.shape[0] < 2:
        return np.zeros(d.shape[1])
    mean = d.mean(axis=0)
    c = d - mean
    out: F64 = np.einsum("ij,ij->j", c, c) / (d.shape[0] - 1)
    return out


def _dense_rows(x: Any, rows: Sequence[int] | Index) -> F64:
    if sp.issparse(x):
        return np.ascontiguousarray(x[rows].toarray())
    return np.ascontiguousarray(x[rows])
