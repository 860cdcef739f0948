#!/usr/bin/env python3
"""Recovery benchmark: ecorecover.recover (exact and fast) vs pyspatialecotyper.recover_se (R's RecoverSE).

Applies the published MERSCOPE recovery models (read from /work/shared/published_models with
``ecorecover.load_published_models``; never copied) to simulated data of each size in
``--cells`` (default 50,000 and 1,000,000 cells x 500 genes) with matched parameters
(``cells_per_run=1000``, ``min_score=0``; the peer's own defaults are 500 and 0.6, so both are set
explicitly). Every phase runs in its own subprocess. Data sets above 50,000 cells are written
once as .h5ad and recovered backed (``anndata.read_h5ad(path, backed="r")``); the peer, which
needs a dense genes x cells array, is timed on the first ``--peer-cells`` cells (50,000 by
default; for the 1M data set these are exactly the 50,000-cell data set, so one peer run serves
both sizes) and its cells/s extrapolated.

Printed: cells/s, ratios to the peer, peak RSS, exact-vs-fast agreement of the SE calls, exact
vs peer agreement where both ran on the same cells, and the achieved FLOP/s of exact mode
against the machine's peak. See benches/README.md.

    python benches/bench_recover.py                    # 50k and 1M cells (long)
    python benches/bench_recover.py --quick            # 20k cells, peer on 4k (a minute or two)
    python benches/bench_recover.py --cells 200000 --no-peer
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
CELLS_PER_RUN = 1000
MIN_SCORE = 0.0
#: Reference points from issue 5 (2-core machine), cells/s.
REF_R = 92.0
REF_PEER = 350.0
TARGET_EXACT_X = 10.0
TARGET_FAST_X = 100.0
TARGET_FLOP_FRACTION = 0.5
TARGET_RSS_1M = 4 * 2**30


# --------------------------------------------------------------------------------------------
# Worker phases (child processes)


def _recover_fn() -> Any:
    import ecorecover

    fn = getattr(ecorecover, "recover", None)
    if fn is None:
        from ecorecover.recovery import recover as fn
    return fn


def _model() -> Any:
    import ecorecover

    return ecorecover.load_published_models(str(C.PUBLISHED_MODELS))


def _save_calls(path: str, ids: Any, se: Any, init: Any, score: Any) -> None:
    np.savez(path, ids=np.asarray(ids, dtype=str), se=np.asarray(se, dtype=str), init=np.asarray(init, dtype=str),
             score=np.asarray(score, dtype=np.float64))


def phase_eco_recover(args: dict[str, Any]) -> dict[str, Any]:
    import anndata as ad

    recover = _recover_fn()
    model = _model()
    adata = ad.read_h5ad(args["data"], backed="r") if args["backed"] else ad.read_h5ad(args["data"])
    before = C.rss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), C.cpu_seconds()
        out = recover(adata, model, celltype_key="CellType", min_score=MIN_SCORE, cells_per_run=CELLS_PER_RUN,
                      mode=args["mode"], progress=False)
        wall, cpu = time.perf_counter() - t0, C.cpu_seconds() - c0
    info = out.attrs.get("ecorecover", {})
    runs = pd.DataFrame(info.get("runs") or [])
    cols = ["CellType", "run", "n_cells", "n_features", "n_iter"]
    runs_list = runs[cols].to_dict("records") if len(runs) else []
    k = {ct: int(model[ct].shape[1]) for ct in model.cell_types}
    _save_calls(args["calls_out"], out.index, out["SE"].to_numpy(), out["InitSE"].to_numpy(), out["PredScore"].to_numpy())
    return {
        "wall": wall, "cpu": cpu, "rss_before": before, "n_cells": int(len(out)), "runs": runs_list, "k": k,
        "unscored": info.get("unscored", {}), "warnings": sorted({str(w.message)[:160] for w in caught}),
        "backed": bool(args["backed"]), "timings": dict(info.get("timings", {})),
    }


def phase_peer_recover(args: dict[str, Any]) -> dict[str, Any]:
    import anndata as ad
    import pyspatialecotyper as pse

    model = _model()
    a = ad.read_h5ad(args["data"], backed="r")
    n = min(int(args["n_cells"]), a.n_obs)
    sub = a[:n].to_memory()
    a.file.close()
    # The peer takes a dense genes x cells array; converting is not timed.
    dense = np.ascontiguousarray(sub.X.T.toarray())
    genes, cells, types = list(sub.var_names), list(sub.obs_names), list(sub.obs["CellType"].astype(str))
    del sub
    ws = {ct: (model[ct].to_numpy(), list(model[ct].index), list(model[ct].columns)) for ct in model.cell_types}
    before = C.rss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), C.cpu_seconds()
        res = pse.recover_se(dense, genes, cells, types, ws, scale=True, ncell_per_run=CELLS_PER_RUN,
                             min_score=MIN_SCORE, ncores=int(args["ncores"]), verbose=False)
        wall, cpu = time.perf_counter() - t0, C.cpu_seconds() - c0
    # The peer implements only RecoverSE's custom-Ws branch; R's default branch (and ecorecover with
    # a model from load_published_models) then keeps the SE_CellStates pairs and renames SE01..SE11.
    # Apply the same post-processing (not timed; a table lookup) so the SE calls are comparable.
    import ecorecover

    post = ecorecover.apply_published_postprocess(res[["CellType", "SE"]], model)
    ids = res["CID"].to_numpy() if "CID" in res.columns else np.asarray(cells)
    _save_calls(args["calls_out"], ids, post["SE"].to_numpy(), res["InitSE"].to_numpy(), res["PredScore"].to_numpy())
    return {"wall": wall, "cpu": cpu, "rss_before": before, "n_cells": n, "warnings": sorted({str(w.message)[:160] for w in caught})}


def phase_density(args: dict[str, Any]) -> dict[str, Any]:
    """Fraction of non-zeros of V (posneg of the scaled model genes) per cell type, on the first cells.

    Scaling as in RecoverSE (Seurat ScaleData over each cell type's cells: centre, divide by the sd,
    clip at 10; clipping does not change the non-zero pattern): feature ``g__pos`` is non-zero where
    the scaled value is > 0, ``g__neg`` where it is < 0. Cells of a type are taken from the first
    ``n_cells`` cells, so for the 1M data set this is an estimate from its first chunk.
    """
    import anndata as ad
    import scipy.sparse as sp

    model = _model()
    a = ad.read_h5ad(args["data"], backed="r")
    n = min(int(args["n_cells"]), a.n_obs)
    sub = a[:n].to_memory()
    a.file.close()
    x = sp.csr_matrix(sub.X)
    gpos = {g: i for i, g in enumerate(sub.var_names)}
    types = sub.obs["CellType"].astype(str).to_numpy()
    out = {}
    for ct in model.cell_types:
        rows = np.flatnonzero(types == ct)
        feats = [f for f in model[ct].index if f.rsplit("__", 1)[0] in gpos]
        if len(rows) < 2 or not feats:
            continue
        genes = sorted({f.rsplit("__", 1)[0] for f in feats})
        cols = [gpos[g] for g in genes]
        d = x[rows][:, cols].toarray()
        mu = d.mean(axis=0)
        sd = d.std(axis=0, ddof=1)
        z = np.where(sd > 0, (d - mu) / np.where(sd > 0, sd, 1.0), 0.0)
        col = {g: i for i, g in enumerate(genes)}
        nnz = 0
        for f in feats:
            g, half = f.rsplit("__", 1)
            v = z[:, col[g]]
            nnz += int(np.count_nonzero(v > 0 if half == "pos" else v < 0))
        out[ct] = nnz / (len(rows) * len(feats))
    return {"wall": 0.0, "rss_before": 0, "density": out, "n_cells": n}


PHASES = {"eco_recover": phase_eco_recover, "peer_recover": phase_peer_recover, "density": phase_density}


# --------------------------------------------------------------------------------------------
# Driver


def _calls(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path, allow_pickle=False)
    return {k: z[k] for k in z.files}


def _agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Identical SE (and InitSE) calls (%), over all cells of ``b`` and over cells ``a`` scored; PredScore max|diff|."""
    pos = {c: i for i, c in enumerate(a["ids"])}
    idx = np.array([pos[c] for c in b["ids"]])
    se_a, se_b = a["se"][idx], b["se"]
    scored = a["score"][idx] > 0
    same = se_a == se_b
    init = {}
    if "init" in a and "init" in b:
        same_init = a["init"][idx] == b["init"]
        init = {"identical_init_pct": 100.0 * float(same_init.mean()),
                "identical_init_scored_pct": 100.0 * float(same_init[scored].mean()) if scored.any() else float("nan")}
    return {**init,
        "n": int(len(idx)),
        "identical_pct": 100.0 * float(same.mean()),
        "identical_scored_pct": 100.0 * float(same[scored].mean()) if scored.any() else float("nan"),
        "n_scored": int(scored.sum()),
        "score_max_abs_diff": float(np.max(np.abs(a["score"][idx] - b["score"]))),
    }


