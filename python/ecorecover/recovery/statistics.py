"""Per-gene statistics of each cell type, streamed over row blocks: what exact scaling needs.

R scales every model gene over the cells of a type (Seurat ScaleData) before any cell is
scored, so each (cell type, gene) slot needs its mean and standard deviation over the type's
scored cells, summed sequentially in cell order as R does. Pass 1 finds the cells expressing
fewer than 3 model genes (left out) and sums the non-zeros; pass 2 sums the squared deviations.

Each pass is one compiled kernel call per row block (``_core.gather_pass1`` /
``_core.gather_pass2``: :func:`pass1_block`, :func:`pass2_block`) that reads the model genes
straight from the block's own buffers and carries the sums from block to block in cell order,
so any engine that calls it on the blocks in order gets the same bits (an in-memory matrix is
one block). :func:`compute_statistics` drives the passes through an
:class:`~ecorecover.recovery.engine.Engine`, with R's raw-count guard (``log2(x + 1)`` when
the data look like counts) deciding whether pass 1 is repeated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from .. import _core
from .._naming import feature_names
from .._warnings import warn
from ..errors import NonFiniteValueError, RawCountWarning
from ..preprocessing import RAW_COUNT_MAX
from .constants import SCALE_MAX
from .matching import Group
from .source import Block

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "BlockChecks", "BlockScan", "Moments", "Pass1Job", "Pass1Result", "Pass2Job", "RunModel", "Statistics",
    "candidate_features", "compute_statistics", "pass1_block", "pass2_block", "run_models", "zscore",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
NegativeError = Callable[[float, str], "Exception | None"]


# --------------------------------------------------------------------------------------------
# One block


@dataclass(frozen=True)
class BlockScan:
    """What the first pass-1 attempt learns of a raw block: its first NaN/inf (row in the
    block, kept column, count, value), its first negative value (row, kept column, value), the
    range of its stored values and whether it has implicit zeros (raw-count guard)."""

    nonfinite: tuple[int, int, int, float] | None
    negative: tuple[int, int, float] | None
    min: float
    max: float
    implicit_zero: bool


KernelScan = tuple[int, "tuple[int, int, float] | None", "tuple[int, int, float] | None", float, float, bool]


def _block_scan(scan: KernelScan, start: int) -> BlockScan:
    """The kernel's scan (rows of the matrix read) with rows counted from the block's first."""
    count, bad, neg, mn, mx, zero = scan
    nonfinite = (bad[0] - start, bad[1], int(count), bad[2]) if count and bad is not None else None
    negative = (neg[0] - start, neg[1], neg[2]) if neg is not None else None
    return BlockScan(nonfinite, negative, mn, mx, zero)


class Moments:
    """Pass-1 accumulators per slot: sums (sequential in cell order: the kernel carries them
    from block to block), counts of non-zeros, min, max."""

    def __init__(self, size: int) -> None:
        self.s: F64 = np.zeros(size)
        self.nnz: I64 = np.zeros(size, dtype=np.int64)
        self.lo: F64 = np.full(size, np.inf)
        self.hi: F64 = np.full(size, -np.inf)


def pass1_block(
    block: Block, grp: I64, job: Pass1Job, acc: Moments, omitted: Bools, threads: int | None = None,
) -> BlockScan:
    """Pass 1 over one block (``grp``: its rows' groups; ``omitted``: its rows' flags, written):
    the scored cells' non-zeros added to ``acc`` in cell order; the scan of the raw values."""
    scan = _core.gather_pass1(
        block.m, block.start, block.stop, block.cols, np.ascontiguousarray(grp, dtype=np.int64), job.n_groups,
        job.scale, job.fired, acc.s, acc.nnz, acc.lo, acc.hi, omitted, n_threads=threads,
    )
    return _block_scan(scan, block.start)


def pass2_block(block: Block, grp: I64, job: Pass2Job, sq: F64, threads: int | None = None) -> F64:
    """Pass 2 over one block (``grp``: its rows' groups, omitted cells -1): the squared
    deviations of the scored cells' non-zeros added to ``sq`` in cell order (returns it)."""
    _core.gather_pass2(
        block.m, block.start, block.stop, block.cols, np.ascontiguousarray(grp, dtype=np.int64), job.mean,
        job.fired, sq, n_threads=threads,
    )
    return sq


