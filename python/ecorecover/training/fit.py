"""One run of one cell type: R's ``NMFGenerateW`` on the cells one seed draws.

:func:`fit_run` lays the cells out (:mod:`ecorecover.training.layout`), computes W and selects
its rows (:mod:`ecorecover.training.selection`). With a 0/1 membership H, R's 420 KL W-steps
converge to the per-SE means of the features (to < 1e-14), so those are computed directly
(:func:`membership_means`) and only rows whose selection rests on a near-tie are recomputed
with R's updates; cells of a dropped SE couple the rows, and then R's W-steps run in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..nmf import update_w
from ..rng import RRandom
from .layout import Features, Layout, layout
from .plan import Prepared
from .sampling import DrawOptions
from .selection import select_rows, select_with_exact_ties
from .streams import Stream

__all__ = ["EPS", "MAX_ITER", "RunOptions", "RunResult", "fit_run", "initial_w", "membership_means"]

#: R's ``.Machine$double.eps``: NMF's floor and the offset of H0 = F^T + eps.
EPS = float(np.finfo(np.float64).eps)
#: NMF's iteration cap (with H fixed the connectivity rule stops at exactly 420).
MAX_ITER = 2000

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RunOptions:
    """What a run needs besides its cell type, seed and stream (small and picklable)."""

    draw: DrawOptions
    n_features_per_se: int | None


@dataclass
class RunResult:
    """W of one run of one cell type (None, with ``reason``, when it gets no model)."""

    weights: pd.DataFrame | None
    cells: npt.NDArray[np.intp]      # global indices of the cells used, R's order
    reason: str = ""


def initial_w(rng: RRandom, m: int, k: int) -> F64:
    """R's ``matrix(runif(m * k), m, k)``: column-major fill."""
    return np.ascontiguousarray(rng.runif(m * k).reshape(k, m).T)


def membership_means(f: Features, codes: I64, k: int) -> F64:
    """Per-SE means of the features over their cells (``codes``: each cell's SE): features x
    k, floored at eps as R's last (420th) W-step floors W."""
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[:-1]).astype(np.int64)])
    w = (f.sums(order, starts) / counts[:, None]).T
    return np.ascontiguousarray(np.maximum(w, EPS))


def fit_run(prep: Prepared, seed: int, options: RunOptions, stream: Stream | None = None) -> RunResult:
    """One cell type, one seed: draws, posneg, membership, W, feature selection. ``stream``:
    where R's session stream stands for this cell type's W0 when R seeds nothing inside it
    (None: the stream of ``set.seed(seed)``)."""
    lay = layout(prep, seed=seed, draw_options=options.draw)
    if lay.features is None or lay.codes is None:
        return RunResult(None, lay.cells, lay.reason)
    f, codes, k = lay.features, lay.codes, len(lay.ses)
    h = np.full((k, codes.size), EPS)
    member = codes >= 0
    h[codes[member], np.flatnonzero(member)] = 1.0 + EPS
    w0 = _InitialW(lay, seed, stream)
    if member.all():
        w = membership_means(f, codes, k)

        def refit(rows: I64) -> F64:  # R's W-steps on these rows only, from R's W0 rows
            v = np.ascontiguousarray(f.columns(rows).T)
            exact: F64 = update_w(v, np.ascontiguousarray(w0.get()[rows]), h, max_iter=MAX_ITER, n_jobs=1)[0]
            return exact

        order = select_with_exact_ties(w, refit, f.gene, options.n_features_per_se)
    else:
        # Cells of dropped SEs stay in V with an all-eps H column: they couple the columns of
        # each row of W, so run R's W-steps.
        w, _ = update_w(np.ascontiguousarray(f.columns().T), w0.get(), h, max_iter=MAX_ITER, n_jobs=1)
        order = select_rows(w, f.gene, options.n_features_per_se)
    return RunResult(_frame(w, order, f, lay.ses), lay.cells)


class _InitialW:
    """R's initial W, drawn once when first needed: ``runif(m * k)`` right after the sampling
    draws, or from the session's stream."""

    def __init__(self, lay: Layout, seed: int, stream: Stream | None) -> None:
        self._lay, self._seed, self._stream = lay, seed, stream
        self._w0: F64 | None = None

    def get(self) -> F64:
        if self._w0 is None:
            lay = self._lay
            if lay.rng is not None:
                gen = lay.rng
            else:
                gen = self._stream.generator() if self._stream is not None else RRandom(self._seed)
            assert lay.features is not None
            self._w0 = initial_w(gen, lay.features.gene.size, len(lay.ses))
        return self._w0


def _frame(w: F64, order: I64, f: Features, ses: list[str]) -> pd.DataFrame:
    index = pd.Index([f.names[i] for i in order], dtype=object)
    return pd.DataFrame(w[order], index=index, columns=pd.Index(ses, dtype=object))
