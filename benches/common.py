"""Shared helpers for the ecorecover benchmarks (not part of the test suite).

* Data: simulated single-cell data from ``/work/shared/simulate.py`` (signal planted from the
  published MERSCOPE models, so the published models recover it), cached under
  ``benches/data/`` (gitignored) as log-normalised cells x genes CSR ``.h5ad`` files.
* Isolation: every measured phase runs in its own subprocess (``python bench_x.py --worker
  PHASE ARGS_JSON OUT_JSON``), so peak RSS (the child's ``VmHWM`` at its end) is per phase and
  per tool, and one tool's caches never help the other.
* Machine: core count, clock (from ``/proc/cpuinfo``), load average before and after every
  phase, package versions; everything is written to ``benches/results/*.json`` (gitignored).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
SHARED = Path(os.environ.get("ECORECOVER_SHARED", "/work/shared"))
SIMULATOR = Path(os.environ.get("ECORECOVER_SIMULATOR", str(SHARED / "simulate.py")))
PUBLISHED_MODELS = Path(os.environ.get("ECORECOVER_PUBLISHED_MODELS", str(SHARED / "published_models")))

#: Recovery data are drawn in chunks of this many cells (chunk i uses seed ``seed + i``), so the
#: 1M-cell file never needs more than one chunk of dense counts in memory and its first chunk is
#: exactly the 50k-cell data set.
CHUNK = 50_000


# --------------------------------------------------------------------------------------------
# Machine and load


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """Model name, mean clock (GHz, from /proc/cpuinfo 'cpu MHz') and SIMD flags."""
    model, mhz, flags = platform.processor() or "unknown", [], set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = val.strip()
                elif key == "cpu MHz":
                    mhz.append(float(val))
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    ghz = float(np.mean(mhz)) / 1000 if mhz else float("nan")
    simd = [f for f in ("avx", "avx2", "fma", "avx512f") if f in flags]
    return {"model": model, "ghz": ghz, "simd": simd}


def peak_flops(cores: int, ghz: float, flops_per_cycle: int = 8) -> float:
    """cores x GHz x double-precision flops per cycle (8 = AVX2 4-wide add + 4-wide mul, no FMA)."""
    return cores * ghz * 1e9 * flops_per_cycle


def loadavg() -> float:
    return os.getloadavg()[0]


def wait_for_low_load(max_load: float, timeout: float, poll: float = 15.0) -> float:
    """Wait (up to ``timeout`` s) until the 1-minute load average is below ``max_load``."""
    t0 = time.monotonic()
    load = loadavg()
    announced = False
    while load >= max_load and time.monotonic() - t0 < timeout:
        if not announced:
            log(f"load average {load:.2f} >= {max_load}: waiting up to {timeout:.0f} s for a quieter machine")
            announced = True
        time.sleep(poll)
        load = loadavg()
    return load


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("ecorecover", "pyspatialecotyper", "nmf-rs", "numpy", "scipy", "anndata", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def machine() -> dict[str, Any]:
    info = cpu_info()
    try:
        import psutil

        mem = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cores": n_cores(),
        "cpu": info["model"],
        "ghz": info["ghz"],
        "simd": info["simd"],
        "mem_gb": mem / 2**30,
        "versions": versions(),
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Formatting


def fmt_s(t: float | None) -> str:
    if t is None or not np.isfinite(t):
        return "-"
    return f"{t:.3g} s" if t < 100 else f"{t:.0f} s"


def fmt_mb(b: float | None) -> str:
    if b is None or not np.isfinite(b):
        return "-"
    return f"{b / 2**20:.0f} MB" if b < 2**30 else f"{b / 2**30:.2f} GB"


def fmt_x(r: float | None) -> str:
    if r is None or not np.isfinite(r):
        return "-"
    return f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default))
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


# --------------------------------------------------------------------------------------------
# Subprocess phases


def run_phase(script: Path, phase: str, args: dict[str, Any], *, max_load: float, wait: float) -> dict[str, Any]:
    """Run ``script --worker phase`` in a fresh interpreter; return its JSON result.

    The result carries ``wall`` (the measured call), ``maxrss`` (peak RSS of the whole child,
    bytes), ``rss_before`` (RSS just before the measured call: interpreter, libraries, input) and
    the 1-minute load average before and after.
    """
    load0 = wait_for_low_load(max_load, wait)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f".phase-{phase}-{os.getpid()}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--worker", phase, json.dumps(args), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(HERE))
    total = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"phase {phase!r} failed (exit code {proc.returncode})")
    res = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    res.update({"phase": phase, "load_before": load0, "load_after": loadavg(), "process_wall": total})
    return res


def worker_main(phases: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Entry point of a worker child: ``--worker PHASE ARGS_JSON OUT_JSON``."""
    _, _, phase, args, out = sys.argv[:5]
    res = phases[phase](json.loads(args))
    res["maxrss"] = maxrss()
    Path(out).write_text(json.dumps(res, default=_json_default))


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def maxrss() -> int:
    """Peak RSS of this process so far, bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own address space.
    (``getrusage(RUSAGE_SELF).ru_maxrss`` is not used: Linux carries the parent's high-water mark
    across fork + exec into it, so a child of a big parent would report the parent's peak.)
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r * 1024 if sys.platform != "darwin" else r)


# --------------------------------------------------------------------------------------------
# Data


def _load_simulator() -> Any:
    if not SIMULATOR.exists():
        raise FileNotFoundError(f"simulator not found: {SIMULATOR} (set ECORECOVER_SIMULATOR)")
    spec = importlib.util.spec_from_file_location("_shared_simulate", SIMULATOR)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _to_anndata(X_genes_by_cells: np.ndarray, genes: Sequence[str], meta: Any) -> Any:
    """Counts (genes x cells) -> AnnData of log-normalised CSR (cells x genes)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from ecorecover.preprocessing import log_normalize

    counts = sp.csr_matrix(X_genes_by_cells.T.astype(np.float64))
    x = log_normalize(counts)
    x = sp.csr_matrix(x)
    obs = pd.DataFrame(
        {"Sample": np.asarray(meta["Sample"], dtype=str), "CellType": np.asarray(meta["CellType"], dtype=str),
         "SE": np.asarray(meta["SE"], dtype=str)},
        index=pd.Index(np.asarray(meta.index, dtype=str)),
    )
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(list(genes), dtype=str)))


