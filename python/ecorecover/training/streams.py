"""Where R's random stream stands when a cell type draws its initial W.

Inside ``NMFGenerateWList`` a cell type's ``runif(m * k)`` continues the stream of its own
``set.seed(seed)`` draws when it has any; otherwise it continues R's session stream, across the
cell types in R's order (``ncores = 1``). :class:`Stream` names such a position compactly (a
seed, the draws of one earlier cell type, a number of uniforms to skip) so that any process
can rebuild the generator; :func:`session_streams` computes one per cell type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..rng import RRandom
from .layout import layout
from .plan import Prepared
from .sampling import DrawOptions, draw

__all__ = ["Stream", "run_streams", "session_streams"]


@dataclass(frozen=True)
class Stream:
    """Where R's random stream stands when a cell type's ``NMFGenerateW`` draws W0 while no
    ``set.seed`` happened inside that cell type: ``set.seed(seed)``, then (``draws``: block
    sizes and draw options of an earlier cell type) that cell type's balancing/downsampling
    draws, then ``skip`` uniforms (the W0s of the cell types trained since). Small and
    picklable, so Dask tasks rebuild the generator themselves."""

    seed: int
    skip: int = 0
    draws: tuple[tuple[int, ...], DrawOptions] | None = None

    def generator(self) -> RRandom:
        """A generator at this position of the stream."""
        g: RRandom | None
        if self.draws is None:
            g = RRandom(self.seed)
        else:
            g = draw(self.draws[0], self.seed, self.draws[1])[1]
            assert g is not None  # the draws seeded (that is why the stream restarted there)
        g.runif(self.skip)
        return g


def session_streams(
    prepared: Mapping[str, Prepared], *, seed: int, session_seed: int, draw_options: DrawOptions
) -> dict[str, Stream]:
    """Per cell type (in R's order, as R's ``ncores = 1`` loop trains them), the state of R's
    session stream after ``set.seed(session_seed)`` when its W0 is drawn: a cell type whose
    balancing or downsampling called ``set.seed(seed)`` restarts the stream there, and every
    cell type that reaches ``NMFGenerateW`` consumes ``m * k`` uniforms for its W0."""
    stream = Stream(session_seed)
    out: dict[str, Stream] = {}
    for c, p in prepared.items():
        lay = layout(p, seed=seed, draw_options=draw_options)
        if lay.rng is not None:
            stream = Stream(seed, 0, (tuple(int(b) for b in p.block_sizes), draw_options))
        out[c] = stream
        stream = Stream(stream.seed, stream.skip + lay.w0_size, stream.draws)
    return out


def run_streams(
    prepared: Mapping[str, Prepared], seed: int, session_seed: int | None, draw_options: DrawOptions
) -> dict[str, Stream | None]:
    """Per cell type, where its W0 comes from when R seeds nothing inside it (None: the stream of
    ``set.seed(seed)``; with ``session_seed``: R's session stream, see :func:`session_streams`)."""
    if session_seed is None:
        return dict.fromkeys(prepared)
    return dict(session_streams(prepared, seed=seed, session_seed=session_seed, draw_options=draw_options))