def _flops(eco: dict[str, Any], density: dict[str, float]) -> dict[str, Any]:
    """Sum over runs of 4 * nnz(V_run) * k * iterations, nnz(V_run) = density(type) * features * cells."""
    total = 0.0
    iters = []
    missing = set()
    for r in eco["runs"]:
        ct = r["CellType"]
        if ct not in density:
            missing.add(ct)
            continue
        nnz = density[ct] * r["n_features"] * r["n_cells"]
        total += 4.0 * nnz * eco["k"][ct] * r["n_iter"]
        iters.append(r["n_iter"])
    cpu = eco.get("cpu")
    return {"flops": total, "flop_s": total / eco["wall"], "runs": len(eco["runs"]),
            "flop_per_cpu_s": total / cpu if cpu else float("nan"),
            "iter_median": float(np.median(iters)) if iters else float("nan"),
            "iter_min": int(min(iters)) if iters else 0, "iter_max": int(max(iters)) if iters else 0,
            "missing_density": sorted(missing)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, nargs="+", default=[50_000, 1_000_000], help="data set sizes")
    ap.add_argument("--peer-cells", type=int, default=50_000,
                    help="the peer is timed on the first this-many cells of each data set")
    ap.add_argument("--no-peer", action="store_true", help="skip pyspatialecotyper")
    ap.add_argument("--modes", nargs="+", default=["exact", "fast"], choices=["exact", "fast"])
    ap.add_argument("--backed", choices=["auto", "always", "never"], default="auto",
                    help="recover from a backed .h5ad (auto: above 50,000 cells)")
    ap.add_argument("--layout", choices=["csr", "csc"], default="csr",
                    help="storage of X in the .h5ad read (csc: a CSC copy of the data set, written once)")
    ap.add_argument("--quick", action="store_true", help="20,000 cells, peer on 4,000 (a minute or two)")
    ap.add_argument("--seed", type=int, default=101, help="simulation seed of the first 50,000-cell chunk")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait before each phase until the 1-min load average is below this (default: cores / 2)")
    ap.add_argument("--wait", type=float, default=300, help="longest wait for a low load, seconds, per phase")
    ap.add_argument("--flops-per-cycle", type=int, default=8,
                    help="double-precision flops per cycle per core for the peak (8: AVX2 add+mul, no FMA)")
    a = ap.parse_args(argv)
    if a.quick:
        a.cells, a.peer_cells = [20_000], 4_000
    if not C.published_models_available():
        print(f"SKIPPED: the published MERSCOPE models are not in {C.PUBLISHED_MODELS} "
              "(set ECORECOVER_PUBLISHED_MODELS); they are not shipped with ecorecover.")
        return 0
    cores = C.n_cores()
    max_load = a.max_load if a.max_load is not None else max(0.5, cores / 2)
    mach = C.machine()
    peak = C.peak_flops(cores, mach["ghz"], a.flops_per_cycle)
    print(f"# ecorecover recovery benchmark  {mach['date']}")
    print(f"machine: {mach['cores']} cores, {mach['cpu']} @ {mach['ghz']:.2f} GHz ({', '.join(mach['simd'])}), "
          f"{mach['mem_gb']:.0f} GB; load {C.loadavg():.2f}; versions {mach['versions']}")
    print(f"peak assumed: {cores} cores x {mach['ghz']:.2f} GHz x {a.flops_per_cycle} double flops/cycle "
          f"(AVX2 4-wide add + 4-wide mul, no FMA) = {peak / 1e9:.1f} GFLOP/s")
    print(f"parameters: cells_per_run={CELLS_PER_RUN}, min_score={MIN_SCORE:g}, scale=True, models: "
          f"ecorecover.load_published_models({C.PUBLISHED_MODELS}) for both tools")

    res_dir = C.RESULTS_DIR
    peer_cache: dict[tuple[str, int], dict[str, Any]] = {}
    cases = []
    for n in a.cells:
        data = C.recovery_data(n, seed=a.seed)
        if a.layout == "csc":
            data = _csc_copy(data)
        backed = a.backed == "always" or (a.backed == "auto" and n > C.CHUNK)
        case: dict[str, Any] = {"cells": n, "data": str(data), "backed": backed, "phases": {}}
        print(f"\n## {n} cells  ({data}{', backed' if backed else ', in memory'})")
        for mode in a.modes:
            C.log(f"phase: ecorecover {mode}, {n} cells")
            calls = res_dir / f"calls_eco_{mode}_{n}.npz"
            case["phases"][mode] = C.run_phase(SCRIPT, "eco_recover", {
                "data": str(data), "backed": backed, "mode": mode, "calls_out": str(calls)},
                max_load=max_load, wait=a.wait)
            case["phases"][mode]["calls"] = str(calls)
        if not a.no_peer:
            m = min(a.peer_cells, n)
            # The first m <= 50,000 cells of any data set are the first m cells of its first chunk,
            # which is the whole data set recovery_data(min(n, CHUNK)).
            src = C.recovery_data(min(n, C.CHUNK), seed=a.seed) if m <= C.CHUNK else data
            key = (str(src), m)
            reused = key in peer_cache
            if not reused:
                C.log(f"phase: pyspatialecotyper recover_se, first {m} cells (this takes minutes)")
                calls = res_dir / f"calls_peer_{m}_{Path(src).stem}.npz"
                peer_cache[key] = C.run_phase(SCRIPT, "peer_recover", {
                    "data": str(src), "n_cells": m, "ncores": cores, "calls_out": str(calls)},
                    max_load=max_load, wait=a.wait)
                peer_cache[key]["calls"] = str(calls)
                peer_cache[key]["subset_of"] = str(src)
            else:
                C.log(f"pyspatialecotyper on the first {m} cells: measured above, reused")
            case["phases"]["peer"] = dict(peer_cache[key], reused=reused)
        if "exact" in case["phases"]:
            case["density"] = C.run_phase(SCRIPT, "density", {"data": str(data), "n_cells": C.CHUNK},
                                          max_load=1e9, wait=0)["density"]
            case["flops"] = _flops(case["phases"]["exact"], case["density"])
        report_case(case, peak)
        report_phases(case, peak)
        cases.append(case)

    summary = summarize(cases, peak)
    print("\n" + summary)
    path = C.save_results("recover", {"machine": mach, "args": vars(a), "peak_flop_s": peak, "max_load": max_load,
                                      "cases": cases, "summary": summary})
    print(f"\nresults: {path}")
    return 0


