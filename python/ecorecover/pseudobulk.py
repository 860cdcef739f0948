"""Pseudo-bulk mixtures of single cells with known group fractions: R SpatialEcoTyper's
``CreatePseudobulks``, draw for draw.

The result is the training input of a bulk deconvolution model: ``fractions`` (mixtures x
groups) and ``mixtures`` (genes x mixtures, log-normalised) go straight into
:func:`ecorecover.nmf_generate_w`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from numbers import Integral
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._collate import collate_sorted
from ._params import Interval, validate_params
from ._validation import as_float_matrix
from .errors import ParameterError
from .preprocessing import _check_non_negative, _log_normalize_matrix
from .rng import RRandom

__all__ = ["pseudobulks"]

#: R draws each group's fractions from a pool of this many ``rnorm(mean = 2)`` values.
_POOL = 10_000
_SCALE_FACTOR = 1e4


def _counts_cells_by_genes(counts: Any, layer: str | None) -> tuple[Any, list[str], list[str]]:
    """Raw counts as a cells x genes float64 matrix (CSR or dense), cell ids and gene names."""
    if isinstance(counts, pd.DataFrame):  # R's orientation: genes x cells
        if layer is not None:
            raise TypeError("layer applies to AnnData input only; counts is a DataFrame (genes x cells)")
        sparse_cols = [isinstance(t, pd.SparseDtype) for t in counts.dtypes]
        if counts.shape[1] and all(sparse_cols):
            x = sp.csr_matrix(cast(Any, counts).sparse.to_coo().T)
        else:
            x = counts.to_numpy().T
        genes, cells = [str(g) for g in counts.index], [str(c) for c in counts.columns]
    elif hasattr(counts, "obs_names") and hasattr(counts, "var_names"):  # AnnData: cells x genes
        from ._input_data import select_matrix

        x = select_matrix(counts, layer=layer).x
        genes, cells = [str(g) for g in counts.var_names], [str(c) for c in counts.obs_names]
    else:
        raise TypeError(
            "counts must be an AnnData (cells x genes) or a pandas DataFrame (genes x cells), "
            f"got {type(counts).__name__}"
        )
    if len(cells) == 0 or len(genes) == 0:
        raise ValueError(f"counts is empty ({len(genes)} genes x {len(cells)} cells)")
    for names, what in ((cells, "cell ids"), (genes, "gene names")):
        if len(set(names)) != len(names):
            dup = pd.Index(names)[pd.Index(names).duplicated()][:3].tolist()
            raise ValueError(f"counts has duplicated {what}, e.g. {dup}")
    x = as_float_matrix(x, "counts", allow_sparse=True)
    _check_non_negative(x, "counts")
    return (x.tocsr() if sp.issparse(x) else x), cells, genes


def _group_labels(groups: Any, counts: Any, cells: list[str]) -> np.ndarray:
    """One label per cell (strings), from a Series indexed by cell id or an ``.obs`` column."""
    if isinstance(groups, str):
        obs = getattr(counts, "obs", None)
        if obs is None:
            raise TypeError("groups may name an .obs column only when counts is an AnnData; give a Series")
        if groups not in obs.columns:
            raise KeyError(f"groups={groups!r} is not a column of adata.obs (columns: {list(obs.columns)})")
        groups = obs[groups]
    if not isinstance(groups, pd.Series):
        raise TypeError(
            f"groups must be a pandas Series indexed by cell id (or an .obs column name), got {type(groups).__name__}"
        )
    if len(groups) == 0:
        raise ValueError("groups is empty")
    index = groups.index.astype(str)
    if index.has_duplicates:
        raise ValueError(f"groups has duplicated cell ids, e.g. {index[index.duplicated()][:3].tolist()}")
    aligned = pd.Series(groups.to_numpy(), index=index).reindex(cells)
    missing = aligned.isna().to_numpy()
    if missing.any():
        first = [c for c, m in zip(cells, missing) if m][:3]
        raise ValueError(
            f"groups has no label for {int(missing.sum())} of the {len(cells)} cells of counts (e.g. {first}); "
            "give every cell a group (cells are matched by id)"
        )
    return aligned.astype(str).to_numpy(dtype=object)


def _draw_fractions(rng: RRandom, levels: Sequence[str], n_mixtures: int) -> np.ndarray:
    """R: per group (sorted) ``sample(rnorm(10000, mean = 2), n_mixtures)``; negatives -> 0;
    mixtures with <= 2 positive groups dropped; rows normalised to sum 1."""
    cols = []
    for _ in levels:
        pool = rng.rnorm(_POOL, mean=2.0)
        cols.append(pool[rng.sample_int(_POOL, n_mixtures) - 1])
    frac = np.column_stack(cols)
    frac[frac < 0] = 0.0
    frac = frac[(frac > 0).sum(axis=1) > 2]
    if frac.shape[0] == 0:
        raise ValueError("every drawn mixture had <= 2 groups present and was dropped; use more mixtures or groups")
    out: np.ndarray = frac / frac.sum(axis=1, keepdims=True)
    return out


def _draw_cells(
    rng: RRandom, frac: np.ndarray, members: list[np.ndarray], n_cells: int, per_mixture: int
) -> sp.csr_matrix:
    """Mixtures x cells weights: per mixture, per group ``round(frac * per_mixture)`` cells drawn
    with replacement (R's ``sample(cells, n, replace = TRUE)``), each weighing 1 / cells drawn."""
    rows, cols, vals = [], [], []
    for i in range(frac.shape[0]):
        drawn = []
        for j, cells in enumerate(members):
            n = int(np.round(frac[i, j] * per_mixture))  # R's round(): half to even
            if n > 0:
                drawn.append(cells[rng.sample_int_replace(cells.size, n) - 1])
        if drawn:
            picked = np.concatenate(drawn)
            ids, times = np.unique(picked, return_counts=True)
            rows.append(np.full(ids.size, i))
            cols.append(ids)
            vals.append(times / picked.size)
    if not rows:
        return sp.csr_matrix((frac.shape[0], n_cells))
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return sp.csr_matrix(data, shape=(frac.shape[0], n_cells))


@validate_params({
    "n_mixtures": [Interval(Integral, 1, None)],
    "cells_per_mixture": [Interval(Integral, 1, None)],
    "seed": [None, Interval(Integral, -(2**31), 2**31, closed="neither")],
    "layer": [str, None],
})
def pseudobulks(
    counts: Any,
    groups: Any,
    *,
    n_mixtures: int = 100,
    cells_per_mixture: int = 1000,
    seed: int | None = None,
    layer: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate pseudo-bulk mixtures of known group fractions: R's ``CreatePseudobulks``.

    For each group (in R's sorted order, ICU collation) draw ``sample(rnorm(10000, mean = 2),
    n_mixtures)``; negative fractions become 0, mixtures with <= 2 groups present are dropped,
    rows are normalised to sum 1. Each mixture then takes ``round(fraction * cells_per_mixture)``
    cells of each group, drawn with replacement, and averages their CP10k expression
    (``counts / cell total * 1e4``, not logged; an empty cell counts as 0); the mixtures are
    finally log-normalised (Seurat ``NormalizeData``, ``LogNormalize``, scale factor 1e4).

    Parameters
    ----------
    counts
        Raw counts: an AnnData (cells x genes, in ``X`` or ``layers[layer]``) or, as R holds
        them, a DataFrame genes x cells (dense or with pandas sparse columns). Non-negative.
    groups
        Group label (e.g. SE) per cell: a Series indexed by cell id covering every cell of
        ``counts`` (extra ids are ignored), or an ``.obs`` column name for AnnData input.
        Labels are compared as strings; at least 3 groups.
    n_mixtures
        Mixtures drawn (1..10000; R's pool has 10000 values); a few may be dropped (above).
    cells_per_mixture
        Cells per mixture before rounding (R: 1000).
    seed
        ``seed=s`` reproduces R's ``set.seed(s); CreatePseudobulks(...)`` draw for draw.
        ``None`` draws a random seed; it is recorded in ``fractions.attrs["seed"]`` (and in
        ``mixtures.attrs["seed"]``) so the run can be repeated.
    layer
        AnnData layer holding the counts (default ``X``).

    Returns
    -------
    ``(fractions, mixtures)``: fractions is mixtures x groups (rows ``Pseudobulk1``, ... numbered
    after dropping), mixtures is genes x mixtures (log-normalised), ready for
    :func:`ecorecover.nmf_generate_w`.
    """
    n_mixtures = int(n_mixtures)
    if n_mixtures > _POOL:
        raise ParameterError(
            f"n_mixtures must be <= {_POOL} (R samples the fractions from {_POOL} normal draws), got {n_mixtures}"
        )
    per_mixture = int(cells_per_mixture)
    x, cells, genes = _counts_cells_by_genes(counts, layer)
    labels = _group_labels(groups, counts, cells)
    levels = collate_sorted(labels)
    if len(levels) < 3:
        raise ValueError(
            f"pseudo-bulks need at least 3 groups (R drops mixtures with <= 2 groups present), got {levels}"
        )
    if seed is None:
        seed = secrets.randbelow(2**31 - 1)
    rng = RRandom(seed)
    frac = _draw_fractions(rng, levels, n_mixtures)
    members = [np.flatnonzero(labels == g) for g in levels]
    weights = _draw_cells(rng, frac, members, len(cells), per_mixture)
    totals = np.asarray(x.sum(axis=1)).ravel()
    inv = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    mixed = (weights @ sp.diags(inv)) @ x  # mean CP10k over the drawn cells, without copying x
    mixed = np.asarray(mixed.todense() if sp.issparse(mixed) else mixed) * _SCALE_FACTOR
    names = [f"Pseudobulk{i + 1}" for i in range(frac.shape[0])]
    fractions = pd.DataFrame(frac, index=pd.Index(names, name="mixture"), columns=list(levels))
    # mean CP10k is not whole counts: log-normalise without log_normalize's non-integer warning
    lognorm = _log_normalize_matrix(np.ascontiguousarray(mixed, dtype=np.float64), 1e4, 1)
    mixtures = pd.DataFrame(lognorm.T, index=pd.Index(genes, name="gene"), columns=names)
    fractions.attrs["seed"] = mixtures.attrs["seed"] = int(seed)
    return fractions, mixtures
