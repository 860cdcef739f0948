"""R's cell draws inside ``NMFGenerateWList``: sample balancing and downsampling.

:func:`draw_rows` reproduces ``set.seed(seed)``, the per-sample ``sample(idx, target)`` and the
``sample.int(n, downsample)`` that follows, with the generator left where R leaves it (the
initial W continues from there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..rng import RRandom

__all__ = ["DrawOptions", "draw", "draw_rows"]


@dataclass(frozen=True)
class DrawOptions:
    """How cells are drawn for one run (small, hashable and picklable)."""

    balance: bool = True
    downsample: int | None = 2500
    min_cells: int = 20
    with_samples: bool = False


def draw_rows(
    block_sizes: Sequence[int],
    *,
    seed: int,
    balance: bool,
    downsample: int | None,
    min_cells: int,
    with_samples: bool,
) -> tuple[npt.NDArray[np.int64], RRandom | None]:
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


def draw(block_sizes: Sequence[int], seed: int, options: DrawOptions) -> tuple[npt.NDArray[np.int64], RRandom | None]:
    """:func:`draw_rows` with its options as a :class:`DrawOptions`."""
    return draw_rows(
        block_sizes, seed=seed, balance=options.balance, downsample=options.downsample,
        min_cells=options.min_cells, with_samples=options.with_samples,
    )