# --------------------------------------------------------------------------------------------
# The passes over all blocks (through an engine)


@dataclass(frozen=True)
class Pass1Job:
    """Pass 1 over every block: ``group_of_row`` (-1: not scored); ``first``: the attempt that
    scans the raw blocks (checks, raw-count guard); ``fired``: apply ``log2(x + 1)``."""

    group_of_row: I64
    scale: bool
    n_groups: int
    n_cols: int
    first: bool
    fired: bool
    find_negative: bool

    @property
    def size(self) -> int:
        """Number of (cell type, gene) slots."""
        return self.n_groups * self.n_cols


@dataclass
class Pass1Result:
    """Pass 1's sums and the cells left out ("< 3 genes", per input row)."""

    moments: Moments
    omitted: Bools


@dataclass(frozen=True)
class Pass2Job:
    """Pass 2 over every block: ``group_of_row`` without the omitted cells, the slots' means."""

    group_of_row: I64
    mean: F64
    n_cols: int
    fired: bool


class BlockChecks:
    """Checks of the raw blocks in cell order (NaN/inf; negative values when refused) and the
    range of the model genes for R's raw-count guard."""

    def __init__(self, cell_ids: Sequence[str], gene_names: Sequence[str] | object, refuse_negative: NegativeError | None) -> None:
        self.cell_ids, self.gene_names, self.refuse_negative = cell_ids, gene_names, refuse_negative
        self.min, self.max, self.implicit_zero = np.inf, -np.inf, False

    def _gene(self, c: int) -> str:
        return str(self.gene_names[c])  # type: ignore[index]

    def __call__(self, a: int, scan: BlockScan) -> None:
        """Check the block whose first row is ``a`` (raises on bad values) and fold its range."""
        if scan.nonfinite is not None:
            r, c, count, value = scan.nonfinite
            raise NonFiniteValueError(
                f"the expression matrix holds non-finite values (NaN or inf) in the model genes "
                f"({count} in the cells read with it), first at cell {self.cell_ids[a + r]!r}, gene "
                f"{self._gene(c)!r}: {value!r}; remove or impute them first"
            )
        if self.refuse_negative is not None and scan.negative is not None:
            r, c, value = scan.negative
            err = self.refuse_negative(value, f" at cell {self.cell_ids[a + r]!r}, gene {self._gene(c)!r}")
            if err is not None:
                raise err
        self.min, self.max = min(self.min, scan.min), max(self.max, scan.max)
        self.implicit_zero = self.implicit_zero or scan.implicit_zero

    def guard_fires(self) -> bool:
        """R's raw-count guard on the model genes (min >= 0, max > 80): warn and return True."""
        mn = min(self.min, 0.0) if self.implicit_zero else self.min
        if mn >= 0 and self.max > RAW_COUNT_MAX:
            warn(
                f"the expression matrix (model genes) looks like raw counts (min >= 0, max {self.max:g} > "
                f"{RAW_COUNT_MAX:g}); applying log2(x + 1) as R SpatialEcoTyper does. Pass "
                "log-normalised data (ecorecover.preprocessing.log_normalize) to avoid this.",
                RawCountWarning,
            )
            return True
        return False


@dataclass
class Statistics:
    """Per (cell type, gene) slot, ``group * n_cols + column``: mean, sd (``scale`` only) and
    range over the type's scored cells; the cells left out; whether the guard fired."""

    mean: F64
    sd: F64 | None
    xmin: F64
    xmax: F64
    omitted: Bools
    fired: bool
    n_cols: int


