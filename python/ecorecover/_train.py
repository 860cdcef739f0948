"""Training SE recovery models: R SpatialEcoTyper's ``NMFGenerateWList`` (:func:`train`) and
``NMFGenerateW`` (:func:`nmf_generate_w`), METHOD.md sections 1-3.

Orientation: :func:`train` takes an AnnData (cells x genes) or, for people coming from R, a
pandas DataFrame genes x cells plus a ``meta`` DataFrame indexed by cell id.
:func:`nmf_generate_w` keeps R's orientation (fractions samples x SEs, expression genes x
samples) because it is a drop-in for R's function on pseudo-bulk matrices.

Speed. With a 0/1 membership H (single cells, :func:`train`), R's 420 KL W-steps converge to
the per-SE means of the posneg features (R's W differs from them by < 1e-14), so those means
are computed directly. Only cells whose SE was dropped (an SE with <= 2 cells) couple the rows
of W; then, and for fractional H (:func:`nmf_generate_w` on pseudo-bulks), the real
multiplicative updates run (:func:`ecorecover.nmf.update_w`) from R's initial W. Gene
selection and per-sample scaling do not depend on the seed, so an ensemble
(``n_runs > 1``) computes them once per cell type; only the balancing / downsampling draws
and the means are repeated per run.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from . import preprocessing as _pp
from ._aggregate import _aggregate
from ._collate import collate_sorted
from ._labels import label_column
from ._input_data import check_nonnegative, select_matrix
from ._validation import as_float_matrix, resolve_n_jobs
from .model import RecoveryModel
from .nmf import update_w
from .rng import RRandom

log = logging.getLogger("ecorecover.train")

__all__ = [
    "train",
    "nmf_generate_w",
    "SkippedCellTypeWarning",
    "MissingLabelWarning",
    "TrainingInputError",
]

#: R's ``.Machine$double.eps``: NMF's floor and the offset of H0 = F^T + eps.
_EPS = float(np.finfo(np.float64).eps)
#: NMF's iteration cap (with H fixed the connectivity rule stops at exactly 420).
_MAX_ITER = 2000
#: R's label for cells without an SE (a missing SE label becomes this).
_NA_SE = "nonSE"
#: An SE needs more than this many of the kept cells to get a column of W (R's rule).
_MIN_SE_CELLS = 2


from .errors import MissingLabelWarning, SkippedCellTypeWarning, TrainingInputError  # noqa: E402  (re-exported)


# --------------------------------------------------------------------------------------
# Shared pieces of NMFGenerateW
# --------------------------------------------------------------------------------------


def _top_by_score(score: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, highest first; ties keep the earlier index first."""
    order = np.argsort(-score, kind="stable")
    return order[:n]


def _select_and_order_rows(w: np.ndarray, row_gene: np.ndarray, n_per_se: int | None) -> np.ndarray:
    """R's feature selection (METHOD.md 1.4-1.5) on a fitted W (features x SEs).

    For each SE column, the features with ``delta = W_ia - (second largest of row i) > 0``,
    by decreasing delta, are mapped to their genes and the first ``n_per_se`` names (counted
    with duplicates, as R does) are kept; every row of every kept gene stays. ``None``: no
    selection (R's ``Inf``). Rows are then ordered by decreasing row sum (R's ``rowSums``, a
    long-double sum; ties keep the earlier row first). Returns row indices into ``w``.
    """
    m, k = w.shape
    if n_per_se is None:
        keep = np.arange(m)
    else:
        second = np.sort(w, axis=1)[:, -2]
        delta = w - second[:, None]
        kept_genes: set[int] = set()
        for a in range(k):
            idx = np.flatnonzero(delta[:, a] > 0)
            idx = idx[np.argsort(-delta[idx, a], kind="stable")]
            kept_genes.update(row_gene[idx[:n_per_se]].tolist())
        keep = np.flatnonzero(np.isin(row_gene, np.fromiter(kept_genes, dtype=np.int64, count=len(kept_genes))))
    sums = w[keep].astype(np.longdouble).sum(axis=1).astype(np.float64)
    return keep[np.argsort(-sums, kind="stable")]


def _posneg_features(z: np.ndarray, genes: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """posneg (when anything is negative) + NaN -> 0 + zero-variance filter, on cells x genes.

    Returns ``(P cells x features, feature names, gene index per feature)``. Features are
    labelled by origin (R names them by first occurrence, which can mislabel a ``__neg`` row
    whose ``__pos`` twin was dropped; a documented divergence).
    """
    n_genes = z.shape[1]
    gidx = np.arange(n_genes)
    if (z < 0).any():
        p = np.concatenate([np.maximum(z, 0.0), np.maximum(-z, 0.0)], axis=1)
        names = [f"{g}__pos" for g in genes] + [f"{g}__neg" for g in genes]
        gidx = np.concatenate([gidx, gidx])
    else:
        p = np.array(z, dtype=np.float64, copy=True)
        names = [str(g) for g in genes]
    p[np.isnan(p)] = 0.0
    p += 0.0  # -0.0 -> 0.0
    if p.shape[0] > 0:
        varying = np.ptp(p, axis=0) > 0
    else:
        varying = np.zeros(p.shape[1], dtype=bool)
    keep = np.flatnonzero(varying)
    return np.ascontiguousarray(p[:, keep]), [names[i] for i in keep], gidx[keep]


def _w0(rng: RRandom, m: int, k: int) -> np.ndarray:
    """R's ``matrix(runif(m * k), m, k)``: column-major fill."""
    return np.ascontiguousarray(rng.runif(m * k).reshape(k, m).T)


def _membership_means(p: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Per-SE means of the rows of ``p`` (cells x features): features x k, floored at eps as
    R's last (420th) W-step floors W."""
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[:-1]).astype(np.int64)])
    sums = np.add.reduceat(p[order], starts, axis=0)
    w = (sums / counts[:, None]).T
    return np.ascontiguousarray(np.maximum(w, _EPS))


# --------------------------------------------------------------------------------------
# nmf_generate_w
# --------------------------------------------------------------------------------------


