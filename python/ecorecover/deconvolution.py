"""Bulk deconvolution into spatial ecotype (SE) abundances: R SpatialEcoTyper's ``DeconvoluteSE``.

A bulk model is one W matrix (features ``GENE__pos`` / ``GENE__neg`` x SEs), trained on
pseudo-bulk SE fractions with :func:`ecorecover.nmf_generate_w` (METHOD.md section 5) or read
from R (``ecorecover.read_r_models("Bulk_SE_Recovery_W.rds")``). :func:`deconvolve` applies it
as R does (METHOD.md sections 4, 5 and 7):

1. R's raw-count guard on the whole bulk matrix (``min >= 0`` and ``max > 80``: ``log2(x + 1)``);
2. with ``scale``, each gene is scaled over all samples **once**, with Seurat ``ScaleData``'s
   dense (base matrix) code path, before the samples are split into runs;
3. the samples are split into contiguous runs of ``samples_per_run`` (as-equal-as-possible
   sizes); per run: posneg, zero-variance filter over the run, features shared with W,
   ``set.seed(39)`` initial H, KL H-steps under NMF's connectivity stopping rule;
4. optionally each sample's scores are divided by their sum (R's ``sum2one``).

The runs themselves are :func:`ecorecover.nmf_predict` (``scale=False``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import preprocessing as _pp
from .recovery import EXPRESSED, MIN_GENES_EXPRESSED, GeneMatchError, Mode, RecoveryWarning, nmf_predict
from .recovery.inputs import RUN_PARAMS
from ._naming import model_genes
from ._params import Interval, validate_params
from .errors import InputDataError, NonFiniteValueError, ParameterError, ParameterTypeError
from ._warnings import warn

__all__ = ["deconvolve", "DeconvolutionWarning"]

#: What deconvolve's arguments accept (checked by its ``_params.validate_params`` decorator).
_PARAMS: dict[str, list[Any]] = {
    "scale": ["boolean"], "samples_per_run": [Interval(Integral, 1, None)], "sum_to_one": ["boolean"],
    "mode": RUN_PARAMS["mode"], "n_jobs": RUN_PARAMS["n_jobs"], "return_runs": ["boolean"],
}


class DeconvolutionWarning(RecoveryWarning):
    """Something R's DeconvoluteSE does silently (samples left unscored, model genes missing)."""


def _model_frame(model_w: Any) -> pd.DataFrame:
    """The bulk W as a DataFrame, from a DataFrame, a one-entry mapping or a model file."""
    if isinstance(model_w, (str, os.PathLike)):
        from .io import read_r_models

        model_w = read_r_models(Path(model_w))
    if isinstance(model_w, pd.DataFrame):
        return model_w
    if isinstance(model_w, Mapping):
        names = list(model_w)
        if len(names) != 1:
            raise ParameterError(
                f"model_w must be one W matrix; got a model with {len(names)} entries ({names[:5]}): "
                "pass the bulk model's W, e.g. model_w=model['<name>']"
            )
        w = model_w[names[0]]
        if not isinstance(w, pd.DataFrame):
            raise ParameterTypeError(f"model_w[{names[0]!r}] must be a DataFrame, got {type(w).__name__}")
        return w
    raise ParameterTypeError(
        "model_w must be a features x SEs DataFrame, a one-entry RecoveryModel / mapping, or the path "
        f"of an R model file (.rds/.tsv); got {type(model_w).__name__}"
    )


def _bulk_matrix(bulk: Any) -> tuple[Any, list[str], list[str]]:
    """(samples x genes matrix, sample ids, gene names) from a genes x samples DataFrame or an
    AnnData (samples x genes)."""
    try:
        import anndata
    except ImportError:  # pragma: no cover - anndata is a dependency
        anndata = None
    if anndata is not None and isinstance(bulk, anndata.AnnData):
        x = bulk.X
        if x is None:
            raise InputDataError("bulk.X is empty; deconvolution needs the bulk expression in X (samples x genes)")
        return x, [str(s) for s in bulk.obs_names], [str(g) for g in bulk.var_names]
    if isinstance(bulk, pd.DataFrame):
        bad = [str(c) for c, d in bulk.dtypes.items() if d.kind not in "iuf"]
        if bad:
            raise ParameterTypeError(
                f"bulk must hold numbers only (genes x samples); non-numeric column(s): {bad[:5]}"
            )
        return bulk.to_numpy(dtype=np.float64).T, [str(s) for s in bulk.columns], [str(g) for g in bulk.index]
    raise ParameterTypeError(
        "bulk must be a genes x samples pandas DataFrame (as R's DeconvoluteSE) or an AnnData "
        f"(samples x genes); got {type(bulk).__name__}"
    )


