"""The majority call per cell over repeated predictions, as R's ``LoocvPredict`` takes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import _collate
from .._params import StrOptions, validate_params
from .common import COLLATIONS

__all__ = ["vote"]


@validate_params({"collation": [StrOptions(COLLATIONS)]})
def vote(
    predictions: pd.DataFrame,
    *,
    cell_key: str = "CID",
    pred_key: str = "SE",
    cells: Sequence[str] | None = None,
    collation: _collate.Collation = "icu",
) -> pd.DataFrame:
    """The majority call per cell over repeated predictions, as R's ``LoocvPredict`` takes it.

    R: ``count(CID, SE) %>% arrange(desc(n)) %>% distinct(CID)``: the most frequent label; ties
    go to the label that sorts first under R's collation (``nonSE < NonSE < SE01`` with
    ``"icu"``; byte order with ``"C"``).

    Parameters
    ----------
    predictions
        Long table, one row per (prediction, cell): columns ``cell_key`` and ``pred_key``.
        Rows with a missing label do not vote.
    cell_key, pred_key
        Column names.
    cells
        Cells to report, in this order (cells without a vote get a missing call); default: the
        cells of ``predictions`` in first-seen order.
    collation
        Tie-break order, ``"icu"`` (R in any normal locale) or ``"C"``.

    Returns
    -------
    pandas.DataFrame
        Indexed by cell: ``call`` (the majority label, ``None`` without votes), ``n_votes`` and
        ``support`` (share of the votes for ``call``).
    """
    for k in (cell_key, pred_key):
        if k not in predictions.columns:
            raise KeyError(f"{k!r} is not a column of predictions (columns: {list(predictions.columns)})")
    ok = predictions[pred_key].notna().to_numpy()
    cell_col = predictions[cell_key].astype(str).to_numpy()
    pred_col = predictions[pred_key].to_numpy()[ok].astype(str)
    if cells is None:
        cell_index = pd.Index(pd.unique(cell_col))
    else:
        cell_index = pd.Index([str(c) for c in cells])
        if cell_index.has_duplicates:
            raise ValueError("cells holds duplicated ids")
    labels = _collate.collate_sorted(pred_col, collation)
    lab_pos = {lab: i for i, lab in enumerate(labels)}
    ci = cell_index.get_indexer(pd.Index(cell_col[ok]))
    li = np.fromiter((lab_pos[x] for x in pred_col), dtype=np.int64, count=len(pred_col))
    sel = ci >= 0
    counts = np.zeros((len(cell_index), max(1, len(labels))), dtype=np.int64)
    np.add.at(counts, (ci[sel], li[sel]), 1)
    n_votes = counts.sum(axis=1)
    best = counts.argmax(axis=1)  # first maximum = first label in collation order
    call = np.where(  # type: ignore[call-overload]
        n_votes > 0, np.asarray(labels + [None], dtype=object)[np.where(n_votes > 0, best, len(labels))], None
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        support = np.where(n_votes > 0, counts[np.arange(len(cell_index)), best] / np.maximum(n_votes, 1), np.nan)
    return pd.DataFrame({"call": call, "n_votes": n_votes, "support": support}, index=cell_index)