def report_case(case: dict[str, Any], peak: float) -> None:
    n = case["cells"]
    ph = case["phases"]
    peer = ph.get("peer")
    peer_rate = peer["n_cells"] / peer["wall"] if peer else None
    rows = []
    for key in ("exact", "fast", "peer"):
        if key not in ph:
            continue
        p = ph[key]
        cells = p["n_cells"]
        rate = cells / p["wall"]
        label = {"exact": "ecorecover exact", "fast": "ecorecover fast",
                 "peer": f"pyspatialecotyper (first {cells} cells)"}[key]
        ratio = rate / peer_rate if peer_rate and key != "peer" else None
        share = p["cpu"] / p["wall"] if p.get("cpu") else float("nan")
        rows.append([label, C.fmt_s(p["wall"]), f"{rate:,.0f}", C.fmt_x(ratio) if ratio else "-",
                     C.fmt_mb(p["maxrss"]), C.fmt_mb(p["rss_before"]), f"{share:.2f}",
                     f"{p['load_before']:.2f} / {p['load_after']:.2f}"])
        p["cells_per_s"] = rate
        p["ratio_to_peer"] = ratio
    print(C.table(rows, ["tool", "wall", "cells/s", "x peer", "peak RSS", "RSS before call", "cores used (CPU s / wall s)",
                         "load before / after"]))
    if "exact" in ph:
        un = ph["exact"].get("unscored", {})
        print(f"unscored cells (exact): {un}")
    if "exact" in ph and "fast" in ph:
        ag = _agreement(_calls(Path(ph["exact"]["calls"])), _calls(Path(ph["fast"]["calls"])))
        case["exact_vs_fast"] = ag
        print(f"exact vs fast: {ag['identical_pct']:.3f}% identical SE calls over all {ag['n']} cells, "
              f"{ag['identical_scored_pct']:.3f}% over the {ag['n_scored']} scored cells"
              + (f"; InitSE {ag['identical_init_scored_pct']:.3f}% of scored cells" if "identical_init_pct" in ag else "")
              + f"; PredScore max|diff| {ag['score_max_abs_diff']:.2e}")
    if peer and "exact" in ph and peer["n_cells"] == n and peer["subset_of"] == case["data"]:
        ag = _agreement(_calls(Path(ph["exact"]["calls"])), _calls(Path(peer["calls"])))
        case["exact_vs_peer"] = ag
        print(f"exact vs pyspatialecotyper (same cells): {ag['identical_pct']:.3f}% identical SE calls "
              f"({ag['identical_scored_pct']:.3f}% of scored cells)"
              + (f", InitSE {ag['identical_init_scored_pct']:.3f}% of scored cells" if "identical_init_pct" in ag else "")
              + f"; PredScore max|diff| {ag['score_max_abs_diff']:.2e}")
    if "flops" in case:
        f = case["flops"]
        dens = case["density"]
        print(f"exact FLOP/s: {f['flops'] / 1e9:,.0f} GFLOP over {f['runs']} runs (4 * nnz(V_run) * k * iterations; "
              f"iterations per run from uns['SE_recovered']['runs'], median {f['iter_median']:.0f}, {f['iter_min']}-{f['iter_max']}; "
              f"nnz(V_run) = V density of the cell type x features x cells, density estimated on the first "
              f"{min(n, C.CHUNK)} cells: {min(dens.values()):.3f}-{max(dens.values()):.3f}) "
              f"-> {f['flop_s'] / 1e9:.1f} GFLOP/s = {100 * f['flop_s'] / peak:.0f}% of the assumed peak "
              f"{peak / 1e9:.1f} GFLOP/s (wall of the whole recover() call)")
        if np.isfinite(f["flop_per_cpu_s"]):
            core_peak = peak / C.n_cores()
            print(f"  per CPU-second (removes the share of the cores other processes took): "
                  f"{f['flop_per_cpu_s'] / 1e9:.2f} GFLOP per CPU-s = {100 * f['flop_per_cpu_s'] / core_peak:.0f}% of one "
                  f"core's assumed peak {core_peak / 1e9:.1f} GFLOP/s")
    if peer and peer["n_cells"] < n:
        print(f"pyspatialecotyper timed on the first {peer['n_cells']} cells; its cells/s is extrapolated to {n} cells "
              f"(= {C.fmt_s(n / peer_rate)})")


