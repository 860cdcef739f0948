"""The runs: which cells of which cell type are solved together, and cutting them out of blocks.

Exact mode reproduces R's ``NMFpredict`` runs: the scored cells of a type, in input order, cut
into ``ceil(n / cells_per_run)`` contiguous runs of as-equal-as-possible size (the iteration
count of a run couples its cells, so the cut matters). Fast mode solves every cell on its own;
its chunks only bound memory. :func:`runs_in_block` and :func:`join_pieces` are the per-block
extraction the engines share: a run's rows are cut out of each block holding some, and joined
once the run is complete. A run's cells reach a solver as :class:`RunCells`: rows and columns of
a kernel-readable matrix (the whole in-memory input, read in place, or the joined pieces).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .constants import FAST_CHUNK, MIN_MODEL_GENES, Mode
from .matching import Group
from .source import Block, CsrArrays

__all__ = ["RunCells", "RunPiece", "RunPlan", "RunSpec", "join_pieces", "plan_runs", "runs_in_block"]

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
    rows: list[I64]  # per run, its input rows (ascending)

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
    rows: list[I64] = []
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
            rows.append(g.rows[start : start + sz])
            start += sz
    return RunPlan(run_of_row, runs, rows)


@dataclass(frozen=True)
class RunCells:
    """A run's cells as the kernels read them: rows ``rows`` (ascending) x columns ``cols`` (the
    group's genes present, in model order) of ``m``; ``transform``: ``log2(x + 1)`` to apply."""

    m: Any
    rows: I64
    cols: I64
    transform: bool


class RunPiece(NamedTuple):
    """Some of a run's cells: their input rows and their (transformed) values, the group's
    genes present in model order, as CSR."""

    rows: I64
    x: CsrArrays


def runs_in_block(
    block: Block, rid: I64, runs: Sequence[RunSpec], group_cols: Sequence[I64], fired: bool,
    threads: int | None = None,
) -> dict[int, RunPiece]:
    """The cells of each run in ``block`` (``rid``: run per row of the block), read by the
    kernel (``group_cols``: per group, its genes' slots)."""
    out = {}
    for r in np.unique(rid[rid >= 0]).tolist():
        local = np.flatnonzero(rid == r)
        cols = block.cols[group_cols[runs[r].group]]
        p, i, d = _core.gather_csr(block.m, local + block.start, cols, fired, n_threads=threads)
        out[int(r)] = RunPiece(local + block.a, CsrArrays(p, i, d, (len(local), len(cols))))
    return out


def join_pieces(pieces: Sequence[RunPiece]) -> tuple[RunCells, I64]:
    """A run's pieces, in block order: its cells (transformed, as CSR) and input rows."""
    if len(pieces) == 1:
        x, rows = pieces[0].x, pieces[0].rows
    else:
        offsets = np.cumsum([0] + [len(p.x.data) for p in pieces[:-1]])
        indptr = np.concatenate([[0]] + [p.x.indptr[1:] + o for p, o in zip(pieces, offsets)])
        x = CsrArrays(
            indptr.astype(np.int64), np.concatenate([p.x.indices for p in pieces]),
            np.concatenate([p.x.data for p in pieces]), (int(sum(p.x.shape[0] for p in pieces)), pieces[0].x.shape[1]),
        )
        rows = np.concatenate([p.rows for p in pieces])
    n, k = x.shape
    return RunCells(x, np.arange(n, dtype=np.int64), np.arange(k, dtype=np.int64), False), rows
