"""Simulated single-cell data with planted spatial-ecotype (SE) structure.

The simulator needs nothing but NumPy: it does not use the published MERSCOPE models (they carry
a non-commercial licence and are not shipped). Each modelled cell type takes part in a subset of
the SEs; each (cell type, SE) pair gets a sparse signed *shift signature* on a few genes, and a
cell's expected log count is

    log rate_cg = mu_tg + b_sg + sigma_tg * (effect * delta_(t, SE(c)), g + eps_cg) + log L_c

with ``t`` the cell's type, ``s`` its sample (batch offset ``b``), ``eps`` per-cell noise and ``L``
its library size; counts are Poisson. Cells labelled ``"nonSE"`` (a fraction of each modelled
type) and cells of ``other_cell_types`` get no shift. A model trained with
:func:`ecorecover.train` recovers the SEs of new cells drawn from the same signatures
(:func:`simulate_split`) well.

Everything is drawn from :class:`numpy.random.Generator` streams derived from ``seed``, so the
result is a pure function of the arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._params import Interval, validate_params

__all__ = ["simulate", "simulate_split", "DEFAULT_CELL_TYPES", "NONSE_LABEL"]

#: Names used when ``cell_types`` is a number (the first ``n`` are taken).
DEFAULT_CELL_TYPES: tuple[str, ...] = (
    "B", "CD4T", "CD8T", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma", "DC",
)
#: SE label of cells in no SE.
NONSE_LABEL = "nonSE"

_CHUNK = 4096  # cells drawn per block (bounds the dense temporaries)


class _Design:
    """Everything shared by all cells of a simulation: genes, baselines, signatures."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        n_genes: int,
        cell_types: list[str],
        other_cell_types: list[str],
        n_se: int,
        n_signature_genes: int,
        effect: float,
    ) -> None:
        width = max(4, len(str(n_genes)))
        self.genes = [f"G{i + 1:0{width}d}" for i in range(n_genes)]
        self.se_names = [f"SE{i + 1:02d}" for i in range(n_se)]
        self.cell_types = cell_types
        self.all_types = cell_types + other_cell_types
        n_types = len(self.all_types)
        self.mu = rng.normal(-0.8, 1.0, size=(n_types, n_genes))
        self.sigma = rng.uniform(0.3, 0.8, size=(n_types, n_genes))
        # SEs each modelled type takes part in (at least 2), and its signatures
        self.type_ses: list[np.ndarray] = []
        self.shift: list[np.ndarray] = []  # per type: n_se x n_genes (rows of absent SEs are 0)
        lo = min(n_se, max(2, int(np.ceil(0.6 * n_se))))
        for _ in cell_types:
            k = int(rng.integers(lo, n_se + 1))
            ses = np.sort(rng.choice(n_se, size=k, replace=False))
            d = np.zeros((n_se, n_genes))
            for a in ses:
                g = rng.choice(n_genes, size=min(n_signature_genes, n_genes), replace=False)
                mag = rng.uniform(1.2, 2.8, size=g.size)
                sign = np.where(rng.random(g.size) < 0.5, -1.0, 1.0)
                d[a, g] = effect * sign * mag
            self.type_ses.append(ses)
            self.shift.append(d)
        self.type_weight = rng.uniform(0.6, 1.4, size=n_types)