def _csc_copy(path: Path) -> Path:
    """The data set with X stored as CSC (written once beside it)."""
    import anndata as ad
    import scipy.sparse as sp

    out = path.with_name(path.stem + "_csc.h5ad")
    if not out.exists():
        a = ad.read_h5ad(path)
        a.X = sp.csc_matrix(a.X)
        tmp = out.with_suffix(".tmp.h5ad")
        a.write_h5ad(tmp)
        tmp.rename(out)
    return out


#: Phases of recover() as uns[key]["timings"] records them: (key, label).
PHASES_REPORTED = [
    ("read_s", "block reads (backed input; inside the passes and runs)"),
    ("statistics_s", "statistics passes (gather + pass 1 / pass 2 kernels)"),
    ("runs_s", "runs (wall)"),
    ("runs_gather_s", "  reading the runs' cells (kernel; CPU-s summed over runs)"),
    ("runs_solve_s", "  solving (CPU-s summed over runs)"),
    ("assembly_s", "assembly (table, AnnData fields)"),
]
#: How each mode's arithmetic is counted (recover() records the sum over its runs as "flops").
FLOP_RULES = {
    "exact": "4 * nnz(V_run) * k * iterations per run (R's H-step over V's non-zeros)",
    "fast": "Newton iterations x m x k^2 per cell (the k x k Hessian over the cell's m model features)",
}