def training_data(cells: int, samples: int = 4, genes: int = 500, seed: int = 7) -> Path:
    """The training data set as a cached .h5ad (log-normalised cells x genes CSR).

    Generated with the command line of ``simulate.py`` (``--format npz``), then log-normalised.
    """
    import pandas as pd

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"train_c{cells}_s{samples}_g{genes}_seed{seed}"
    h5 = DATA_DIR / f"{stem}.h5ad"
    if h5.exists():
        return h5
    npz = DATA_DIR / f"{stem}.npz"
    if not npz.exists():
        log(f"simulating {cells} cells x {genes} genes x {samples} samples (seed {seed}) -> {npz}")
        subprocess.run(
            [sys.executable, str(SIMULATOR), "--cells", str(cells), "--samples", str(samples), "--genes", str(genes),
             "--seed", str(seed), "--out", str(npz.with_suffix("")), "--format", "npz"],
            check=True,
        )
    # simulate.py stores its string arrays as object arrays; this file was written just above.
    z = np.load(npz, allow_pickle=True)
    meta = pd.DataFrame({"Sample": z["sample"], "CellType": z["celltype"], "SE": z["se"]}, index=z["cells"])
    a = _to_anndata(z["X"], list(z["genes"]), meta)
    _write_atomic(a, h5)
    return h5


def recovery_data(cells: int, samples: int = 4, genes: int = 500, seed: int = 101) -> Path:
    """Cached recovery data set: ``ceil(cells / CHUNK)`` independently simulated chunks.

    Chunk ``i`` holds ``min(CHUNK, rest)`` cells from ``simulate(..., seed + i)`` with cell ids and
    samples prefixed ``c<i>_`` (each chunk has its own baselines, like a separate cohort). The
    simulator's genes do not depend on the seed, so all chunks share them.
    """
    import anndata as ad
    import scipy.sparse as sp

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    h5 = DATA_DIR / f"recover_c{cells}_s{samples}_g{genes}_seed{seed}.h5ad"
    if h5.exists():
        return h5
    sim = _load_simulator()
    parts, obs, var = [], [], None
    done, i = 0, 0
    while done < cells:
        m = min(CHUNK, cells - done)
        log(f"simulating recovery chunk {i + 1}/{-(-cells // CHUNK)}: {m} cells (seed {seed + i})")
        g, X, meta = sim.simulate(m, samples, genes, seed + i, 2.0, 0.2)
        meta = meta.copy()
        meta.index = [f"c{i}_{c}" for c in meta.index]
        meta["Sample"] = [f"c{i}_{s}" for s in meta["Sample"]]
        a = _to_anndata(X, g, meta)
        del X
        if var is None:
            var = a.var
        elif list(a.var_names) != list(var.index):
            raise RuntimeError("simulator genes differ between chunks")
        parts.append(a.X)
        obs.append(a.obs)
        done += m
        i += 1
    import pandas as pd

    x = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    del parts
    a = ad.AnnData(X=x, obs=pd.concat(obs), var=var)
    log(f"writing {h5} ({a.n_obs} cells, nnz {x.nnz})")
    _write_atomic(a, h5)
    return h5


