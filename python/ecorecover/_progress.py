"""Progress bars: the one place that makes them (tqdm's, on stderr, quiet off a terminal).

Every long loop of the package (training runs, recovery runs, cross-validation splits,
permutation tests) shows its bar through :func:`progress_bar` or :func:`progress_iter`; with
``enabled=False``, or without a terminal (logs, CI, batch jobs: tqdm's ``disable=None``), nothing
is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["Progress", "progress_bar", "progress_iter"]

T = TypeVar("T")


class Progress(Protocol):
    """A progress bar: tqdm's, or one that shows nothing."""

    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _tqdm(**kwargs: Any) -> Any:
    """A tqdm bar (tqdm.auto: a widget in notebooks), or None should tqdm be missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    # disable=None: no bar when stderr is not a terminal
    return tqdm(disable=None, **kwargs)


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool = True, leave: bool = False) -> Progress:
    """A bar over ``total`` units to :meth:`~Progress.update` and :meth:`~Progress.close`
    (one that shows nothing when not ``enabled``)."""
    bar = _tqdm(total=total, desc=desc, unit=unit, leave=leave) if enabled else None
    return _NoProgress() if bar is None else bar


def progress_iter(
    iterable: Iterable[T], *, total: int, desc: str, unit: str, enabled: bool = True, leave: bool = False
) -> Iterator[T]:
    """``iterable`` with a bar advancing at each item (``iterable`` itself when not ``enabled``)."""
    bar = _tqdm(iterable=iterable, total=total, desc=desc, unit=unit, leave=leave) if enabled else None
    return iter(iterable if bar is None else bar)
