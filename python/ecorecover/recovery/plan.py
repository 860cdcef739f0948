"""The runs: which cells of which cell type are solved together, and cutting them out of blocks.

Exact mode reproduces R's ``NMFpredict`` runs: the scored cells of a type, in input order, cut
into ``ceil(n / cells_per_run)`` contiguous runs of as-equal-as-possible size (the iteration
count of a run couples its cells, so the cut matters). Fast mode solves every cell on its own;
its chunks only bound memory. :func:`runs_in_block` and :func:`join_pieces` are the per-block
extraction the engines share: a run's rows are cut out of each block holding some, and joined
once the run is complete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .constants import FAST_CHUNK, MIN_MODEL_GENES, Mode
from .matching import Group

__all__ = ["RunPiece", "RunPlan", "RunSpec", "join_pieces", "plan_runs", "runs_in_block"]

I64 = npt.NDArray[np.int64]


class RunSpec(NamedTuple):
    """One run: its group (cell type), its index among the group's runs, its number of cells."""

    group: int
    run: int
    size: int


@dataclass(frozen=True)
class RunPlan:
    """The run of every input row (-1: none) and the runs, grouped by cell type in order."""

    run_of_row: I64
    runs: list[RunSpec]

    def last_block(self, bounds: Sequence[tuple[int, int]]) -> I64:
        """Per run, the index of the last of the blocks ``bounds`` that holds some of its rows."""
        last = np.full(len(self.runs), -1, dtype=np.int64)
        for i, (a, b) in enumerate(bounds):
            rid = self.run_of_row[a:b]
            last[np.unique(rid[rid >= 0])] = i
        return last


def plan_runs(groups: list[Group], n_rows: int, mode: Mode, cells_per_run: int) -> RunPlan:
    """R's runs (exact) or chunks of :data:`FAST_CHUNK` cells (fast) of each group's scored cells;
    groups without scored cells or with fewer than 5 model genes have none."""
    run_of_row = np.full(n_rows, -1, dtype=np.int64)
    runs: list[RunSpec] = []
    for gi, g in enumerate(groups):
        n = g.n_scored
        if n == 0 or g.cols.size < MIN_MODEL_GENES:
            continue
        if mode == "exact":
            n_runs = math.ceil(n / cells_per_run)
            base, extra = divmod(n, n_runs)
            sizes = [base + 1 if i < extra else base for i in range(n_runs)]
        else:
            sizes = [min(FAST_CHUNK, n - i) for i in range(0, n, FAST_CHUNK)]
        start = 0
        for ri, sz in enumerate(sizes):
            run_of_row[g.rows[start : start + sz]] = len(runs)
            runs.append(RunSpec(gi, ri, sz))
            start += sz
    return RunPlan(run_of_row, runs)


class RunPiece(NamedTuple):
    """Some of a run's cells: their input rows and their (transformed) values."""

    rows: I64
    x: sp.csr_matrix


def runs_in_block(blk: sp.csr_matrix, rid: I64, a: int) -> dict[int, RunPiece]:
    """The rows of each run in the block whose first row is ``a`` (``rid``: run per row)."""
    out = {}
    for r in np.unique(rid[rid >= 0]):
        local = np.flatnonzero(rid == r)
        out[int(r)] = RunPiece(local + a, blk[local])
    return out


def join_pieces(pieces: Sequence[RunPiece]) -> RunPiece:
    """A run's pieces, in block order, as one piece."""
    return RunPiece(np.concatenate([p.rows for p in pieces]), sp.vstack([p.x for p in pieces], format="csr"))
