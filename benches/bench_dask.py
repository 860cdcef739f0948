#!/usr/bin/env python3
"""Dask benchmark: ecorecover.recover on a dask.distributed LocalCluster with 1 and 2 workers.

The data are the cached simulated recovery set of ``benches/common.py`` (1,000,000 cells x 500
genes, log-normalised CSR .h5ad, written once by ``bench_recover.py`` or here), recovered with
the published MERSCOPE models (read from /work/shared/published_models, never copied). ``X`` is
opened lazily (``anndata.experimental.read_elem_lazy``, row chunks of ``--chunk-rows`` cells), so
the workers read their blocks from the file themselves and nothing but the scores reaches the
client. Each configuration runs in its own subprocess with a fresh LocalCluster
(``n_workers`` worker processes x 1 thread, loopback, no dashboard):

* ``fast`` mode on all 1,000,000 cells: in process (backed h5ad, 2 threads) and Dask with 1 and
  2 workers;
* ``exact`` mode on the first ``--exact-cells`` cells (50,000 by default; exact mode on 1M cells
  takes ~10 min per configuration on 2 cores): the same three configurations.

Recorded per configuration: wall time and cells/s, the peak RSS of every worker process
(``VmHWM``, read on the workers at the end; the workers import ecorecover before the clock
starts, as in a long-lived cluster), the client's peak RSS, the 1-minute load average
before / after and sampled during the run (the machine is shared), and a digest of the results
(SE labels and score bytes), which must be the same for every configuration of a mode.

    python benches/bench_dask.py                      # the full set (~10-15 min on 2 cores)
    python benches/bench_dask.py --cells 200000 --exact-cells 20000
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
CELLS_PER_RUN = 1000


def _warm() -> None:
    """Import what the tasks need on a worker (once per worker process; not timed)."""
    import anndata  # noqa: F401
    import h5py  # noqa: F401

    import ecorecover.dask  # noqa: F401


def _vmhwm() -> int:
    """Peak RSS of the calling process (run on each worker)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


class _LoadSampler:
    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, args=(every,), daemon=True)

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(C.loadavg())

    def __enter__(self) -> _LoadSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def _digest(out: Any) -> str:
    h = hashlib.sha256()
    h.update("\n".join(map(str, out.index)).encode())
    h.update("\n".join(map(str, out["SE"])).encode())
    h.update(np.ascontiguousarray(out.iloc[:, 4:].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def phase_recover(args: dict[str, Any]) -> dict[str, Any]:
    import anndata as ad
    import h5py

    import ecorecover

    model = ecorecover.load_published_models(str(C.PUBLISHED_MODELS))
    n = int(args["cells"])
    n_workers = int(args["workers"])
    kw = dict(celltype_key="CellType", min_score=0.0, cells_per_run=CELLS_PER_RUN, mode=args["mode"], progress=False)
    client = cluster = None
    fh = None
    if n_workers == 0:  # in process, backed h5ad
        adata = ad.read_h5ad(args["data"], backed="r")
        if n < adata.n_obs:
            adata = adata[:n].to_memory()
    else:
        import distributed
        from anndata.experimental import read_elem_lazy
        from anndata.io import read_elem

        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        client = distributed.Client(cluster)
        client.run(_warm)
        fh = h5py.File(args["data"], "r")
        x = read_elem_lazy(fh["X"], chunks=(int(args["chunk_rows"]), -1))
        obs, var = read_elem(fh["obs"]), read_elem(fh["var"])
        adata = ad.AnnData(x[:n], obs=obs.iloc[:n].copy(), var=var)
        kw["client"] = client
        kw["n_jobs"] = None
    before = C.rss()
    with warnings.catch_warnings(record=True) as caught, _LoadSampler() as load:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        out = ecorecover.recover(adata, model, **kw)
        wall = time.perf_counter() - t0
    res: dict[str, Any] = {
        "wall": wall, "cells": int(len(out)), "cells_per_s": len(out) / wall, "rss_before": before,
        "digest": _digest(out), "load_during": load.samples,
        "timings": out.attrs["ecorecover"].get("timings", {}),
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught}),
    }
    if client is not None:
        res["worker_peak_rss"] = sorted(client.run(_vmhwm).values())
        res["n_blocks"] = -(-n // int(args["chunk_rows"]))
        client.close()
        cluster.close()
        fh.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1_000_000, help="cells for fast mode (default: %(default)s)")
    ap.add_argument("--exact-cells", type=int, default=50_000, help="cells for exact mode (0: skip)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask worker counts (default: 1 2)")
    ap.add_argument("--chunk-rows", type=int, default=10_000, help="rows per dask chunk (default: %(default)s)")
    ap.add_argument("--no-local", action="store_true", help="skip the in-process reference runs")
    ap.add_argument("--max-load", type=float, default=None, help="wait for a 1-min load below this before each phase")
    ap.add_argument("--wait", type=float, default=0, help="longest wait for a low load, seconds")
    args = ap.parse_args(argv)
    if not C.published_models_available():
        C.log(f"published models not found under {C.PUBLISHED_MODELS}: nothing to do")
        return 0
    data = C.recovery_data(max(args.cells, args.exact_cells))
    max_load = args.max_load if args.max_load is not None else float("inf")
    cases = []
    plan = [("fast", args.cells)] + ([("exact", args.exact_cells)] if args.exact_cells else [])
    for mode, cells in plan:
        configs = ([] if args.no_local else [0]) + list(args.workers)
        for w in configs:
            name = "in-process" if w == 0 else f"dask {w} worker{'s' if w > 1 else ''}"
            C.log(f"{mode} {cells} cells: {name} ...")
            r = C.run_phase(SCRIPT, "recover", {"data": str(data), "cells": cells, "workers": w, "mode": mode,
                                                 "chunk_rows": args.chunk_rows}, max_load=max_load, wait=args.wait)
            r.update({"mode": mode, "config": name, "workers": w})
            cases.append(r)
            C.log(f"    {C.fmt_s(r['wall'])}, {r['cells_per_s']:.0f} cells/s, workers' peak RSS "
                  f"{[C.fmt_mb(b) for b in r.get('worker_peak_rss', [])]}, client peak {C.fmt_mb(r['maxrss'])}, "
                  f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")
    rows = []
    for r in cases:
        during = r.get("load_during") or [float("nan")]
        rows.append([r["mode"], r["cells"], r["config"], C.fmt_s(r["wall"]), f"{r['cells_per_s']:.0f}",
                     ", ".join(C.fmt_mb(b) for b in r.get("worker_peak_rss", [])) or "-", C.fmt_mb(r["maxrss"]),
                     f"{r['load_before']:.1f} / {np.nanmean(during):.1f}", r["digest"]])
    print(C.table(rows, ["mode", "cells", "config", "wall", "cells/s", "worker peak RSS", "client peak RSS",
                         "load before / during", "digest"]))
    for mode in {r["mode"] for r in cases}:
        digests = {r["digest"] for r in cases if r["mode"] == mode}
        print(f"{mode}: results identical across configurations: {len(digests) == 1}")
    path = C.save_results("dask", {"machine": C.machine(), "args": vars(args), "cases": cases})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        C.worker_main({"recover": phase_recover})
    else:
        sys.exit(main())