def _write_atomic(a: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    a.write_h5ad(tmp)
    os.replace(tmp, path)


def published_models_available() -> bool:
    return PUBLISHED_MODELS.is_dir() and any(PUBLISHED_MODELS.glob("MERSCOPE_W_v1_*"))


# --------------------------------------------------------------------------------------------
# Model exchange between phases (plain npz, no pickle)


def save_model_npz(models: dict[str, tuple[np.ndarray, Sequence[str], Sequence[str]]], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"__celltypes__": np.array(list(models), dtype=str)}
    for i, (ct, (w, rows, cols)) in enumerate(models.items()):
        arrays[f"w{i}"] = np.asarray(w, dtype=np.float64)
        arrays[f"r{i}"] = np.array(list(rows), dtype=str)
        arrays[f"c{i}"] = np.array(list(cols), dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load_model_npz(path: Path) -> dict[str, tuple[np.ndarray, list[str], list[str]]]:
    z = np.load(path, allow_pickle=False)
    out = {}
    for i, ct in enumerate(z["__celltypes__"]):
        out[str(ct)] = (z[f"w{i}"], [str(x) for x in z[f"r{i}"]], [str(x) for x in z[f"c{i}"]])
    return out


def compare_models(a: dict[str, tuple[np.ndarray, list[str], list[str]]],
                   b: dict[str, tuple[np.ndarray, list[str], list[str]]]) -> dict[str, Any]:
    """Cell types, features (GENE__pos/neg), genes and SEs in common; W max abs diff on the overlap."""
    shared = [ct for ct in a if ct in b]
    per: dict[str, Any] = {}
    for ct in shared:
        wa, ra, ca = a[ct]
        wb, rb, cb = b[ct]
        fa, fb = set(ra), set(rb)
        ga, gb = {f.rsplit("__", 1)[0] for f in ra}, {f.rsplit("__", 1)[0] for f in rb}
        feats = [f for f in ra if f in fb]
        ses = [s for s in ca if s in cb]
        ia, ib = {f: i for i, f in enumerate(ra)}, {f: i for i, f in enumerate(rb)}
        ja, jb = {s: i for i, s in enumerate(ca)}, {s: i for i, s in enumerate(cb)}
        diff = float("nan")
        if feats and ses:
            xa = wa[np.ix_([ia[f] for f in feats], [ja[s] for s in ses])]
            xb = wb[np.ix_([ib[f] for f in feats], [jb[s] for s in ses])]
            diff = float(np.max(np.abs(xa - xb)))
        per[ct] = {
            "features": (len(ra), len(rb)),
            "feature_jaccard": len(fa & fb) / max(1, len(fa | fb)),
            "gene_jaccard": len(ga & gb) / max(1, len(ga | gb)),
            "same_feature_order": list(ra) == list(rb),
            "ses": (len(ca), len(cb)),
            "same_se_columns": list(ca) == list(cb),
            "w_max_abs_diff": diff,
        }
    fa_all = {(ct, f) for ct in shared for f in a[ct][1]}
    fb_all = {(ct, f) for ct in shared for f in b[ct][1]}
    return {
        "cell_types_a": list(a), "cell_types_b": list(b), "shared_cell_types": shared,
        "feature_jaccard": len(fa_all & fb_all) / max(1, len(fa_all | fb_all)),
        "w_max_abs_diff": float(np.nanmax([p["w_max_abs_diff"] for p in per.values()])) if per else float("nan"),
        "per_cell_type": per,
    }