def report_phases(case: dict[str, Any], peak: float) -> None:
    """Where recover()'s time goes, per phase, and the achieved fraction of the arithmetic bound."""
    for mode in ("exact", "fast"):
        p = case["phases"].get(mode)
        t = (p or {}).get("timings") or {}
        if not t:
            continue
        wall = p["wall"]
        rows = [[label, C.fmt_s(t.get(key, 0.0)), f"{100 * t.get(key, 0.0) / wall:.0f}%"]
                for key, label in PHASES_REPORTED]
        known = sum(t.get(k, 0.0) for k in ("statistics_s", "runs_s", "assembly_s"))
        rows.append(["rest (input checks, gene matching, planning)", C.fmt_s(max(0.0, wall - known)),
                     f"{100 * max(0.0, wall - known) / wall:.0f}%"])
        print(f"\n{mode} mode, {case['cells']} cells: where the {C.fmt_s(wall)} go")
        print(C.table(rows, ["phase", "seconds", "share of wall"]))
        flops = t.get("flops", 0.0)
        if flops:
            solve_wall = t.get("runs_s", wall)
            p["arith"] = {"flops": flops, "rule": FLOP_RULES[mode], "of_peak_wall": flops / wall / peak,
                          "of_peak_runs": flops / max(solve_wall, 1e-9) / peak}
            print(f"{mode} arithmetic: {flops / 1e9:,.1f} GFLOP ({FLOP_RULES[mode]}) -> "
                  f"{flops / wall / 1e9:.2f} GFLOP/s over the whole call = {100 * flops / wall / peak:.1f}% of the "
                  f"assumed peak {peak / 1e9:.1f} GFLOP/s; {100 * flops / max(solve_wall, 1e-9) / peak:.1f}% over the "
                  "runs' wall time")