def compute_statistics(
    engine: Engine, groups: list[Group], group_of_row: I64, n_cols: int, *, scale: bool, guard: bool,
    checks: BlockChecks,
) -> Statistics:
    """Passes 1 (repeated on ``log2(x + 1)`` when the raw-count guard fires) and 2 (``scale``).
    Drops the omitted cells from ``groups`` (``rows``, ``n_scored``)."""
    fired = False
    for attempt in range(2):
        job = Pass1Job(group_of_row, scale, len(groups), n_cols, attempt == 0, fired, checks.refuse_negative is not None)
        res = engine.pass1(job, checks)
        if job.first and guard and checks.guard_fires():
            fired = True
            continue
        break
    n_t, nnz = _drop_omitted(groups, res.omitted, n_cols), res.moments.nnz
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = res.moments.s / n_t
    # Range of each gene over the type's cells (for fast mode's zero-variance filter).
    has_zero = nnz < n_t
    xmin = np.where(has_zero, np.minimum(res.moments.lo, 0.0), res.moments.lo)
    xmax = np.where(has_zero, np.maximum(res.moments.hi, 0.0), res.moments.hi)
    stats = Statistics(mean, None, xmin, xmax, res.omitted, fired, n_cols)
    if scale:
        scored = np.where(res.omitted, -1, group_of_row)
        sq = engine.pass2(Pass2Job(scored, mean, n_cols, fired))
        n_zeros = (n_t - nnz).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = (sq + mean * mean * n_zeros) / (n_t - 1.0)
        stats.sd = np.sqrt(var)
    return stats


def _drop_omitted(groups: list[Group], omitted: Bools, n_cols: int) -> F64:
    """Keep each group's scored cells; the number of them per slot."""
    n_kept = np.zeros(len(groups), dtype=np.int64)
    for gi, g in enumerate(groups):
        keep = ~omitted[g.rows]
        g.rows = g.rows[keep]
        g.n_scored = int(keep.sum())
        n_kept[gi] = g.n_scored
    return np.repeat(n_kept, n_cols).astype(np.float64)


# --------------------------------------------------------------------------------------------
# What a run needs of the statistics


def zscore(x: F64, mean: F64, sd: F64) -> F64:
    """Seurat ScaleData's value for x given the gene's mean and sd: NaN -> 0, > 10 -> 10."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z: F64 = (x - mean) / sd
    z[np.isnan(z)] = 0.0
    z[z > SCALE_MAX] = SCALE_MAX
    return z


@dataclass(frozen=True)
class RunModel:
    """What every run of a cell type needs: its model (without its cells), the mean and sd
    (None without ``scale``) of its genes present, and which of its positive / negative
    features are constant over the type's scored cells."""

    group: Group
    mean: F64
    sd: F64 | None
    const: tuple[Bools, Bools]
    features: tuple[str, ...] = ()  # V's candidate rows: ``GENE__pos`` then ``GENE__neg`` (posneg), or genes
    in_w: Bools = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # which are rows of W


def run_models(stats: Statistics, groups: list[Group]) -> list[RunModel]:
    """The :class:`RunModel` of every group."""
    out = []
    for gi, g in enumerate(groups):
        sl = slice(gi * stats.n_cols, (gi + 1) * stats.n_cols)
        mean = stats.mean[sl][g.cols]
        sd = stats.sd[sl][g.cols] if stats.sd is not None else None
        const = _constant_features(g, stats.xmin[sl][g.cols], stats.xmax[sl][g.cols], mean, sd)
        feats = candidate_features(g)
        in_w = np.array([f in g.w.index for f in feats], dtype=bool)
        out.append(RunModel(dataclasses.replace(g, rows=np.zeros(0, dtype=np.int64)), mean, sd, const, feats, in_w))
    return out


def candidate_features(g: Group) -> tuple[str, ...]:
    """NMFpredict's features of a group's genes present, in V's order: every ``GENE__pos``
    then every ``GENE__neg`` (posneg), or the genes."""
    if g.posneg:
        return tuple(feature_names(g.present))
    return tuple(g.present)


def _constant_features(g: Group, lo: F64, hi: F64, mean: F64, sd: F64 | None) -> tuple[Bools, Bools]:
    """Per model gene: is its positive / negative feature (or, without posneg, the gene)
    constant over the cell type's scored cells? The scaling is monotone, so the range of
    the feature follows from the gene's minimum and maximum."""
    if sd is not None:
        lo, hi = zscore(lo[None, :], mean, sd)[0], zscore(hi[None, :], mean, sd)[0]
    if not g.posneg:
        c = lo == hi
        return c, c
    pos = np.maximum(hi, 0.0) == np.maximum(lo, 0.0)
    neg = np.maximum(-lo, 0.0) == np.maximum(-hi, 0.0)
    return pos, neg