def _draw_cells(
    design: _Design,
    rng: np.random.Generator,
    *,
    n_cells: int,
    sample_names: list[str],
    nonse_fraction: float,
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    n_samples = len(sample_names)
    n_genes = len(design.genes)
    n_types = len(design.all_types)
    n_modelled = len(design.cell_types)
    batch = rng.normal(0.0, 0.15, size=(n_samples, n_genes))
    per_sample = rng.multinomial(n_cells, np.full(n_samples, 1.0 / n_samples))
    sample_idx, type_idx, se_idx = [], [], []
    for s in range(n_samples):
        props = rng.dirichlet(design.type_weight * 20.0)
        counts = rng.multinomial(per_sample[s], props)
        se_pref = rng.dirichlet(np.full(len(design.se_names), 4.0))
        for t in range(n_types):
            m = int(counts[t])
            if m == 0:
                continue
            if t < n_modelled:
                ses = design.type_ses[t]
                p = se_pref[ses] / se_pref[ses].sum()
                lab = ses[rng.choice(ses.size, size=m, p=p)]
                lab = np.where(rng.random(m) < nonse_fraction, -1, lab)
            else:
                lab = np.full(m, -1)
            sample_idx.append(np.full(m, s))
            type_idx.append(np.full(m, t))
            se_idx.append(lab)
    s_all = np.concatenate(sample_idx) if sample_idx else np.zeros(0, int)
    t_all = np.concatenate(type_idx) if type_idx else np.zeros(0, int)
    a_all = np.concatenate(se_idx) if se_idx else np.zeros(0, int)
    n = s_all.size
    # stack all (type, SE) shifts as one table: row t * (n_se + 1) + (a + 1); a = -1 -> zero row
    n_se = len(design.se_names)
    table = np.zeros((n_types * (n_se + 1), n_genes))
    for t in range(n_modelled):
        table[t * (n_se + 1) + 1: (t + 1) * (n_se + 1)] = design.shift[t]
    key = t_all * (n_se + 1) + (a_all + 1)
    log_lib = rng.normal(0.0, 0.35, size=n)
    blocks = []
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        types = t_all[sl]
        eps = rng.standard_normal(size=(types.size, n_genes))
        eps += table[key[sl]]
        eps *= design.sigma[types]
        eps += design.mu[types]
        eps += batch[s_all[sl]]
        eps += log_lib[sl, None]
        np.exp(eps, out=eps)
        blocks.append(sp.csr_matrix(rng.poisson(eps).astype(np.int32)))
    x = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_genes), dtype=np.int32)
    se_labels = np.array(design.se_names + [NONSE_LABEL], dtype=object)[a_all]  # -1 -> nonSE
    counter = np.zeros(n_samples, dtype=int)
    ids = []
    for s in s_all:
        ids.append(f"{sample_names[s]}__cell_{counter[s]}")
        counter[s] += 1
    obs = pd.DataFrame(
        {
            "Sample": np.array(sample_names, dtype=object)[s_all],
            "CellType": np.array(design.all_types, dtype=object)[t_all],
            "SE": se_labels,
        },
        index=pd.Index(ids, name="cell"),
    )
    return x, obs


#: The arguments :func:`simulate` and :func:`simulate_split` share, and what each accepts.
_SPEC: dict[str, list[Any]] = {
    "n_cells": [Interval(Integral, 0, None)],
    "n_samples": [Interval(Integral, 1, None)],
    "n_genes": [Interval(Integral, 1, None)],
    "n_se": [Interval(Integral, 2, None)],
    "n_signature_genes": [Interval(Integral, 1, None)],
    "seed": [Interval(Integral, 0, None)],
    "effect": [Interval(Real, 0, None)],
    "nonse_fraction": [Interval(Real, 0, 1, closed="left")],
}


def _type_names(cell_types: int | Sequence[str]) -> list[str]:
    if isinstance(cell_types, (int, np.integer)) and not isinstance(cell_types, bool):
        n = int(cell_types)
        if n < 1:
            raise ValueError(f"cell_types must be >= 1, got {n}")
        if n <= len(DEFAULT_CELL_TYPES):
            return list(DEFAULT_CELL_TYPES[:n])
        return [f"CellType{i + 1:02d}" for i in range(n)]
    if isinstance(cell_types, str) or not isinstance(cell_types, Sequence):
        raise TypeError("cell_types must be a number or a sequence of names")
    names = [str(c) for c in cell_types]
    if not names:
        raise ValueError("cell_types must not be empty")
    return names


def _make(
    *,
    n_cells: int,
    n_samples: int,
    n_genes: int,
    cell_types: int | Sequence[str],
    other_cell_types: Sequence[str],
    n_se: int,
    seed: int,
    effect: float,
    nonse_fraction: float,
    n_signature_genes: int,
    held_out: tuple[int, int] | None,
) -> list[Any]:
    import anndata as ad

    types = _type_names(cell_types)
    others = [str(c) for c in other_cell_types]
    dup = sorted({c for c in types + others if (types + others).count(c) > 1})
    if dup:
        raise ValueError(f"cell type names must be unique; repeated: {dup}")
    streams = np.random.SeedSequence(int(seed)).spawn(3)
    design = _Design(
        np.random.default_rng(streams[0]), n_genes=n_genes, cell_types=types,
        other_cell_types=others, n_se=n_se, n_signature_genes=n_signature_genes, effect=effect,
    )
    params = {
        "n_samples": n_samples, "n_genes": n_genes, "cell_types": types,
        "other_cell_types": others, "n_se": n_se, "seed": int(seed), "effect": float(effect),
        "nonse_fraction": float(nonse_fraction), "n_signature_genes": n_signature_genes,
        "se_of_cell_type": {ct: [design.se_names[a] for a in ses] for ct, ses in zip(types, design.type_ses)},
    }
    jobs = [(n_cells, [f"S{i + 1}" for i in range(n_samples)], "train")]
    if held_out is not None:
        jobs.append((held_out[0], [f"T{i + 1}" for i in range(held_out[1])], "held_out"))
    out = []
    for (n, samples, part), stream in zip(jobs, streams[1:]):
        x, obs = _draw_cells(design, np.random.default_rng(stream), n_cells=n,
                             sample_names=samples, nonse_fraction=nonse_fraction)
        var = pd.DataFrame(index=pd.Index(design.genes, name="gene"))
        adata = ad.AnnData(X=x, obs=obs, var=var)
        adata.uns["simulation"] = {**params, "n_cells": n, "part": part}
        out.append(adata)
    return out