#: Per-run details of :func:`deconvolve` with ``return_runs=True``.
Runs = list[dict[str, Any]]


@overload
def deconvolve(
    bulk: Any, model_w: Any, *, scale: bool = True, samples_per_run: int = 500, sum_to_one: bool = True,
    mode: Mode = "exact", n_jobs: int | None = None, return_runs: Literal[False] = False,
) -> pd.DataFrame: ...


@overload
def deconvolve(
    bulk: Any, model_w: Any, *, scale: bool = True, samples_per_run: int = 500, sum_to_one: bool = True,
    mode: Mode = "exact", n_jobs: int | None = None, return_runs: Literal[True],
) -> tuple[pd.DataFrame, Runs]: ...


@validate_params(_PARAMS, where="ecorecover.deconvolve()")
def deconvolve(
    bulk: Any,
    model_w: Any,
    *,
    scale: bool = True,
    samples_per_run: int = 500,
    sum_to_one: bool = True,
    mode: Mode = "exact",
    n_jobs: int | None = None,
    return_runs: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, Runs]:
    """Estimate SE abundances in bulk expression profiles: R's ``DeconvoluteSE``.

    Parameters
    ----------
    bulk
        Bulk expression: a genes x samples :class:`pandas.DataFrame` (R's orientation; index =
        gene names, columns = sample ids) or an :class:`anndata.AnnData` with samples x genes
        (dense or sparse ``X``). Raw counts or log scale: a matrix with ``min >= 0`` and
        ``max > 80`` is taken for raw counts and gets ``log2(x + 1)`` (R's guard, with a
        :class:`~ecorecover.preprocessing.RawCountWarning`).
    model_w
        The bulk model's W: a features x SEs DataFrame (``GENE__pos`` / ``GENE__neg`` rows), a
        one-entry :class:`~ecorecover.RecoveryModel` (as :func:`ecorecover.read_r_models`
        returns for ``Bulk_SE_Recovery_W.rds``), or the path of such a file. R's ``W = NULL``
        (the published bulk model) is not shipped: pass it explicitly.
    scale
        Scale each gene over all samples (Seurat ``ScaleData``, dense code path) before the
        runs. Samples expressing fewer than 3 genes (value > 1e-16) are then not scored.
    samples_per_run
        Samples per NMF run (R's ``nsample.per.run``): ``ceil(n / samples_per_run)`` contiguous
        runs of as-equal-as-possible size. Runs couple their samples (stopping rule, zero-variance
        filter), so the result depends on it (by up to 0.1 on R's own fixture).
    sum_to_one
        Divide each sample's scores by their sum (R's ``sum2one``); otherwise return the raw H.
    mode
        ``"exact"`` reproduces R; ``"fast"`` solves each sample's problem to convergence alone.
    n_jobs
        Threads (None or -1: all cores). Results do not depend on it.
    return_runs
        Also return, per run, a dict with ``cells`` (sample ids), ``features`` (V's rows, R's
        order), ``H0``, ``H_raw`` (SEs x samples) and ``n_iter``.

    Returns
    -------
    pandas.DataFrame
        Samples (input order) x SEs (W's column order): the SE abundances. Samples that could
        not be scored are NaN rows (R drops them). With ``return_runs``: ``(scores, runs)``.

    Raises
    ------
    TypeError
        ``bulk`` or ``model_w`` of an unsupported type, non-numeric expression.
    ValueError
        NaN/inf in the expression of the model genes, duplicated sample ids, a W with negative
        or non-finite weights, bad ``samples_per_run``.
    GeneMatchError
        None of the model's genes is in ``bulk`` (a ``KeyError``).

    Warns
    -----
    RawCountWarning
        The guard fired.
    DeconvolutionWarning
        Fewer than 5 model genes in the data (all scores NaN, as R), under half of the model's
        genes found, samples expressing fewer than 3 genes (not scored).

    Notes
    -----
    R's guard is applied to the whole matrix here (R's ``DeconvoluteSE`` receives the whole
    matrix); on the ``deconvolute/`` fixture it fires either way. Scores match R's to
    ~2e-16 on that fixture (default, ``sum2one = FALSE``, ``nsample.per.run = 10``).
    """
    w = _model_frame(model_w)
    x, samples, genes = _bulk_matrix(bulk)
    present, cols = _model_genes_in_bulk(w, samples, genes)
    x, _ = _pp.raw_count_guard(_finite(x, genes), what="the bulk expression matrix")  # R's guard, whole matrix
    sub = x[:, cols]
    sub = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    keep = np.ones(len(samples), dtype=bool)
    if scale:
        keep = _expressing_samples(x, samples)
        if not keep.any():
            out = pd.DataFrame(np.nan, index=samples, columns=[str(c) for c in w.columns])
            none: Runs = []
            return (out, none) if return_runs else out
        sub = _pp.scale(np.asfortranarray(sub[keep]), method="dense", n_jobs=n_jobs)
    kept_ids = [s for s, k in zip(samples, keep) if k]
    frame = pd.DataFrame(sub, index=kept_ids, columns=present)
    with warnings.catch_warnings():
        # nmf_predict words its warnings for cells; re-issue ours for samples below.
        warnings.simplefilter("ignore", RecoveryWarning)
        scores, runs = nmf_predict(
            w, frame, scale=False, cells_per_run=int(samples_per_run), sum_to_one=sum_to_one, mode=mode,
            n_jobs=n_jobs, return_runs=True,
        )
    _warn_unscored(present, kept_ids, scores)
    scores = scores.reindex(samples)
    scores.index.name = None
    return (scores, runs) if return_runs else scores


