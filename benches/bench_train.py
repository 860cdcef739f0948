#!/usr/bin/env python3
"""Training benchmark: ecorecover.train vs pyspatialecotyper.nmf_generate_w_list (R's NMFGenerateWList).

Trains the 9-cell-type recovery model on simulated data (default 40,000 cells x 500 genes x 4
samples, from /work/shared/simulate.py) with

1. ``ecorecover.train`` at its defaults (one run; timed ``--repeats`` times in one process),
2. ``ecorecover.train(n_runs=50, n_features_per_se=None)``, the tutorial's ensemble,
3. ``pyspatialecotyper.nmf_generate_w_list`` with the same parameters (one run),

each in its own subprocess, and prints wall times, the ratio, peak RSS per phase and how similar
the two tools' models are. See benches/README.md.

    python benches/bench_train.py            # full run (the peer takes minutes)
    python benches/bench_train.py --quick    # 10,000 cells, 5-run ensemble
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
TARGET_ONE_RUN_S = 2.0
TARGET_RATIO = 60.0
TARGET_ENSEMBLE_S = 30.0
#: Reference points from issue 4 (2-core machine): R NMFGenerateWList and pyspatialecotyper, one run.
REF_R_S = 211.0
REF_PEER_S = 105.0


# --------------------------------------------------------------------------------------------
# Worker phases (run in a child process)


def _read(path: str) -> Any:
    import anndata as ad

    return ad.read_h5ad(path)


def phase_eco_train(args: dict[str, Any]) -> dict[str, Any]:
    import ecorecover

    a = _read(args["data"])
    before = C.rss()
    times, cpus = [], []
    model = None
    for _ in range(int(args["repeats"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ecorecover.SkippedCellTypeWarning)  # Malignant/Epithelial: 1 SE
            t0, c0 = time.perf_counter(), C.cpu_seconds()
            model = ecorecover.train(
                a, celltype_key="CellType", se_key="SE", sample_key="Sample",
                n_features_per_se=args["n_features_per_se"], n_runs=int(args["n_runs"]),
                seed=2024, progress=False,
            )
            times.append(time.perf_counter() - t0)
            cpus.append(C.cpu_seconds() - c0)
    assert model is not None
    C.save_model_npz(
        {ct: (model[ct].to_numpy(), list(model[ct].index), list(model[ct].columns)) for ct in model.cell_types},
        Path(args["model_out"]),
    )
    return {"times": times, "wall": times[0], "cpu": cpus[0], "rss_before": before, "cell_types": list(model.cell_types),
            "n_jobs": "all cores (n_jobs=None)"}


def phase_peer_train(args: dict[str, Any]) -> dict[str, Any]:
    import pyspatialecotyper as pse

    a = _read(args["data"])
    # The peer takes a dense genes x cells array (sparse input is rejected); converting is not timed.
    dense = np.ascontiguousarray(a.X.T.toarray())
    meta = a.obs[["Sample", "CellType", "SE"]].copy()
    genes = list(a.var_names)
    del a
    before = C.rss()
    t0, c0 = time.perf_counter(), C.cpu_seconds()
    ws = pse.nmf_generate_w_list(
        dense, meta, gene_names=genes, CellType="CellType", SE="SE", scale=True, Sample="Sample",
        balance_sample=True, nfeature=300, nfeature_per_se=50, min_cells=20, downsample=2500,
        ncores=int(args["ncores"]), seed=2024, verbose=False,
    )
    wall, cpu = time.perf_counter() - t0, C.cpu_seconds() - c0
    C.save_model_npz({ct: (np.asarray(w), list(r), list(c)) for ct, (w, r, c) in ws.items()}, Path(args["model_out"]))
    return {"wall": wall, "times": [wall], "cpu": cpu, "rss_before": before, "cell_types": list(ws),
            "n_jobs": f"ncores={args['ncores']}"}


PHASES = {"eco_train": phase_eco_train, "peer_train": phase_peer_train}


# --------------------------------------------------------------------------------------------
# Driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=40_000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--genes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7, help="simulation seed")
    ap.add_argument("--runs", type=int, default=50, help="ensemble size (0: skip the ensemble)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the one-run training")
    ap.add_argument("--no-peer", action="store_true", help="skip pyspatialecotyper")
    ap.add_argument("--quick", action="store_true", help="10,000 cells, 5-run ensemble (about a minute or two)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait before each phase until the 1-min load average is below this (default: cores / 2)")
    ap.add_argument("--wait", type=float, default=300, help="longest wait for a low load, seconds, per phase")
    a = ap.parse_args(argv)
    if a.quick:
        a.cells, a.runs, a.repeats = 10_000, 5, 2
    cores = C.n_cores()
    max_load = a.max_load if a.max_load is not None else max(0.5, cores / 2)

    mach = C.machine()
    print(f"# ecorecover training benchmark  {mach['date']}")
    print(f"machine: {mach['cores']} cores, {mach['cpu']} @ {mach['ghz']:.2f} GHz, {mach['mem_gb']:.0f} GB; "
          f"load {C.loadavg():.2f}; versions {mach['versions']}")
    data = C.training_data(a.cells, a.samples, a.genes, a.seed)
    print(f"data: {a.cells} cells x {a.genes} genes x {a.samples} samples (simulate.py seed {a.seed}) -> {data}")
    out_dir = C.RESULTS_DIR
    phases: dict[str, dict[str, Any]] = {}

    C.log("phase: ecorecover.train, one run at defaults")
    phases["eco_1"] = C.run_phase(SCRIPT, "eco_train", {
        "data": str(data), "n_runs": 1, "n_features_per_se": 50, "repeats": a.repeats,
        "model_out": str(out_dir / "model_eco_1.npz")}, max_load=max_load, wait=a.wait)
    if a.runs > 0:
        C.log(f"phase: ecorecover.train, {a.runs}-run ensemble, n_features_per_se=None")
        phases["eco_ens"] = C.run_phase(SCRIPT, "eco_train", {
            "data": str(data), "n_runs": a.runs, "n_features_per_se": None, "repeats": 1,
            "model_out": str(out_dir / "model_eco_ens.npz")}, max_load=max_load, wait=a.wait)
    if not a.no_peer:
        C.log("phase: pyspatialecotyper.nmf_generate_w_list, one run (this takes minutes)")
        phases["peer_1"] = C.run_phase(SCRIPT, "peer_train", {
            "data": str(data), "ncores": cores, "model_out": str(out_dir / "model_peer_1.npz")},
            max_load=max_load, wait=a.wait)

    # ---- report
    rows = []
    labels = {"eco_1": "ecorecover.train, 1 run (defaults)",
              "eco_ens": f"ecorecover.train, {a.runs}-run ensemble (n_features_per_se=None)",
              "peer_1": "pyspatialecotyper.nmf_generate_w_list, 1 run"}
    for key, p in phases.items():
        t = p["times"]
        extra = f" (best of {len(t)} {fmt(min(t))}, median {fmt(float(np.median(t)))})" if len(t) > 1 else ""
        rows.append([labels[key], C.fmt_s(p["wall"]) + extra, C.fmt_mb(p["maxrss"]), C.fmt_mb(p["rss_before"]),
                     f"{p['cpu'] / p['wall']:.2f}", f"{p['load_before']:.2f} / {p['load_after']:.2f}"])
    print()
    print(C.table(rows, ["phase", "wall (first call)", "peak RSS", "RSS before call", "cores used (CPU s / wall s)",
                         "load before / after"]))
    print()
    eco1 = phases["eco_1"]["wall"]
    eco1_best = min(phases["eco_1"]["times"])
    verdict = []
    verdict.append(f"one run: {C.fmt_s(eco1)} (best {C.fmt_s(eco1_best)}); target < {TARGET_ONE_RUN_S:g} s: "
                   f"{'met' if eco1 < TARGET_ONE_RUN_S else 'MISSED'}")
    if "peer_1" in phases:
        peer = phases["peer_1"]["wall"]
        ratio = peer / eco1
        verdict.append(f"ratio pyspatialecotyper / ecorecover, one run: {C.fmt_x(ratio)} (best-of: "
                       f"{C.fmt_x(peer / eco1_best)}); target >= {TARGET_RATIO:g}x: "
                       f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}")
    verdict.append(f"reference points (issue 4, 2-core machine): R NMFGenerateWList {REF_R_S:g} s -> "
                   f"{C.fmt_x(REF_R_S / eco1)} here; pyspatialecotyper ~{REF_PEER_S:g} s")
    if "eco_ens" in phases:
        ens = phases["eco_ens"]["wall"]
        scaled = ens * 50 / a.runs
        verdict.append(f"{a.runs}-run ensemble: {C.fmt_s(ens)}"
                       + (f" (x50/{a.runs} = {C.fmt_s(scaled)} for 50 runs)" if a.runs != 50 else "")
                       + f" on {cores} cores; target < {TARGET_ENSEMBLE_S:g} s for 50 runs on 2 cores: "
                       f"{'met' if scaled < TARGET_ENSEMBLE_S else 'MISSED'}")
    print("\n".join(verdict))

    similarity = None
    if "peer_1" in phases:
        e = C.load_model_npz(out_dir / "model_eco_1.npz")
        p = C.load_model_npz(out_dir / "model_peer_1.npz")
        similarity = C.compare_models(e, p)
        print()
        print(f"model similarity (ecorecover vs pyspatialecotyper, one run, same parameters): "
              f"{len(similarity['shared_cell_types'])} shared cell types of {len(e)} / {len(p)}; "
              f"selected features shared (Jaccard over all cell types) {100 * similarity['feature_jaccard']:.1f}%; "
              f"W max abs diff on shared features x SEs {similarity['w_max_abs_diff']:.2e}")
        rows = []
        for ct, s in similarity["per_cell_type"].items():
            rows.append([ct, f"{s['features'][0]} / {s['features'][1]}", f"{100 * s['feature_jaccard']:.1f}%",
                         f"{100 * s['gene_jaccard']:.1f}%", "yes" if s["same_feature_order"] else "no",
                         f"{s['ses'][0]} / {s['ses'][1]}", "yes" if s["same_se_columns"] else "no",
                         f"{s['w_max_abs_diff']:.2e}"])
        print(C.table(rows, ["cell type", "features eco / peer", "features shared", "genes shared",
                             "same order", "SEs eco / peer", "same SE cols", "W max|diff|"]))

    path = C.save_results("train", {"machine": mach, "args": vars(a), "max_load": max_load, "phases": phases,
                                    "similarity": similarity, "verdict": verdict})
    print(f"\nresults: {path}")
    return 0


def fmt(t: float) -> str:
    return C.fmt_s(t)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        C.worker_main(PHASES)
    else:
        sys.exit(main())