@validate_params(_SPEC)
def simulate(
    *,
    n_cells: int = 6000,
    n_samples: int = 3,
    n_genes: int = 500,
    cell_types: int | Sequence[str] = 6,
    n_se: int = 5,
    seed: int = 0,
    effect: float = 1.0,
    nonse_fraction: float = 0.2,
    n_signature_genes: int = 40,
    other_cell_types: Sequence[str] = (),
) -> Any:
    """Simulate raw single-cell counts with planted SE structure.

    Parameters
    ----------
    n_cells
        Number of cells (split at random over the samples, cell types and SEs).
    n_samples
        Number of samples (``S1``, ``S2``, ...), each with its own batch offsets, cell-type
        composition and SE preferences.
    n_genes
        Number of genes (``G0001``, ...).
    cell_types
        A number (names from :data:`DEFAULT_CELL_TYPES`, or ``CellType01``... beyond nine) or
        the names of the modelled cell types.
    n_se
        Number of SEs (``SE01``...). Each modelled cell type takes part in a random subset of at
        least two (at least 60% of them).
    seed
        Seed of the :class:`numpy.random.Generator` streams: same arguments, same data.
    effect
        Multiplier of the signature shifts (in units of each gene's per-cell noise sd); 0 plants
        no signal.
    nonse_fraction
        Share of the cells of each modelled type labelled ``"nonSE"`` (no shift).
    n_signature_genes
        Genes shifted per (cell type, SE) pair (signed; magnitudes 1.2-2.8 noise sd x ``effect``).
    other_cell_types
        Names of extra cell types with no SE structure (all ``"nonSE"``, so no model is
        trained for them).

    Returns
    -------
    anndata.AnnData
        Cells x genes raw counts (CSR int32); ``obs`` holds ``Sample``, ``CellType`` and ``SE``
        (``"SE01"``..., ``"nonSE"``), cell ids ``S1__cell_0``...; ``uns["simulation"]`` the
        arguments and which SEs each cell type takes part in.
    """
    return _make(
        n_cells=n_cells, n_samples=n_samples, n_genes=n_genes, cell_types=cell_types,
        other_cell_types=other_cell_types, n_se=n_se, seed=seed, effect=effect,
        nonse_fraction=nonse_fraction, n_signature_genes=n_signature_genes, held_out=None,
    )[0]


@validate_params({**_SPEC, "n_held_out": [Interval(Integral, 0, None)], "n_held_out_samples": [Interval(Integral, 1, None)]})
def simulate_split(
    *,
    n_cells: int = 6000,
    n_held_out: int = 3000,
    n_samples: int = 3,
    n_held_out_samples: int = 2,
    n_genes: int = 500,
    cell_types: int | Sequence[str] = 6,
    n_se: int = 5,
    seed: int = 0,
    effect: float = 1.0,
    nonse_fraction: float = 0.2,
    n_signature_genes: int = 40,
    other_cell_types: Sequence[str] = (),
) -> tuple[Any, Any]:
    """A training set and a held-out set with the same genes, cell types and SE signatures.

    The training set is exactly ``simulate(...)`` with the same arguments. The held-out set has
    ``n_held_out`` new cells from ``n_held_out_samples`` new samples (``T1``, ``T2``..., with
    their own batch offsets and compositions), for measuring recovery accuracy.

    Returns
    -------
    (train, held_out): two AnnData objects as described in :func:`simulate`.
    """
    train, test = _make(
        n_cells=n_cells, n_samples=n_samples, n_genes=n_genes, cell_types=cell_types,
        other_cell_types=other_cell_types, n_se=n_se, seed=seed, effect=effect,
        nonse_fraction=nonse_fraction, n_signature_genes=n_signature_genes,
        held_out=(int(n_held_out), int(n_held_out_samples)),
    )
    return train, test
