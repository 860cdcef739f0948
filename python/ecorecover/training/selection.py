"""R's feature selection on a fitted W, with every near-tie decided on R's exact iterates.

The selection itself (the delta rule, METHOD.md 1.4-1.5, and the order by R's long-double
``rowSums``) is one Rust function, :func:`ecorecover._core.select_rows`. The closed-form W of a
0/1 membership is R's fixed point to ~1e-14; :func:`select_with_exact_ties` finds the decisions
that rest on differences below :data:`TIE_TOL` and has the rows involved recomputed exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from .. import _core

__all__ = ["TIE_TOL", "near_tie_rows", "row_sums", "select_rows", "select_with_exact_ties"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

#: Closed-form W differs from R's 420 W-steps by < 1e-13 (7.6e-15 measured); decisions on
#: values closer than this are re-made on R's exact iterates.
TIE_TOL = 1e-11


def select_rows(w: F64, row_gene: I64, n_per_se: int | None) -> I64:
    """R's feature selection (METHOD.md 1.4-1.5) on a fitted W (features x SEs).

    For each SE column, the features with ``delta = W_ia - (second largest of row i) > 0``,
    by decreasing delta, are mapped to their genes and the first ``n_per_se`` names (counted
    with duplicates, as R does) are kept; every row of every kept gene stays. ``None``: no
    selection (R's ``Inf``). Rows are then ordered by decreasing row sum (R's ``rowSums``, a
    long-double sum; ties keep the earlier row first). Returns row indices into ``w``.
    """
    return _core.select_rows(np.ascontiguousarray(w, dtype=np.float64),
                             np.ascontiguousarray(row_gene, dtype=np.int64), n_per_se)


def row_sums(w: F64) -> F64:
    """R's ``rowSums``: each row summed in order in x87 extended precision, rounded to double."""
    return _core.row_sums_ld(np.ascontiguousarray(w, dtype=np.float64))


def select_with_exact_ties(w: F64, refit: Callable[[I64], F64], row_gene: I64, n_per_se: int | None) -> I64:
    """Feature selection and row order on the closed-form ``w`` (patched in place), with every
    decision that rests on a near-tie re-made on R's exact iterates.

    The per-SE means are R's fixed point to ~1e-14, but where R's result rests on a tie at
    that level (two SEs with the same mean of a constant feature, two features with the same
    delta at the ``n_per_se`` cut, two rows with the same sum) the rounding noise of R's
    iterations decides. The W-step updates each row of W on its own, so ``refit(rows)`` gives
    those rows of R's W bit for bit, and the decisions are re-made until none is near a tie.
    """
    exact = np.zeros(w.shape[0], dtype=bool)
    while True:
        flagged = near_tie_rows(w, row_gene, n_per_se) & ~exact
        if not flagged.any():
            return select_rows(w, row_gene, n_per_se)
        rows = np.flatnonzero(flagged).astype(np.int64)
        w[rows] = refit(rows)
        exact[rows] = True


def near_tie_rows(w: F64, row_gene: I64, n_per_se: int | None) -> Mask:
    """Rows whose selection or order rests on a difference below :data:`TIE_TOL`: a row whose
    two largest values are that close, features at the ``n_per_se`` cut of an SE, and
    neighbours in the final order with that close row sums."""
    m, k = w.shape
    flag = np.zeros(m, dtype=bool)
    if n_per_se is not None:
        srt = np.sort(w, axis=1)
        delta = w - srt[:, -2][:, None]
        flag |= (srt[:, -1] - srt[:, -2]) < TIE_TOL  # is the row's delta > 0 at all?
        for a in range(k):
            idx = np.flatnonzero(delta[:, a] > 0)
            if idx.size <= n_per_se:
                continue
            d = np.sort(delta[idx, a])[::-1]
            lo, hi = d[n_per_se], d[n_per_se - 1]  # first out, last in
            if hi - lo < TIE_TOL:
                near = (np.abs(delta[:, a] - lo) < TIE_TOL) | (np.abs(delta[:, a] - hi) < TIE_TOL)
                flag |= near & (delta[:, a] > 0)
    rows = select_rows(w, row_gene, n_per_se)
    sums = row_sums(w[rows])
    close = np.flatnonzero(np.abs(np.diff(sums)) < TIE_TOL)
    flag[rows[close]] = True
    flag[rows[close + 1]] = True
    return flag