def summarize(cases: list[dict[str, Any]], peak: float) -> str:
    lines = ["## targets (issue 5)"]
    for c in cases:
        ph, n = c["phases"], c["cells"]
        peer = ph.get("peer")
        if "exact" in ph:
            r = ph["exact"].get("ratio_to_peer")
            if r is not None:
                lines.append(f"{n} cells, exact: {ph['exact']['cells_per_s']:,.0f} cells/s = {C.fmt_x(r)} the peer "
                             f"({peer['cells_per_s']:,.0f} cells/s); target >= {TARGET_EXACT_X:g}x: "
                             f"{'met' if r >= TARGET_EXACT_X else 'MISSED'}")
            lines.append(f"{n} cells, exact: {ph['exact']['cells_per_s']:,.0f} cells/s vs the reference points "
                         f"R ~{REF_R:g} ({C.fmt_x(ph['exact']['cells_per_s'] / REF_R)}), peer ~{REF_PEER:g} cells/s "
                         f"({C.fmt_x(ph['exact']['cells_per_s'] / REF_PEER)})")
        if "flops" in c:
            frac = c["flops"]["flop_s"] / peak
            cfrac = c["flops"]["flop_per_cpu_s"] / (peak / C.n_cores())
            lines.append(f"{n} cells, exact: {100 * frac:.0f}% of the assumed FLOP peak ({100 * cfrac:.0f}% per CPU-second); "
                         f"target within 2x (>= 50%): {'met' if frac >= TARGET_FLOP_FRACTION else 'MISSED'}")
        if "fast" in ph:
            r = ph["fast"].get("ratio_to_peer")
            if r is not None:
                lines.append(f"{n} cells, fast: {ph['fast']['cells_per_s']:,.0f} cells/s = {C.fmt_x(r)} the peer; "
                             f"target >= {TARGET_FAST_X:g}x: {'met' if r >= TARGET_FAST_X else 'MISSED'}")
        if "exact_vs_fast" in c:
            lines.append(f"{n} cells: exact vs fast {c['exact_vs_fast']['identical_pct']:.2f}% identical SE calls "
                         "(tests require >= 99.5% on the fixtures)")
        if c["backed"]:
            for mode in ("exact", "fast"):
                if mode in ph:
                    m = ph[mode]["maxrss"]
                    lines.append(f"{n} cells backed, {mode}: peak RSS {C.fmt_mb(m)}; target < 4 GB"
                                 + (f" (for 1,000,000 cells): {'met' if m < TARGET_RSS_1M else 'MISSED'}"
                                    if n >= 1_000_000 else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        C.worker_main(PHASES)
    else:
        sys.exit(main())
