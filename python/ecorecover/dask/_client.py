"""The Dask client of ecorecover.dask: dask.distributed imported on demand, and the client checked."""

from __future__ import annotations

from typing import Any

__all__ = ["get_client"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "ecorecover.dask needs dask.distributed: pip install 'ecorecover[dask]' (or 'dask[distributed]')"
        ) from e
    return distributed


def get_client(client: Any = None) -> Any:
    """``client`` itself, or the current :class:`dask.distributed.Client` when ``client`` is None.

    Raises
    ------
    ValueError
        No client is given and none is running in this process.
    TypeError
        ``client`` is not a :class:`dask.distributed.Client`.
    """
    distributed = _distributed()
    if client is None:
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError(
                "no Dask client: pass client=distributed.Client(...) (or start one first); for one machine "
                "without Dask use ecorecover.recover / ecorecover.train directly"
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return client
