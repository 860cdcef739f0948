"""R SpatialEcoTyper's ``NMFGenerateW``: one W from a fraction matrix (METHOD.md sections 1-3).

It keeps R's orientation (fractions samples x SEs, expression genes x samples), being a drop-in
for R's function on pseudo-bulk matrices. The steps are those of a training run: highest-variance
genes, dense Seurat scaling, posneg and the zero-variance filter
(:func:`~ecorecover.training.layout.posneg_features`), R's initial W, the W-steps (or, for a
0/1 membership, their limit: the per-SE means) and R's feature selection.
"""

from __future__ import annotations

import secrets
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import preprocessing as pp
from .._params import validate_params
from .._validation import as_float_matrix
from ..errors import ParameterTypeError, TrainingInputError
from ..nmf import update_w
from ..rng import RRandom
from .fit import EPS, MAX_ITER, initial_w, membership_means
from .layout import posneg_features
from .options import TRAIN_PARAMS, r_inf_as_none
from .plan import top_by_score
from .selection import select_rows

__all__ = ["GENERATE_W_PARAMS", "GeneratedW", "nmf_generate_w", "nmf_generate_w_details"]

#: What :func:`nmf_generate_w`'s numeric and boolean arguments accept (as in :func:`train`).
GENERATE_W_PARAMS: dict[str, list[Any]] = {k: TRAIN_PARAMS[k] for k in ("n_features", "n_features_per_se", "scale")}


class GeneratedW(TypedDict):
    """:func:`nmf_generate_w_details`' result: ``V`` (features x samples), ``W0``, ``W_fit``
    (before selection, V's rows), ``W`` (the result) and the number of W-steps ``n_iter``."""

    V: pd.DataFrame
    W0: npt.NDArray[np.float64]
    W_fit: pd.DataFrame
    W: pd.DataFrame
    n_iter: int


@validate_params(GENERATE_W_PARAMS, where="ecorecover.nmf_generate_w()")
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
    return nmf_generate_w_details(fractions, expression, scale=scale, n_features=n_features,
                                  n_features_per_se=n_features_per_se, rng=_resolve_rng(seed, rng))["W"]


def nmf_generate_w_details(fractions: pd.DataFrame, expression: pd.DataFrame, *, scale: bool, n_features: int,
                           n_features_per_se: float | None, rng: RRandom) -> GeneratedW:
    """The steps of :func:`nmf_generate_w` (its arguments checked, the initial W drawn from
    ``rng``) with their intermediates (see :class:`GeneratedW`)."""
    if not isinstance(fractions, pd.DataFrame):
        raise ParameterTypeError(f"fractions must be a pandas DataFrame (samples x SEs), got {type(fractions).__name__}")
    if not isinstance(expression, pd.DataFrame):
        raise ParameterTypeError(f"expression must be a pandas DataFrame (genes x samples), got {type(expression).__name__}")
    n_feat = int(n_features)
    limit = r_inf_as_none(n_features_per_se)
    per_se: int | None = None if limit is None else int(limit)  # type: ignore[call-overload]  # checked
    fv, ev, genes, samples = _inputs(fractions, expression)
    if ev.shape[0] > n_feat:
        var = np.var(ev, axis=1, ddof=1) if ev.shape[1] > 1 else np.zeros(ev.shape[0])
        sel = top_by_score(np.nan_to_num(var, nan=0.0), n_feat)
        ev = ev[sel]
        genes = [genes[i] for i in sel]
    z = np.ascontiguousarray(ev.T)  # samples x genes
    if scale:
        # R hands NMFGenerateW a base matrix here, so Seurat takes its dense code path.
        z = pp.scale(z, method="dense")
    f = posneg_features(z, genes)
    if f.size == 0:
        raise TrainingInputError("no feature varies across the samples after scaling and posneg")
    m, k = f.size, fv.shape[1]
    w0 = initial_w(rng, m, k)
    v = np.ascontiguousarray(f.columns().T)
    codes = _membership(fv)
    if codes is not None:  # 0/1 membership: the W-steps converge to the per-SE means (METHOD.md 1.3)
        w_fit, n_iter = membership_means(f, codes, k), 420
    else:
        w_fit, n_iter = update_w(v, w0, np.ascontiguousarray(fv.T) + EPS, max_iter=MAX_ITER)
    rows = select_rows(w_fit, f.gene, per_se)
    ses = [str(c) for c in fractions.columns]
    out = pd.DataFrame(w_fit[rows], index=pd.Index([f.names[i] for i in rows], dtype=object),
                       columns=pd.Index(ses, dtype=object))
    return GeneratedW(V=pd.DataFrame(v, index=f.names, columns=samples), W0=w0,
                      W_fit=pd.DataFrame(w_fit, index=f.names, columns=ses), W=out, n_iter=int(n_iter))


def _inputs(
    fractions: pd.DataFrame, expression: pd.DataFrame
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[str], list[str]]:
    """Checked (fractions in the expression's sample order, expression genes x samples after
    R's raw-count guard, gene names, sample names)."""
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
    f.index = pd.Index(frac_index)
    fv = as_float_matrix(f.loc[samples], "fractions")
    if (fv < 0).any():
        raise TrainingInputError("fractions must be non-negative")
    ev = as_float_matrix(expression, "expression")  # genes x samples
    ev, _ = pp.raw_count_guard(ev, what="expression")
    return fv, ev, [str(g) for g in expression.index], samples


def _membership(fv: npt.NDArray[np.float64]) -> npt.NDArray[np.int64] | None:
    """The SE of each sample when ``fv`` is a 0/1 membership with no empty SE, else None."""
    if not (np.isin(fv, (0.0, 1.0)).all() and (fv.sum(axis=1) == 1).all()):
        return None
    codes = np.argmax(fv, axis=1).astype(np.int64)
    return codes if np.bincount(codes, minlength=fv.shape[1]).min() > 0 else None


def _resolve_rng(seed: int | None, rng: RRandom | None) -> RRandom:
    if rng is not None and seed is not None:
        raise ParameterTypeError("give either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, RRandom):
            raise ParameterTypeError(f"rng must be an ecorecover.rng.RRandom, got {type(rng).__name__}")
        return rng
    if seed is None:
        # R's NMFGenerateW draws W0 from an unseeded session: results vary between calls.
        seed = secrets.randbelow(2**31 - 1)
    return RRandom(seed)