def _check_count(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0 and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        extra = " or None" if allow_none else ""
        raise TypeError(f"{name} must be an integer{extra}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _resolve_rng(seed: int | None, rng: RRandom | None) -> RRandom:
    if rng is not None and seed is not None:
        raise TypeError("give either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, RRandom):
            raise TypeError(f"rng must be an ecorecover.rng.RRandom, got {type(rng).__name__}")
        return rng
    if seed is None:
        # R's NMFGenerateW draws W0 from an unseeded session: results vary between calls.
        seed = secrets.randbelow(2**31 - 1)
    return RRandom(seed)


def _nmf_generate_w_details(
    fractions: pd.DataFrame,
    expression: pd.DataFrame,
    *,
    scale: bool = True,
    n_features: int = 300,
    n_features_per_se: int | None = 50,
    seed: int | None = None,
    rng: RRandom | None = None,
) -> dict[str, Any]:
    """:func:`nmf_generate_w` with its intermediates: ``V`` (features x samples DataFrame),
    ``W0``, ``W_fit`` (before selection, same rows as V), ``W`` (the result), ``n_iter``."""
    if not isinstance(fractions, pd.DataFrame):
        raise TypeError(f"fractions must be a pandas DataFrame (samples x SEs), got {type(fractions).__name__}")
    if not isinstance(expression, pd.DataFrame):
        raise TypeError(f"expression must be a pandas DataFrame (genes x samples), got {type(expression).__name__}")
    n_features = _check_count(n_features, "n_features")
    n_features_per_se = _check_count(n_features_per_se, "n_features_per_se", allow_none=True)
    for what, idx in (("expression genes (index)", expression.index), ("expression samples (columns)", expression.columns),
                      ("fractions samples (index)", fractions.index), ("fractions SEs (columns)", fractions.columns)):
        dup = idx[idx.duplicated()].unique().tolist()
        if dup:
            raise TrainingInputError(f"duplicated {what}: {dup[:10]}")
    if fractions.shape[1] < 2:
        raise TrainingInputError(f"fractions must have at least 2 SE columns, got {fractions.shape[1]}")
    samples = [str(s) for s in expression.columns]
    frac_index = [str(s) for s in fractions.index]
    missing = sorted(set(samples) - set(frac_index))
    if missing:
        raise TrainingInputError(
            f"fractions has no row for {len(missing)} expression sample(s), e.g. {missing[:5]}; "
            "fractions rows are matched to the expression columns by name"
        )
    f = fractions.copy()
    f.index = frac_index
    f = f.loc[samples]
    fv = as_float_matrix(f, "fractions")
    if (fv < 0).any():
        raise TrainingInputError("fractions must be non-negative")
    ev = as_float_matrix(expression, "expression")  # genes x samples
    genes = [str(g) for g in expression.index]
    ev, _ = _pp.raw_count_guard(ev, what="expression")
    if ev.shape[0] > n_features:
        var = np.var(ev, axis=1, ddof=1) if ev.shape[1] > 1 else np.zeros(ev.shape[0])
        sel = _top_by_score(np.nan_to_num(var, nan=0.0), n_features)
        ev = ev[sel]
        genes = [genes[i] for i in sel]
    z = np.ascontiguousarray(ev.T)  # samples x genes
    if scale:
        # R hands NMFGenerateW a base matrix here, so Seurat takes its dense code path.
        z = _pp.scale(z, method="dense")
    p, feats, fgene = _posneg_features(z, genes)
    if p.shape[1] == 0:
        raise TrainingInputError("no feature varies across the samples after scaling and posneg")
    m, k = p.shape[1], fv.shape[1]
    r = _resolve_rng(seed, rng)
    w0 = _w0(r, m, k)
    v = np.ascontiguousarray(p.T)
    binary = np.isin(fv, (0.0, 1.0)).all() and (fv.sum(axis=1) == 1).all()
    if binary:  # 0/1 membership: the W-steps converge to the per-SE means (METHOD.md 1.3)
        codes = np.argmax(fv, axis=1)
        if np.bincount(codes, minlength=k).min() == 0:
            binary = False
    if binary:
        w_fit, n_iter = _membership_means(p, codes, k), 420
    else:
        w_fit, n_iter = update_w(v, w0, np.ascontiguousarray(fv.T) + _EPS, max_iter=_MAX_ITER)
    rows = _select_and_order_rows(w_fit, fgene, n_features_per_se)
    ses = [str(c) for c in fractions.columns]
    out = pd.DataFrame(w_fit[rows], index=pd.Index([feats[i] for i in rows], dtype=object), columns=pd.Index(ses, dtype=object))
    return {
        "V": pd.DataFrame(v, index=feats, columns=samples),
        "W0": w0,
        "W_fit": pd.DataFrame(w_fit, index=feats, columns=ses),
        "W": out,
        "n_iter": n_iter,
    }


def nmf_generate_w(
    fractions: pd.DataFrame,
    expression: pd.DataFrame,
    *,
    scale: bool = True,
    n_features: int = 300,
    n_features_per_se: int | None = 50,
    seed: int | None = None,
    rng: RRandom | None = None,
) -> pd.DataFrame:
    """Train one W from a fraction matrix: R SpatialEcoTyper's ``NMFGenerateW``.

    Parameters
    ----------
    fractions
        Samples (or cells) x SEs, non-negative (pseudo-bulk fractions, or a 0/1 membership).
        Rows are matched to the columns of ``expression`` **by name**; extra rows are ignored.
        At least 2 SE columns.
    expression
        Genes x samples (R's orientation), log scale. If it looks like raw counts
        (min >= 0, max > 80), ``log2(x + 1)`` is applied first, with a
        :class:`~ecorecover.preprocessing.RawCountWarning`.
    scale
        Scale each gene over the samples (Seurat ``ScaleData``) before posneg.
    n_features
        With more genes than this, keep the ``n_features`` of highest variance.
    n_features_per_se
        Genes kept per SE by the delta rule (names counted with duplicates, as R);
        ``None`` keeps every feature (R's ``Inf``).
    seed, rng
        Source of the initial W (R: ``runif(m * k)`` from the caller's random state, never
        seeded by ``NMFGenerateW``). ``rng`` (an :class:`ecorecover.rng.RRandom`) continues
        that generator, so ``RRandom(1)`` reproduces R's ``set.seed(1); NMFGenerateW(...)``;
        ``seed`` is ``rng=RRandom(seed)``. With neither, a random seed is used (like an
        unseeded R session). With fractional H the 420 W-steps do not converge and W depends
        on the initial W at ~1e-4; with a 0/1 membership it does not.

    Returns
    -------
    W as a DataFrame: features (``GENE__pos`` / ``GENE__neg``, or gene names when nothing was
    negative) x SEs (the columns of ``fractions``), rows by decreasing row sum.
    """
    return _nmf_generate_w_details(
        fractions, expression, scale=scale, n_features=n_features,
        n_features_per_se=n_features_per_se, seed=seed, rng=rng,
    )["W"]


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Seed-independent part of one cell type: genes, scaled blocks, labels."""

    cell_type: str
    genes: list[str]                 # selected genes, R's order
    z: np.ndarray                    # scaled cells x genes, blocks in sample order (C order)
    cells: np.ndarray                # global cell index of each row of z
    se: np.ndarray                   # SE label of each row of z
    block_sizes: list[int]           # rows per sample block (one block without samples)
    samples: list[str] = field(default_factory=list)


@dataclass
class _RunResult:
    weights: pd.DataFrame | None
    cells: np.ndarray                # global indices of the cells used, R's order
    reason: str = ""


def _label_column(obs: pd.DataFrame, key: str, what: str, *, na_label: str | None = None) -> np.ndarray:
    """Labels of column ``key`` as strings. Missing labels raise, unless ``na_label`` is given:
    then they become ``na_label`` with a :class:`MissingLabelWarning` (R's NMFGenerateWList
    maps a missing SE to ``"nonSE"``). Labels that differ as written but have the same text
    (``1`` and ``"1"``) raise rather than merge (:func:`ecorecover._labels.check_label_types`)."""
    out, missing = label_column(obs, key, what, error=TrainingInputError,
                                missing_hint=None if na_label is not None else "drop or label those cells first")
    if missing.any():
        warnings.warn(
            f"{what}={key!r} has {int(missing.sum())} missing label(s) (first for cell {obs.index[np.argmax(missing)]!r}); "
            f"they are labelled {na_label!r}, as R SpatialEcoTyper does",
            MissingLabelWarning,
            stacklevel=5,
        )
        out[missing] = na_label
    return out


def _training_input(
    adata: Any, meta: pd.DataFrame | None, layer: str | None = None, use_raw: bool = False
) -> tuple[Any, list[str], list[str], pd.DataFrame]:
    """(X cells x genes as CSR or C-ordered ndarray, cell names, gene names, obs)."""
    if isinstance(adata, pd.DataFrame):
        if layer is not None or use_raw:
            raise TypeError("layer= and use_raw= choose a matrix of an AnnData; a DataFrame input is the matrix itself")
        if meta is None:
            raise TypeError("a DataFrame input (genes x cells) needs meta: a DataFrame of cell metadata indexed by cell id")
        if not isinstance(meta, pd.DataFrame):
            raise TypeError(f"meta must be a pandas DataFrame indexed by cell id, got {type(meta).__name__}")
        genes = [str(g) for g in adata.index]
        cells = [str(c) for c in adata.columns]
        _check_unique(genes, "gene names (DataFrame index)")
        _check_unique(cells, "cell names (DataFrame columns)")
        midx = [str(c) for c in meta.index]
        _check_unique(midx, "cell ids of meta (index)")
        if len(midx) != len(cells) or set(midx) != set(cells):
            missing = [c for c in cells if c not in set(midx)]
            extra = [c for c in midx if c not in set(cells)]
            raise TrainingInputError(
                "meta rows must match the data's cells one to one: "
                f"{len(missing)} cell(s) without a meta row (e.g. {missing[:3]}), "
                f"{len(extra)} meta row(s) without a cell (e.g. {extra[:3]})"
            )
        obs = meta.copy()
        obs.index = midx
        obs = obs.loc[cells]
        kinds = {d.kind for d in adata.dtypes}
        if not kinds <= set("iuf"):
            bad = [str(c) for c, d in adata.dtypes.items() if d.kind not in "iuf"]
            raise TypeError(
                f"the expression DataFrame must hold numbers only (integer or float columns), got dtypes "
                f"{sorted(set(map(str, adata.dtypes)))}; first non-numeric column (cell): {bad[0]!r}"
            )
        try:
            x = adata.to_numpy(dtype=np.float64).T
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the expression DataFrame must hold numbers: {exc}") from None
        x = np.ascontiguousarray(x)
        return x, cells, genes, obs
    try:
        import anndata
    except ImportError:  # pragma: no cover - anndata is a dependency
        anndata = None
    if anndata is None or not isinstance(adata, anndata.AnnData):
        raise TypeError(
            f"adata must be an AnnData (cells x genes) or a pandas DataFrame (genes x cells) with meta, "
            f"got {type(adata).__name__}"
        )
    if meta is not None:
        raise TypeError("meta is only for DataFrame input; with an AnnData the labels come from adata.obs")
    if layer is None and not use_raw and adata.X is None:
        raise TrainingInputError("adata.X is empty (None); put the log-normalised expression in X (or pass layer= / use_raw=)")
    src = select_matrix(adata, layer=layer, use_raw=use_raw)  # X, a layer or raw (scanpy's convention)
    cells = [str(c) for c in adata.obs_names]
    genes = src.var_names
    _check_unique(genes, f"gene names ({'adata.raw.var_names' if use_raw else 'adata.var_names'})")
    _check_unique(cells, "cell names (adata.obs_names)")
    x = src.x
    if sp.issparse(x):
        x = as_float_matrix(x, src.where, allow_sparse=True, finite=False).tocsr()
        x.sum_duplicates()
    else:
        x = as_float_matrix(np.asarray(x), src.where, finite=False)
    check_nonnegative(src, x, cells, genes)  # scaled data (sc.pp.scale) are refused, naming raw / layers
    return x, cells, genes, adata.obs


def _check_finite_cells_genes(x: Any, cells: Sequence[str], genes: Sequence[str]) -> None:
    """Raise naming the cell and gene of the first NaN/inf (x: cells x genes, CSR or dense)."""
    if sp.issparse(x):
        bad = ~np.isfinite(x.data)
        if not bad.any():
            return
        e = int(np.argmax(bad))
        i = int(np.searchsorted(x.indptr, e, side="right") - 1)
        j = int(x.indices[e])
        value, n_bad = x.data[e], int(bad.sum())
    else:
        bad = ~np.isfinite(x)
        if not bad.any():
            return
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(bad)), x.shape))
        value, n_bad = x[i, j], int(bad.sum())
    raise TrainingInputError(
        f"the expression matrix holds {n_bad} non-finite value(s) (NaN or inf), first at cell {cells[i]!r}, "
        f"gene {genes[j]!r}: {float(value)!r}; remove or impute them first"
    )


def _check_unique(names: list[str], what: str) -> None:
    s = pd.Index(names)
    if s.has_duplicates:
        dup = s[s.duplicated()].unique().tolist()
        raise TrainingInputError(f"duplicated {what}: {dup[:10]}")


def _dense_rows(x: Any, rows: np.ndarray) -> np.ndarray:
    if sp.issparse(x):
        return np.ascontiguousarray(x[rows].toarray())
    return np.ascontiguousarray(x[rows])


def _prepare(
    x: Any,
    genes: list[str],
    cell_type: str,
    rows: np.ndarray,
    se: np.ndarray,
    sample: np.ndarray | None,
    *,
    n_features: int,
    min_cells: int,
    scale: bool,
) -> _Prepared | str:
    """Gene selection and (per-sample) scaling for one cell type; a string says why not."""
    d = _dense_rows(x, rows)  # cells of this type x all genes
    n_sel = min(n_features, d.shape[1])
    if sample is None:
        var = _variances(d)
        gsel = _top_by_score(var, n_sel)
        blocks = [np.arange(d.shape[0])]
        samples: list[str] = []
    else:
        ct_samples = sample[rows]
        samples = [s for s in collate_sorted(ct_samples) if int(np.sum(ct_samples == s)) > min_cells]
        if not samples:
            return f"no sample has more than min_cells={min_cells} cells of this type"
        blocks = [np.flatnonzero(ct_samples == s) for s in samples]
        ranks = np.zeros(d.shape[1])
        for b in blocks:
            ranks += rankdata(_variances(d[b]), method="average")
        gsel = _top_by_score(ranks, n_sel)
    parts = []
    for b in blocks:
        block = d[np.ix_(b, gsel)]
        parts.append(_pp.scale(block, method="sparse", n_jobs=1) if scale else block)
    order = np.concatenate(blocks)
    z = np.ascontiguousarray(np.vstack(parts)) if len(parts) > 1 else np.ascontiguousarray(parts[0])
    return _Prepared(
        cell_type=cell_type,
        genes=[genes[i] for i in gsel],
        z=z,
        cells=rows[order],
        se=se[rows][order],
        block_sizes=[len(b) for b in blocks],
        samples=samples,
    )


def _variances(d: np.ndarray) -> np.ndarray:
    """Per-gene variance over the rows (denominator n - 1; two-pass), 0 for a single cell."""
    if d.shape[0] < 2:
        return np.zeros(d.shape[1])
    mean = d.mean(axis=0)
    c = d - mean
    return np.einsum("ij,ij->j", c, c) / (d.shape[0] - 1)


def _draw_rows(
    block_sizes: Sequence[int],
    *,
    seed: int,
    balance: bool,
    downsample: int | None,
    min_cells: int,
    with_samples: bool,
) -> tuple[np.ndarray, RRandom | None]:
    """Rows (0-based, into the concatenated sample blocks) R keeps, in R's order, and the
    generator afterwards (None when R would not have seeded: W0 then comes from an
    unseeded session).

    ``set.seed(seed)``; for each sample block in order, when it has more cells than
    ``target = max(floor(median(block sizes)), min_cells)``: ``sample(idx, target)``;
    concatenate. Then, with more than ``downsample`` cells: ``set.seed(seed);
    sample.int(n, downsample)`` (positions into the balanced vector, drawn order).
    """
    rng: RRandom | None = None
    starts = np.concatenate([[0], np.cumsum(block_sizes)[:-1]]).astype(np.int64)
    if with_samples and balance:
        rng = RRandom(seed)
        target = max(int(math.floor(float(np.median(block_sizes)))), min_cells)
        parts = []
        for start, size in zip(starts, block_sizes):
            idx = np.arange(start, start + size)
            if size > target:
                idx = idx[rng.sample_int(size, target) - 1]
            parts.append(idx)
        rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    else:
        rows = np.arange(int(np.sum(block_sizes)), dtype=np.int64)
    if downsample is not None and rows.size > downsample:
        rng = RRandom(seed)
        rows = rows[rng.sample_int(rows.size, downsample) - 1]
    return rows, rng


@dataclass
class _Layout:
    """One cell type, one seed, up to the initial W: the cells R keeps and the features of V."""

    cells: np.ndarray                # global indices of the cells used, R's order
    rng: RRandom | None              # the generator after R's set.seed + draws (None: R drew nothing)
    reason: str = ""                 # why there is no model ("" when there is one)
    rows: np.ndarray | None = None   # rows of prep.z used, R's order
    ses: list[str] = field(default_factory=list)
    codes: np.ndarray | None = None  # SE column of each kept cell (-1: its SE was dropped)
    fgene: np.ndarray | None = None  # gene index of each feature of V
    fneg: np.ndarray | None = None   # feature is a __neg half
    feats: list[str] = field(default_factory=list)

    @property
    def w0_size(self) -> int:
        """Uniforms R draws for this cell type's W0 (``runif(m * k)``; 0 without a model)."""
        return 0 if self.reason else int(self.fgene.size) * len(self.ses)


@dataclass(frozen=True)
class _Stream:
    """Where R's random stream stands when a cell type's ``NMFGenerateW`` draws W0 while no
    ``set.seed`` happened inside that cell type: ``set.seed(seed)``, then (``draws``: block
    sizes and draw options of an earlier cell type) that cell type's balancing/downsampling
    draws, then ``skip`` uniforms (the W0s of the cell types trained since). Small and
    picklable, so Dask tasks rebuild the generator themselves."""

    seed: int
    skip: int = 0
    draws: tuple[tuple[int, ...], tuple[tuple[str, Any], ...]] | None = None

    def generator(self) -> RRandom:
        if self.draws is None:
            g = RRandom(self.seed)
        else:
            g = _draw_rows(self.draws[0], seed=self.seed, **dict(self.draws[1]))[1]
        g.runif(self.skip)
        return g


def _layout(
    prep: _Prepared, *, seed: int, balance: bool, downsample: int | None, min_cells: int, with_samples: bool
) -> _Layout:
    """R's draws, SE membership (SEs in order of first appearance, those with more than 2 of
    the kept cells) and the posneg features for one cell type and seed."""
    rows, rng = _draw_rows(
        prep.block_sizes, seed=seed, balance=balance, downsample=downsample,
        min_cells=min_cells, with_samples=with_samples,
    )
    cells = prep.cells[rows]
    labels, first, inverse, counts = np.unique(prep.se[rows], return_index=True, return_inverse=True, return_counts=True)
    by_first = np.argsort(first, kind="stable")  # SEs in order of first appearance
    kept = [int(i) for i in by_first if counts[i] > _MIN_SE_CELLS]
    if len(kept) < 2:
        return _Layout(cells, rng, f"fewer than 2 SEs with more than {_MIN_SE_CELLS} of the {rows.size} cells kept")
    code_of_label = np.full(labels.size, -1, dtype=np.int64)
    code_of_label[kept] = np.arange(len(kept))
    z = prep.z[rows]  # cells in R's order x genes
    fgene, fneg, feats = _posneg_layout(z.min(axis=0), z.max(axis=0), prep.genes, has_neg=bool((z < 0).any()))
    if fgene.size == 0:
        return _Layout(cells, rng, "no feature varies over the kept cells")
    return _Layout(cells, rng, "", rows, [str(labels[i]) for i in kept], code_of_label[inverse.ravel()], fgene, fneg, feats)


def _session_streams(
    prepared: dict[str, _Prepared], *, seed: int, session_seed: int, draw_kw: dict[str, Any]
) -> dict[str, _Stream]:
    """Per cell type (in R's order, as R's ``ncores = 1`` loop trains them), the state of R's
    session stream after ``set.seed(session_seed)`` when its W0 is drawn: a cell type whose
    balancing or downsampling called ``set.seed(seed)`` restarts the stream there, and every
    cell type that reaches ``NMFGenerateW`` consumes ``m * k`` uniforms for its W0."""
    stream = _Stream(session_seed)
    out: dict[str, _Stream] = {}
    for c, p in prepared.items():
        lay = _layout(p, seed=seed, **draw_kw)
        if lay.rng is not None:
            stream = _Stream(seed, 0, (tuple(int(b) for b in p.block_sizes), tuple(sorted(draw_kw.items()))))
        out[c] = stream
        stream = _Stream(stream.seed, stream.skip + lay.w0_size, stream.draws)
    return out


def _run(
    prep: _Prepared,
    *,
    seed: int,
    balance: bool,
    downsample: int | None,
    min_cells: int,
    with_samples: bool,
    n_features_per_se: int | None,
    stream: _Stream | None = None,
) -> _RunResult:
    """One cell type, one seed: draws, posneg, membership, W, feature selection. ``stream``:
    where R's session stream stands for this cell type's W0 when R seeds nothing inside it
    (None: the stream of ``set.seed(seed)``)."""
    lay = _layout(prep, seed=seed, balance=balance, downsample=downsample, min_cells=min_cells, with_samples=with_samples)
    if lay.reason:
        return _RunResult(None, lay.cells, lay.reason)
    codes, fgene, fneg, k = lay.codes, lay.fgene, lay.fneg, len(lay.ses)
    z = prep.z[lay.rows]
    h = np.full((k, codes.size), _EPS)
    member = codes >= 0
    h[codes[member], np.flatnonzero(member)] = 1.0 + _EPS

    def w0() -> np.ndarray:
        # R's initial W: runif(m * k) right after the sampling draws, or from the session's stream.
        if lay.rng is not None:
            gen = lay.rng
        else:
            gen = stream.generator() if stream is not None else RRandom(seed)
        return _w0(gen, fgene.size, k)

    if member.all():
        w = _posneg_means(z, codes, k, fgene, fneg)
        order = _exact_near_ties(w, lambda idx: _posneg_columns(z, fgene[idx], fneg[idx]), w0, h, fgene, n_features_per_se)
    else:
        # Cells of dropped SEs stay in V with an all-eps H column: they couple the columns of
        # each row of W, so run R's W-steps.
        v = np.ascontiguousarray(_posneg_columns(z, fgene, fneg).T)
        w, _ = update_w(v, w0(), h, max_iter=_MAX_ITER, n_jobs=1)
        order = _select_and_order_rows(w, fgene, n_features_per_se)
    index = pd.Index([lay.feats[i] for i in order], dtype=object)
    return _RunResult(pd.DataFrame(w[order], index=index, columns=pd.Index(lay.ses, dtype=object)), lay.cells)


def _posneg_layout(
    zmin: np.ndarray, zmax: np.ndarray, genes: Sequence[str], *, has_neg: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The features posneg + zero-variance filter keep, from per-gene min/max over the cells:
    (gene index, is-negative-part, name) per feature, ``__pos`` half first. Without any
    negative value R skips posneg: features are the genes, with plain names."""
    const = zmin == zmax
    if not has_neg:
        g = np.flatnonzero(~const)
        return g, np.zeros(g.size, dtype=bool), [str(genes[i]) for i in g]
    gp = np.flatnonzero(~(const | (zmax <= 0)))  # max(z, 0) varies
    gn = np.flatnonzero(~(const | (zmin >= 0)))  # max(-z, 0) varies
    names = [f"{genes[i]}__pos" for i in gp] + [f"{genes[i]}__neg" for i in gn]
    return np.concatenate([gp, gn]), np.concatenate([np.zeros(gp.size, bool), np.ones(gn.size, bool)]), names


def _posneg_columns(z: np.ndarray, fgene: np.ndarray, fneg: np.ndarray) -> np.ndarray:
    """The posneg matrix (cells x features) for the given features."""
    cols = z[:, fgene]
    return np.where(fneg[None, :], np.maximum(-cols, 0.0), np.maximum(cols, 0.0)) + 0.0


def _posneg_means(z: np.ndarray, codes: np.ndarray, k: int, fgene: np.ndarray, fneg: np.ndarray) -> np.ndarray:
    """Per-SE means of the posneg features (features x k), without building posneg: R's W
    for a 0/1 membership, floored at eps as R's last (420th) W-step floors W."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=k)
    starts = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
    zs = z[order]
    pos = np.add.reduceat(np.maximum(zs, 0.0), starts, axis=0)  # k x genes
    sums = np.empty((k, fgene.size))
    sums[:, ~fneg] = pos[:, fgene[~fneg]]
    if fneg.any():
        neg = np.add.reduceat(np.minimum(zs, 0.0), starts, axis=0)
        sums[:, fneg] = -neg[:, fgene[fneg]]
    w = (sums / counts[:, None].astype(np.float64)).T
    return np.ascontiguousarray(np.maximum(w, _EPS))


#: Closed-form W differs from R's 420 W-steps by < 1e-13 (7.6e-15 measured); decisions on
#: values closer than this are re-made on R's exact iterates.
_TIE_TOL = 1e-11


def _exact_near_ties(
    w: np.ndarray, columns: Any, w0: Any, h: np.ndarray, fgene: np.ndarray, n_per_se: int | None
) -> np.ndarray:
    """Feature selection and row order on the closed-form ``w`` (patched in place), with every
    decision that rests on a near-tie re-made on R's exact iterates.

    The per-SE means are R's fixed point to ~1e-14, but where R's result rests on a tie at
    that level (two SEs with the same mean of a constant feature, two features with the same
    delta at the ``n_per_se`` cut, two rows with the same sum) the rounding noise of R's
    iterations decides. The W-step updates each row of W on its own (H is fixed, so the
    connectivity rule stops at exactly 420 iterations whatever the rows), so the rows involved
    are recomputed with R's updates from R's W0 rows, bit for bit, and the decisions re-made.
    ``columns(idx)`` gives V's rows ``idx`` (as cells x features), ``w0()`` R's initial W.
    """
    exact = np.zeros(w.shape[0], dtype=bool)
    start = None
    while True:
        flagged = _near_tie_rows(w, fgene, n_per_se) & ~exact
        if not flagged.any():
            return _select_and_order_rows(w, fgene, n_per_se)
        if start is None:
            start = w0()
        rows = np.flatnonzero(flagged)
        w[rows], _ = update_w(
            np.ascontiguousarray(columns(rows).T), np.ascontiguousarray(start[rows]), h, max_iter=_MAX_ITER, n_jobs=1
        )
        exact[rows] = True


def _near_tie_rows(w: np.ndarray, fgene: np.ndarray, n_per_se: int | None) -> np.ndarray:
    m, k = w.shape
    flag = np.zeros(m, dtype=bool)
    if n_per_se is not None:
        srt = np.sort(w, axis=1)
        delta = w - srt[:, -2][:, None]
        flag |= (srt[:, -1] - srt[:, -2]) < _TIE_TOL  # is the row's delta > 0 at all?
        for a in range(k):
            idx = np.flatnonzero(delta[:, a] > 0)
            if idx.size <= n_per_se:
                continue
            d = np.sort(delta[idx, a])[::-1]
            lo, hi = d[n_per_se], d[n_per_se - 1]  # first out, last in
            if hi - lo < _TIE_TOL:
                near = (np.abs(delta[:, a] - lo) < _TIE_TOL) | (np.abs(delta[:, a] - hi) < _TIE_TOL)
                flag |= near & (delta[:, a] > 0)
    rows = _select_and_order_rows(w, fgene, n_per_se)
    sums = w[rows].astype(np.longdouble).sum(axis=1).astype(np.float64)
    close = np.flatnonzero(np.abs(np.diff(sums)) < _TIE_TOL)
    flag[rows[close]] = True
    flag[rows[close + 1]] = True
    return flag


def _pool_size(n_jobs: int | None) -> int:
    threads = resolve_n_jobs(n_jobs)
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            threads = os.cpu_count() or 1
    return max(1, int(threads))


def _progress(iterable: Any, *, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm  # stderr

    # disable=None: no bar when stderr is not a terminal (logs, CI, batch jobs); the logger
    # "ecorecover.train" says what was done there
    return tqdm(iterable, total=total, desc=desc, unit="cell type" if "cell" in desc else "run", disable=None)


@dataclass
class _Plan:
    """Everything :func:`train` computes before building models (exposed for tests)."""

    prepared: dict[str, _Prepared]
    runs: list[dict[str, _RunResult]]
    seeds: list[int]
    skipped: dict[str, str]
    cells: list[str]
    raw_guard_fired: bool


def _plan(
    adata: Any,
    *,
    celltype_key: str,
    se_key: str,
    sample_key: str | None,
    n_features: int,
    n_features_per_se: int | None,
    min_cells: int,
    downsample: int | None,
    balance_samples: bool,
    scale: bool,
    seed: int,
    n_runs: int,
    n_jobs: int | None,
    progress: bool,
    meta: pd.DataFrame | None,
    client: Any = None,
    session_seed: int | None = None,
    layer: str | None = None,
    use_raw: bool = False,
) -> _Plan:
    n_features = _check_count(n_features, "n_features")
    n_features_per_se = _check_count(n_features_per_se, "n_features_per_se", allow_none=True)
    min_cells = _check_count(min_cells, "min_cells", minimum=0)
    downsample = _check_count(downsample, "downsample", allow_none=True)
    n_runs = _check_count(n_runs, "n_runs")
    seed = _check_seed(seed, "seed", n_runs)
    if session_seed is not None:
        session_seed = _check_seed(session_seed, "session_seed", n_runs)
    pool = _pool_size(n_jobs)

    x, cells, genes, obs = _training_input(adata, meta, layer, use_raw)
    ct = _label_column(obs, celltype_key, "celltype_key")
    se = _label_column(obs, se_key, "se_key", na_label=_NA_SE)
    sample = _label_column(obs, sample_key, "sample_key") if sample_key is not None else None
    if not cells or not genes:
        raise TrainingInputError(
            f"the expression matrix is empty ({len(cells)} cells x {len(genes)} genes); training needs cells and genes"
        )
    _check_finite_cells_genes(x, cells, genes)
    x, fired = _pp.raw_count_guard(x, what="the training expression matrix")
    if sp.issparse(x):
        x = x.tocsr()

    # Cell types with at least two SEs holding more than min_cells cells (R's table order).
    table = pd.crosstab(pd.Series(ct, name="ct"), pd.Series(se, name="se"))
    n_big = (table > min_cells).sum(axis=1)
    skipped: dict[str, str] = {}
    trainable: list[str] = []
    for c in collate_sorted(ct):
        if int(n_big.loc[c]) >= 2:
            trainable.append(c)
        else:
            skipped[c] = f"{int(n_big.loc[c])} SE(s) with more than min_cells={min_cells} cells (needs 2)"
    if not trainable:
        raise TrainingInputError(
            f"no cell type can be trained: each needs at least 2 SEs with more than min_cells={min_cells} "
            f"cells ({'; '.join(f'{c}: {r}' for c, r in skipped.items())})"
        )
    rows_of = {c: np.flatnonzero(ct == c) for c in trainable}
    log.info("training %d cell type(s) on %d cells x %d genes, %d run(s) (seeds %d..%d)%s", len(trainable), len(cells),
             len(genes), n_runs, seed, seed + n_runs - 1, f"; skipped: {', '.join(skipped)}" if skipped else "")
    for c in trainable:
        log.debug("%s: %d cells", c, rows_of[c].size)

    def prep(c: str) -> _Prepared | str:
        return _prepare(x, genes, c, rows_of[c], se, sample, n_features=n_features, min_cells=min_cells, scale=scale)

    seeds = [seed + r for r in range(n_runs)]
    run_kw = dict(
        balance=balance_samples, downsample=downsample, min_cells=min_cells,
        with_samples=sample is not None, n_features_per_se=n_features_per_se,
    )
    t0 = time.perf_counter()
    prepared, runs, failed = _fit_all(
        prep, trainable, seeds=seeds, session_seed=session_seed, run_kw=run_kw, pool=pool, client=client, progress=progress
    )
    skipped.update(failed)
    log.info("trained %d cell type(s) x %d run(s) in %.2f s%s", len(prepared), n_runs, time.perf_counter() - t0,
             f"; not trained: {', '.join(failed)}" if failed else "")
    return _Plan(prepared=prepared, runs=runs, seeds=seeds, skipped=skipped, cells=cells, raw_guard_fired=fired)


def _fit_all(
    prep: Callable[[str], _Prepared | str],
    trainable: list[str],
    *,
    seeds: list[int],
    session_seed: int | None,
    run_kw: dict[str, Any],
    pool: int,
    client: Any,
    progress: bool,
) -> tuple[dict[str, _Prepared], list[dict[str, _RunResult]], dict[str, str]]:
    """Prepare every trainable cell type (``prep``) and train it for every seed, on ``pool``
    threads or (``client``) as Dask tasks. Returns (prepared, one result dict per seed, the
    cell types ``prep`` turned down with the reason)."""
    prepared: dict[str, _Prepared] = {}
    skipped: dict[str, str] = {}
    runs: list[dict[str, _RunResult]] = [dict() for _ in seeds]
    bar = dict(total=len(trainable), desc="ecorecover.train: cell types", enabled=progress)
    with ThreadPoolExecutor(max_workers=pool) as ex:
        if len(seeds) == 1 and client is None and session_seed is None:  # one task per cell type
            def both(c: str) -> tuple[_Prepared | str, _RunResult | None]:
                p = prep(c)
                return p, (None if isinstance(p, str) else _run(p, seed=seeds[0], **run_kw))

            for c, (p, res) in zip(trainable, list(_progress(ex.map(both, trainable), **bar))):
                if isinstance(p, str):
                    skipped[c] = p
                else:
                    prepared[c], runs[0][c] = p, res
            return prepared, runs, skipped
        for c, p in zip(trainable, list(_progress(ex.map(prep, trainable), **bar))):
            if isinstance(p, str):
                skipped[c] = p
            else:
                prepared[c] = p
        streams = [_run_streams(prepared, s, None if session_seed is None else session_seed + r, run_kw) for r, s in enumerate(seeds)]

        def one_run(r: int) -> dict[str, _RunResult]:
            return {c: _run(p, seed=seeds[r], stream=streams[r][c], **run_kw) for c, p in prepared.items()}

        if client is not None:  # the (run, cell type) pairs as tasks on a Dask cluster
            from .dask.training import _train_runs

            runs = _train_runs(client, prepared, seeds, run_kw, progress, streams=streams) if prepared else runs
        elif len(seeds) == 1:  # session_seed: the streams are known, so the cell types run in parallel
            names = list(prepared)
            runs[0] = dict(zip(names, ex.map(lambda c: _run(prepared[c], seed=seeds[0], stream=streams[0][c], **run_kw), names)))
        else:
            runs = list(_progress(ex.map(one_run, range(len(seeds))), total=len(seeds), desc="ecorecover.train: runs", enabled=progress))
    return prepared, runs, skipped


def _check_seed(value: Any, name: str, n_runs: int) -> int:
    """An R ``set.seed`` value such that ``value + n_runs - 1`` still fits R's 32-bit integers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not -(2**31) < value or not value + n_runs - 1 < 2**31:
        raise ValueError(
            f"{name} .. {name} + n_runs - 1 must fit R's 32-bit integer range, got {name}={value}, n_runs={n_runs}"
        )
    return value


def _run_streams(
    prepared: dict[str, _Prepared], seed: int, session_seed: int | None, run_kw: dict[str, Any]
) -> dict[str, _Stream | None]:
    """Per cell type, where its W0 comes from when R seeds nothing inside it (None: the stream of
    ``set.seed(seed)``; with ``session_seed``: R's session stream, see :func:`_session_streams`)."""
    if session_seed is None:
        return dict.fromkeys(prepared)
    draw_kw = {k: run_kw[k] for k in ("balance", "downsample", "min_cells", "with_samples")}
    return dict(_session_streams(prepared, seed=seed, session_seed=session_seed, draw_kw=draw_kw))


def _selection(plan: _Plan, run: int = 0) -> dict[str, dict[str, list[str]]]:
    """Per cell type, the cells (R's order) and genes (R's order) used in run ``run``."""
    out = {}
    for c, p in plan.prepared.items():
        res = plan.runs[run][c]
        out[c] = {"cells": [plan.cells[i] for i in res.cells], "genes": list(p.genes)}
    return out


_TRAIN_DEFAULTS: dict[str, Any] = dict(
    celltype_key="CellType", se_key="SE", sample_key=None, n_features=300, n_features_per_se=50,
    min_cells=20, downsample=2500, balance_samples=True, scale=True, seed=2024, n_runs=1,
    n_jobs=None, progress=True, meta=None, session_seed=None, layer=None, use_raw=False,
)


def train(
    adata: Any,
    *,
    celltype_key: str = "CellType",
    se_key: str = "SE",
    sample_key: str | None = None,
    n_features: int = 300,
    n_features_per_se: int | None = 50,
    min_cells: int = 20,
    downsample: int | None = 2500,
    balance_samples: bool = True,
    scale: bool = True,
    seed: int = 2024,
    n_runs: int = 1,
    n_jobs: int | None = None,
    progress: bool = True,
    meta: pd.DataFrame | None = None,
    client: Any = None,
    session_seed: int | None = None,
    layer: str | None = None,
    use_raw: bool = False,
) -> RecoveryModel:
    """Train cell-type-specific SE recovery models: R SpatialEcoTyper's ``NMFGenerateWList``.

    Parameters
    ----------
    adata
        Either an :class:`anndata.AnnData`, **cells x genes**, with log-normalised expression
        in ``X`` (dense or scipy sparse) and the labels in ``obs``; or a pandas DataFrame
        **genes x cells** (R's / the tutorial's orientation) together with ``meta``.
    celltype_key, se_key, sample_key
        Columns of ``obs`` (or ``meta``) with the cell type, the spatial ecotype (any label,
        ``"nonSE"`` included; a missing SE label becomes ``"nonSE"``, as in R, with a
        :class:`MissingLabelWarning`) and, optionally, the sample. With ``sample_key`` genes are
        chosen by rank sums of per-sample variances, each sample is scaled separately and
        (with ``balance_samples``) large samples are subsampled to the median size.
    n_features
        Genes per cell type (highest variance, or highest variance-rank sum over samples).
    n_features_per_se
        Genes kept per SE by the delta rule (counted with duplicates as R does); ``None``
        keeps all features (R's ``Inf``, the tutorial's setting for ensembles).
    min_cells
        A cell type is trained when at least two SEs have more than ``min_cells`` of its
        cells; samples with at most ``min_cells`` cells of the type are left out.
    downsample
        At most this many cells per cell type (``None``: no limit), drawn as R does.
    balance_samples
        Subsample each sample to ``max(floor(median sample size), min_cells)`` cells.
    scale
        Scale genes (Seurat ``ScaleData``, per sample when ``sample_key`` is given).
    seed
        R's ``set.seed`` value for the draws; R's draws are reproduced exactly.
    n_runs
        Number of runs. Run ``r`` (0-based) uses seed ``seed + r``, so run 0 is the single-run
        model and no two runs share a seed; the runs are combined with
        :func:`ecorecover.aggregate` (default thresholds) and kept on ``.runs``.
    n_jobs
        Threads for the cell types (None or -1: all cores). Results do not depend on it.
    progress
        Show tqdm progress bars (per cell type, per run) on stderr.
    meta
        Cell metadata for DataFrame input: a DataFrame indexed by cell id, one row per column
        of ``adata`` (any order; matched by id).
    layer, use_raw
        Train on ``adata.layers[layer]`` or on ``adata.raw`` (its ``X`` and ``var_names``)
        instead of ``adata.X``, as scanpy does. The matrix must hold log-normalised expression:
        negative values (scaled or centred data, e.g. after ``sc.pp.scale``) are refused with
        a ``ValueError`` that names where the log-normalised data usually are.
    client
        A :class:`dask.distributed.Client`: the (run, cell type) pairs of the ensemble are
        computed as tasks on that Dask cluster (gene selection and scaling, shared by the
        runs, stay in this process). The model is identical to the in-process one. See
        :mod:`ecorecover.dask` (needs ``ecorecover[dask]``).
    session_seed
        The ``set.seed`` value R's session had before calling ``NMFGenerateWList``. Where R
        seeds nothing inside a cell type (no ``sample_key`` with balancing, no downsampling),
        its initial W is ``runif(m * k)`` from the session's stream, continued across the cell
        types in R's order (a cell type that seeds for its draws restarts the stream there).
        With ``session_seed=s`` those draws are reproduced, so ``set.seed(1);
        NMFGenerateWList(...)`` is ``train(..., session_seed=1)``; run ``r`` of an ensemble
        uses ``s + r``. ``None`` (default): such a cell type draws its initial W from
        ``set.seed(seed)``'s stream instead. The initial W only matters where two SEs have
        exactly equal means of a feature: R's iterations then decide which SE holds the
        row's maximum, and so whether the gene is selected.

    Returns
    -------
    A :class:`ecorecover.RecoveryModel` (cell type -> W, features ``GENE__pos`` /
    ``GENE__neg`` x SEs in R's order). ``params`` records all arguments, the seeds, the
    package version, the genes selected and cells used per cell type and the skipped cell
    types.

    Raises
    ------
    KeyError
        A key is not a column of the metadata.
    TrainingInputError
        (a ``ValueError``) meta rows do not match the cells, duplicated gene or cell names,
        missing cell-type or sample labels, an empty matrix, NaN/inf in X (the message names
        the first cell and gene), or no cell type can be trained.

    Warns
    -----
    SkippedCellTypeWarning
        For cell types that get no model, with the reason.
    MissingLabelWarning
        Cells without an SE label (NaN/None) were labelled ``"nonSE"``.
    RawCountWarning
        When the input looks like raw counts (min >= 0, max > 80): ``log2(x + 1)`` is applied
        to the whole matrix first, as R does.

    Notes
    -----
    Cell types come in R's sorted order (ICU collation); samples are sorted the same way.
    Features are labelled by origin after the zero-variance filter (R can mislabel a
    ``__neg`` row as ``__pos``; a documented divergence).
    """
    kwargs = dict(
        celltype_key=celltype_key, se_key=se_key, sample_key=sample_key, n_features=n_features,
        n_features_per_se=n_features_per_se, min_cells=min_cells, downsample=downsample,
        balance_samples=balance_samples, scale=scale, seed=seed, n_runs=n_runs, n_jobs=n_jobs,
        progress=progress, meta=meta, client=client, session_seed=session_seed, layer=layer, use_raw=use_raw,
    )
    return _train(adata, **kwargs)[0]


def _train(adata: Any, **options: Any) -> tuple[RecoveryModel, _Plan]:
    """:func:`train` (same keyword options, forwarded to :func:`_plan`), also returning its
    :class:`_Plan` (selected cells/genes, for tests)."""
    plan = _plan(adata, **options)
    o = dict(options)
    celltype_key, se_key, sample_key = o["celltype_key"], o["se_key"], o["sample_key"]
    n_features, n_features_per_se, min_cells = o["n_features"], o["n_features_per_se"], o["min_cells"]
    downsample, balance_samples, scale = o["downsample"], o["balance_samples"], o["scale"]
    seed, n_runs, n_jobs = o["seed"], o["n_runs"], o["n_jobs"]
    base = {
        "method": "ecorecover.train (R SpatialEcoTyper NMFGenerateWList)",
        "celltype_key": celltype_key, "se_key": se_key, "sample_key": sample_key,
        "n_features": int(n_features),
        "n_features_per_se": None if _is_inf(n_features_per_se) else int(n_features_per_se),
        "min_cells": int(min_cells), "downsample": None if _is_inf(downsample) else int(downsample),
        "balance_samples": bool(balance_samples), "scale": bool(scale), "seed": int(seed),
        "n_runs": int(n_runs), "seeds": list(plan.seeds), "session_seed": o.get("session_seed"), "n_jobs": None if n_jobs is None else int(n_jobs),
        "input": {"n_cells": len(plan.cells), "raw_count_guard_fired": plan.raw_guard_fired},
        "selected_genes": {c: list(p.genes) for c, p in plan.prepared.items()},
        "samples": {c: list(p.samples) for c, p in plan.prepared.items()},
    }
    run_models = []
    run_skips: list[dict[str, str]] = []
    for s, res in zip(plan.seeds, plan.runs):
        weights = {c: r.weights for c, r in res.items() if r.weights is not None}
        skips = {c: r.reason for c, r in res.items() if r.weights is None}
        run_skips.append(skips)
        params = {**base, "run_seed": s, "n_cells_used": {c: int(r.cells.size) for c, r in res.items() if r.weights is not None},
                  "skipped_cell_types": {**plan.skipped, **skips}}
        run_models.append((weights, params))
    all_skipped = dict(plan.skipped)
    if n_runs == 1:
        all_skipped.update(run_skips[0])
    if all_skipped:
        warnings.warn(
            f"{len(all_skipped)} cell type(s) get no model: "
            + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()),
            SkippedCellTypeWarning,
            stacklevel=3,
        )
    partial = {c for skips in run_skips for c in skips} if n_runs > 1 else set()
    if partial:
        warnings.warn(
            f"cell type(s) {sorted(partial)} got no model in some runs: "
            + "; ".join(f"seed {s}: {c} ({r})" for s, skips in zip(plan.seeds, run_skips) for c, r in skips.items()),
            SkippedCellTypeWarning,
            stacklevel=3,
        )
    if not any(w for w, _ in run_models):
        raise TrainingInputError("no cell type could be trained: " + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()))
    if not run_models[0][0]:
        raise TrainingInputError(
            f"the first run (seed {plan.seeds[0]}) trained no cell type ("
            + "; ".join(f"{c}: {r}" for c, r in {**plan.skipped, **run_skips[0]}.items())
            + "); an ensemble takes its cell types from the first run, as R's AggregateRecoverModels does. "
            "Try another seed, a larger downsample or a smaller min_cells"
        )
    if n_runs == 1:
        weights, params = run_models[0]
        return RecoveryModel(weights, params=params, source="ecorecover.train"), plan
    runs = [RecoveryModel(w, params=p, source="ecorecover.train") for w, p in run_models]
    agg, empty = _aggregate(runs, 0.01, 0.5, drop_empty=True)  # aggregate()'s defaults (R's)
    if empty:  # a model cannot hold an empty W (issue 14): such cell types are skipped
        reasons = {c: f"no gene is selected in more than half of the {n_runs} runs (empty ensemble W)" for c in empty}
        all_skipped.update(reasons)
        warnings.warn(
            f"{len(empty)} cell type(s) get no ensemble model: " + "; ".join(f"{c}: {r}" for c, r in reasons.items()),
            SkippedCellTypeWarning,
            stacklevel=3,
        )
    if agg is None:
        raise TrainingInputError("no cell type could be trained: " + "; ".join(f"{c}: {r}" for c, r in all_skipped.items()))
    params = {**base, "skipped_cell_types": all_skipped, "aggregate": agg.params.get("aggregate", {})}
    return RecoveryModel({c: agg[c] for c in agg}, params=params, runs=runs, source="ecorecover.train"), plan


def _is_inf(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isinf(v))