def _model_genes_in_bulk(w: pd.DataFrame, samples: list[str], genes: list[str]) -> tuple[list[str], np.ndarray]:
    """(the model's genes found in ``bulk``, in the model's order; their columns in the matrix).
    Refuses repeated sample ids and a bulk without any model gene; warns (at the caller of
    :func:`deconvolve`) about repeated gene names and when under half of the genes are found."""
    if len(set(samples)) != len(samples):
        dup = pd.Index(samples)
        raise InputDataError(f"sample ids must be unique; duplicated: {list(dict.fromkeys(dup[dup.duplicated()]))[:5]}")
    gene_pos: dict[str, int] = {}
    for i, g in enumerate(genes):
        gene_pos.setdefault(g, i)
    if len(gene_pos) != len(genes):
        warn(
            f"{len(genes) - len(gene_pos)} duplicated gene names in bulk; the first occurrence of each is used",
            DeconvolutionWarning,
        )
    mgenes = model_genes(w.index)
    present = [g for g in mgenes if g in gene_pos]
    if not present:
        raise GeneMatchError(
            f"none of the model's {len(mgenes)} genes is in bulk: the model uses identifiers like {mgenes[:5]}, "
            f"bulk has genes like {genes[:5]}"
        )
    if len(present) < 0.5 * len(mgenes):
        warn(
            f"only {len(present)} of the model's {len(mgenes)} genes are in bulk; the scores rest on those",
            DeconvolutionWarning,
        )
    return present, np.array([gene_pos[g] for g in present], dtype=np.int64)


def _finite(x: Any, genes: list[str]) -> Any:
    """The bulk matrix as float64 (CSR when sparse), refusing NaN or inf (naming genes)."""
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float64)
        if x.nnz and not np.all(np.isfinite(x.data)):
            cols = np.unique(x.indices[~np.isfinite(x.data)])
            raise NonFiniteValueError(
                f"bulk holds NaN or inf values (genes {[genes[c] for c in cols[:5]]}); remove or impute them"
            )
        return x
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        cols = np.flatnonzero(~np.all(np.isfinite(x), axis=0))
        raise NonFiniteValueError(f"bulk holds NaN or inf values (genes {[genes[c] for c in cols[:5]]}); remove or impute them")
    return x


def _expressing_samples(x: Any, samples: list[str]) -> np.ndarray:
    """Samples expressing at least ``MIN_GENES_EXPRESSED`` genes of the whole matrix (NMFpredict's
    rule); the others are not scored, with a warning at the caller of :func:`deconvolve`."""
    if sp.issparse(x):
        expressed = np.asarray((x > EXPRESSED).sum(axis=1)).ravel()
    else:
        expressed = (x > EXPRESSED).sum(axis=1)
    keep: np.ndarray = expressed >= MIN_GENES_EXPRESSED
    if not keep.all():
        warn(
            f"{int((~keep).sum())} sample(s) express fewer than {MIN_GENES_EXPRESSED} genes and are not scored "
            f"(NaN rows; R drops them): {[s for s, k in zip(samples, keep) if not k][:5]}",
            DeconvolutionWarning,
        )
    return keep


def _warn_unscored(present: list[str], kept_ids: list[str], scores: pd.DataFrame) -> None:
    """Warn (at the caller of :func:`deconvolve`) when too few model genes left every score NaN,
    or when samples lost every model feature to their run's zero-variance filter."""
    if len(present) < 5:
        warn(
            f"only {len(present)} of the model's genes are in bulk (at least 5 needed): scores are NaN, as R",
            DeconvolutionWarning,
        )
    lost = [s for s in kept_ids if s not in scores.index]
    if lost and len(present) >= 5:
        warn(
            f"{len(lost)} sample(s) are not scored (no model feature left after the zero-variance filter of their "
            f"run): {lost[:5]}",
            DeconvolutionWarning,
        )
