"""Benchmark: spatial validation (colocalization, Moran's I) of ecorecover against squidpy.

ecorecover reproduces R SpatialEcoTyper's ``Colocalization`` (k = 200 nearest cells within radius
50, min 10 neighbours, states shuffled within cell types) and ``ComputeNormalizedMoranI`` (3-NN,
row-standardised, SE labels shuffled within cell types). squidpy's closest analogues are run on
the same cells with the same neighbour settings and permutation count:

- ``squidpy.gr.spatial_neighbors(coord_type="generic", n_neighs=199, radius=(0, 50))`` (the 199 nearest
  other cells, pruned to radius 50) + ``squidpy.gr.nhood_enrichment(cluster_key="CellState",
  n_perms=1000)`` (a permutation z-score of neighbour counts between cell states; it shuffles
  labels over all cells, not within cell types);
- ``squidpy.gr.spatial_neighbors(coord_type="generic", n_neighs=3)`` +
  ``squidpy.gr.spatial_autocorr(mode="moran", n_perms=1000)`` on the SE indicator matrix.

Different tests with the same cost structure (a fixed graph, a relabelling per permutation), so
the timings compare like with like; the statistics themselves are not expected to agree.

Data: simulated cells in space, like ``tests/fixtures/spatial`` (11 SEs around patch centres with
N(0, 60^2) scatter, half the cells uniform non-SE, 9 cell types), the field grown with the cell
count so the density (and the neighbours per cell) stays that of the fixture.

    python benches/bench_spatial.py --quick            # 20,000 cells
    python benches/bench_spatial.py                    # 20,000 and 1,000,000 cells
    python benches/bench_spatial.py --cells 200000 --no-peer

Each tool and phase runs in a fresh subprocess (peak RSS per phase). squidpy may live in another
environment: ``--squidpy-python /path/to/python`` (or ``ECORECOVER_BENCH_SQUIDPY_PYTHON``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    DATA_DIR,
    RESULTS_DIR,
    fmt_mb,
    fmt_s,
    loadavg,
    log,
    machine,
    maxrss,
    n_cores,
    rss,
    save_results,
    table,
    wait_for_low_load,
)

SES = [f"SE{i}" for i in range(1, 12)]
TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]
RADIUS, K, MIN_CELLS, K_MORAN = 50.0, 200, 10, 3


def simulate(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Cells in a square field of side 2500 * sqrt(n / 5000) (the fixture's density)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(n / 5000)
    side = 2500 * scale
    n_patch = max(1, int(round(3 * scale**2)))
    centres = rng.uniform(0, side, (len(SES), n_patch, 2))
    in_se = rng.random(n) >= 0.5
    se_idx = rng.integers(0, len(SES), n)
    xy = rng.uniform(0, side, (n, 2))
    patch = rng.integers(0, n_patch, n)
    scatter = rng.normal(0, 60, (n, 2))
    xy[in_se] = centres[se_idx[in_se], patch[in_se]] + scatter[in_se]
    se = np.where(in_se, np.asarray(SES)[se_idx], "nonSE")
    ct = np.asarray(TYPES)[rng.integers(0, len(TYPES), n)]
    return {"xy": xy, "se": se.astype("U8"), "celltype": ct.astype("U12")}


def data_path(n: int) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    p = DATA_DIR / f"spatial_{n}.npz"
    if not p.exists():
        np.savez(p, **simulate(n))
    return p


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------------------------
# Worker phases (run in a child process)


def _frame(d: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    df = pd.DataFrame({"X": d["xy"][:, 0], "Y": d["xy"][:, 1], "CellType": d["celltype"], "SE": d["se"]})
    df["CellState"] = df["SE"] + "_" + df["CellType"]
    df.index = [f"c{i}" for i in range(len(df))]
    return df


def phase_eco_coloc(a: dict[str, Any]) -> dict[str, Any]:
    from ecorecover import spatial

    df = _frame(_load(a["path"]))
    before = rss()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spatial.colocalization(df, coords=("X", "Y"), radius=RADIUS, k=K, min_cells=MIN_CELLS,
                                     n_perm=a["n_perm"], seed=1, n_jobs=a["n_jobs"], progress=False)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rss_before": before, "edges": res.n_edges, "states": res.observed.shape[0],
            "kept": res.n_kept, "maxrss": maxrss()}


def phase_eco_moran(a: dict[str, Any]) -> dict[str, Any]:
    from ecorecover import spatial

    df = _frame(_load(a["path"]))
    before = rss()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spatial.moran(df, coords=("X", "Y"), k=K_MORAN, n_perm=a["n_perm"], seed=2, n_jobs=a["n_jobs"],
                      progress=False)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rss_before": before, "maxrss": maxrss()}


def _adata(d: dict[str, np.ndarray], x: Any = None) -> Any:
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame({"CellType": d["celltype"], "SE": d["se"]}, index=[f"c{i}" for i in range(len(d["se"]))])
    obs["CellState"] = pd.Categorical(obs["SE"] + "_" + obs["CellType"])
    adata = ad.AnnData(X=x, obs=obs)
    adata.obsm["spatial"] = d["xy"]
    return adata


def phase_sq_nhood(a: dict[str, Any]) -> dict[str, Any]:
    import squidpy as sq

    adata = _adata(_load(a["path"]))
    before = rss()
    t0 = time.perf_counter()
    sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=K - 1, radius=(0.0, RADIUS))
    t_graph = time.perf_counter() - t0
    sq.gr.nhood_enrichment(adata, cluster_key="CellState", n_perms=a["n_perm"], seed=1, n_jobs=a["n_jobs"],
                           show_progress_bar=False)
    wall = time.perf_counter() - t0
    return {"wall": wall, "graph": t_graph, "rss_before": before, "edges": int(adata.obsp["spatial_connectivities"].nnz),
            "version": sq.__version__, "maxrss": maxrss()}


def phase_sq_moran(a: dict[str, Any]) -> dict[str, Any]:
    import scipy.sparse as sp
    import squidpy as sq

    d = _load(a["path"])
    labels = sorted(set(d["se"].tolist()))
    codes = np.searchsorted(np.asarray(labels), d["se"])
    x = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(labels)))
    adata = _adata(d, x)
    adata.var_names = labels
    before = rss()
    t0 = time.perf_counter()
    sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=K_MORAN)
    sq.gr.spatial_autocorr(adata, mode="moran", genes=labels, n_perms=a["n_perm"], seed=2, n_jobs=a["n_jobs"],
                           show_progress_bar=False)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rss_before": before, "version": sq.__version__, "maxrss": maxrss()}


PHASES = {"eco_coloc": phase_eco_coloc, "eco_moran": phase_eco_moran, "sq_nhood": phase_sq_nhood,
          "sq_moran": phase_sq_moran}


# --------------------------------------------------------------------------------------------
# Driver


def run(phase: str, args: dict[str, Any], python: str, *, max_load: float, wait: float, timeout: float | None) -> dict:
    load0 = wait_for_low_load(max_load, wait)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f".phase-{phase}-{os.getpid()}.json"
    out.unlink(missing_ok=True)
    cmd = [python, str(Path(__file__)), "--worker", phase, json.dumps(args), str(out)]
    # A session of its own, so that a timeout also stops the phase's worker processes (joblib).
    proc = subprocess.Popen(cmd, cwd=str(HERE), start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"phase": phase, "skipped": f"stopped after {timeout:.0f} s", "load_before": load0, "load_after": loadavg()}
    if proc.returncode != 0 or not out.exists():
        return {"phase": phase, "skipped": f"failed (exit code {proc.returncode})", "load_before": load0,
                "load_after": loadavg()}
    res = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    res.update({"phase": phase, "load_before": load0, "load_after": loadavg()})
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, phase, args, out = sys.argv[:5]
        res = PHASES[phase](json.loads(args))
        Path(out).write_text(json.dumps(res))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 cells only")
    p.add_argument("--cells", type=int, nargs="+", help="cell counts (default 20000 1000000)")
    p.add_argument("--n-perm", type=int, default=1000)
    p.add_argument("--no-peer", action="store_true", help="skip squidpy")
    p.add_argument("--peer-max-cells", type=int, default=200_000,
                   help="run squidpy only up to this many cells (default 200,000: at 1M it takes too long)")
    p.add_argument("--peer-timeout", type=float, default=1800.0, help="stop a squidpy phase after this many seconds")
    p.add_argument("--peer-jobs", type=int, default=None,
                   help="n_jobs for squidpy (default: the core count; squidpy 1.8's nhood_enrichment fails "
                   "with n_jobs > 1 once joblib memory-maps its inputs read-only, scverse/squidpy#867)")
    p.add_argument("--phases", nargs="+", choices=sorted(PHASES), help="run only these phases")
    p.add_argument("--squidpy-python", default=os.environ.get("ECORECOVER_BENCH_SQUIDPY_PYTHON", sys.executable),
                   help="interpreter with squidpy installed (default: this one)")
    p.add_argument("--max-load", type=float, default=n_cores() / 2)
    p.add_argument("--wait", type=float, default=60.0)
    a = p.parse_args()
    cells = a.cells or ([20_000] if a.quick else [20_000, 1_000_000])
    jobs = n_cores()
    have_sq = not a.no_peer and subprocess.run([a.squidpy_python, "-c", "import squidpy"],
                                               capture_output=True).returncode == 0
    if not a.no_peer and not have_sq:
        log(f"squidpy is not importable by {a.squidpy_python}: peer SKIPPED (pip install squidpy, or --squidpy-python)")
    rows, results = [], []
    for n in cells:
        path = str(data_path(n))
        args = {"path": path, "n_perm": a.n_perm, "n_jobs": jobs}
        todo = [("eco_coloc", sys.executable), ("eco_moran", sys.executable)]
        if have_sq and n <= a.peer_max_cells:
            todo += [("sq_nhood", a.squidpy_python), ("sq_moran", a.squidpy_python)]
        if a.phases:
            todo = [t for t in todo if t[0] in a.phases]
        elif have_sq:
            log(f"squidpy SKIPPED at {n:,} cells (> --peer-max-cells {a.peer_max_cells:,}: it would take too long)")
        for phase, py in todo:
            pargs = {**args, "n_jobs": a.peer_jobs} if phase.startswith("sq") and a.peer_jobs else args
            log(f"{phase}: {n:,} cells, {a.n_perm} permutations, n_jobs {pargs['n_jobs']}")
            r = run(phase, pargs, py, max_load=a.max_load, wait=a.wait,
                    timeout=a.peer_timeout if phase.startswith("sq") else None)
            r["cells"] = n
            r["n_jobs"] = pargs["n_jobs"]
            results.append(r)
            extra = f"{r['edges']:,} edges" if "edges" in r else ""
            if "graph" in r:
                extra += f", graph {fmt_s(r['graph'])}"
            rows.append([f"{n:,}", phase, r.get("skipped") or fmt_s(r["wall"]), fmt_mb(r.get("maxrss")),
                         f"{r['load_before']:.2f} / {r['load_after']:.2f}", extra])
            log(table(rows[-1:], ["cells", "phase", "wall", "peak RSS", "load before / after", "notes"]))
    print(table(rows, ["cells", "phase", "wall", "peak RSS", "load before / after", "notes"]))
    save_results("spatial", {"machine": machine(), "n_perm": a.n_perm, "results": results})


if __name__ == "__main__":
    main()
