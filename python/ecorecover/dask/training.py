"""The runs of a training ensemble as tasks on a Dask cluster (see :func:`ecorecover.dask.train`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _train as _tr
from . import _distributed, get_client



def _train_one(prep: Any, seed: int, run_kw: dict[str, Any], stream: Any = None) -> Any:
    return _tr._run(prep, seed=seed, stream=stream, **run_kw)


def _train_runs(
    client: Any,
    prepared: Mapping[str, Any],
    seeds: list[int],
    run_kw: dict[str, Any],
    progress: bool,
    streams: list[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``[{cell type: _run(prepared[c], seed=s, stream=streams[r][c])} for r, s in enumerate(seeds)]``
    computed on the cluster (``streams``: where each W0 starts in R's session stream, or None)."""
    distributed = _distributed()
    client = get_client(client)
    names = list(prepared)
    scattered = dict(zip(names, client.scatter([prepared[c] for c in names], hash=False)))
    streams = streams if streams is not None else [dict.fromkeys(names) for _ in seeds]
    futures = [
        {c: client.submit(_train_one, scattered[c], s, run_kw, streams[r][c], pure=False) for c in names}
        for r, s in enumerate(seeds)
    ]
    if progress:
        from tqdm import tqdm

        flat = [f for d in futures for f in d.values()]
        with tqdm(total=len(seeds), desc="ecorecover.train: runs", unit="run") as bar:
            left = {id(d): len(d) for d in futures}
            owner = {f.key: id(d) for d in futures for f in d.values()}
            for f in distributed.as_completed(flat):
                left[owner[f.key]] -= 1
                if left[owner[f.key]] == 0:
                    bar.update(1)
    return client.gather(futures)
