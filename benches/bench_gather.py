"""Throughput of the statistics passes (pass 1 + pass 2, the raw-count guard's scan included)
and of the run extraction: the compiled gather kernel (``_core.gather_*``) against the old
numpy path (``reference_statistics`` of ``tests/_numpy_recovery.py``, the reference the tests
hold the kernel to), on 50,000 x 2,000 dense, CSR and CSC inputs.

    python3 benches/bench_gather.py [--cells 50000] [--genes 2000] [--kept 1500] [--threads 2]

Not a test; prints one line per (input, path) with seconds and cells per second.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ecorecover import _core

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _numpy_recovery import reference_statistics  # noqa: E402


def numpy_path(x: Any, kept: np.ndarray, gor: np.ndarray, g_n: int, threads: int) -> np.ndarray:
    """The sds of the old numpy path (single-threaded; `threads` unused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = reference_statistics(x, kept, gor, g_n, True, 5000)
    return np.asarray(stats.sd)


def kernel_path(x: Any, kept: np.ndarray, gor: np.ndarray, g_n: int, threads: int) -> np.ndarray:
    n, k = x.shape[0], len(kept)
    sums, nnz = np.zeros(g_n * k), np.zeros(g_n * k, dtype=np.int64)
    lo, hi = np.full(g_n * k, np.inf), np.full(g_n * k, -np.inf)
    omitted = np.zeros(n, dtype=bool)
    _core.gather_pass1(x, 0, n, kept, gor, g_n, True, False, sums, nnz, lo, hi, omitted, n_threads=threads)
    eff = np.where(omitted, -1, gor)
    n_t = np.repeat(np.bincount(eff[eff >= 0], minlength=g_n), k).astype(np.float64)
    mean = sums / n_t
    sq = np.zeros(g_n * k)
    _core.gather_pass2(x, 0, n, kept, eff, mean, False, sq, n_threads=threads)
    return np.sqrt((sq + mean * mean * (n_t - nnz)) / (n_t - 1.0))


def runs(x: Any, kept: np.ndarray, gor: np.ndarray, threads: int) -> float:
    """Seconds to extract every run of 1000 cells of group 0 as a dense z-block (150 genes)."""
    cols = kept[:150]
    rows = np.flatnonzero(gor == 0)
    mean, sd = np.ones(len(cols)), np.ones(len(cols))
    t = time.perf_counter()
    for a in range(0, len(rows), 1000):
        _core.gather_dense(x, rows[a : a + 1000], cols, mean, sd, n_threads=threads)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=50_000)
    ap.add_argument("--genes", type=int, default=2_000)
    ap.add_argument("--kept", type=int, default=1_500)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((a.cells, a.genes)) < 0.2, rng.random((a.cells, a.genes)) * 4, 0.0)
    kept = np.sort(rng.choice(a.genes, a.kept, replace=False)).astype(np.int64)
    gor = rng.integers(-1, 10, a.cells).astype(np.int64)
    for name, x in (("dense", dense), ("csr", sp.csr_matrix(dense)), ("csc", sp.csc_matrix(dense))):
        t, c = time.perf_counter(), time.process_time()
        ref = numpy_path(x, kept, gor, 10, a.threads)
        t_np, c_np = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        got = kernel_path(x, kept, gor, 10, a.threads)
        t_k, c_k = time.perf_counter() - t, time.process_time() - c
        same = np.array_equal(ref.view(np.uint64), got.view(np.uint64))
        print(f"{name:5s} statistics  numpy {t_np:6.2f} s wall {c_np:6.2f} s cpu ({a.cells / t_np:9.0f} cells/s)   "
              f"kernel {t_k:6.3f} s wall {c_k:6.3f} s cpu ({a.cells / t_k:9.0f} cells/s)   x{t_np / t_k:5.1f}   "
              f"sd bit-identical: {same}")
        t_r = runs(x, kept, gor, a.threads)
        print(f"{name:5s} runs (group 0, dense z 150 genes): {t_r:.3f} s for {int((gor == 0).sum())} cells")


if __name__ == "__main__":
    main()
