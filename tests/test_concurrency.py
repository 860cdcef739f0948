"""Concurrency (issue 9): recover() from 4 Python threads at once on different data, and train()
from 2 threads, return exactly what serial calls return; the compiled kernels release the GIL.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ecorecover as er
from ecorecover import nmf
from ecorecover.preprocessing import log_normalize
from ecorecover.simulate import simulate

QUIET = (er.RecoveryWarning, er.SkippedCellTypeWarning)


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        for w in QUIET:
            warnings.simplefilter("ignore", w)
        return fn()


def _dataset(seed: int, n_cells: int = 900) -> Any:
    a = simulate(n_cells=n_cells, n_samples=2, n_genes=100, cell_types=3, n_se=4, seed=seed, n_signature_genes=12)
    a.X = log_normalize(a.X)
    return a


@pytest.fixture(scope="module")
def datasets() -> list[Any]:
    return [_dataset(s) for s in (11, 12, 13, 14)]


@pytest.fixture(scope="module")
def model(datasets) -> er.RecoveryModel:
    return _quiet(lambda: er.train(datasets[0], n_features=60, min_cells=10, progress=False, n_jobs=1))


def _all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in as many threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(fn: Callable[[], Any]) -> Any:
        barrier.wait(timeout=60)
        return fn()

    with ThreadPoolExecutor(max_workers=len(calls)) as ex:
        futures = [ex.submit(run, fn) for fn in calls]
        return [f.result(timeout=600) for f in futures]


def _recover(a: Any, model: Any, mode: str, n_jobs: int) -> pd.DataFrame:
    # A copy per call: recover writes its results into the AnnData it gets.
    return er.recover(a.copy(), model, mode=mode, cells_per_run=200, n_jobs=n_jobs, progress=False)


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_recover_from_four_threads_equals_serial(datasets, model, mode, n_jobs) -> None:
    # Warning filters are process-wide, so they are set once around both the serial and the
    # threaded calls (catch_warnings inside the threads would race).
    with warnings.catch_warnings():
        for w in QUIET:
            warnings.simplefilter("ignore", w)
        serial = [_recover(a, model, mode, n_jobs) for a in datasets]
        threaded = _all_at_once([lambda a=a: _recover(a, model, mode, n_jobs) for a in datasets])
    assert len({r.iloc[:, 4:].to_numpy().tobytes() for r in serial}) == 4  # different data, different answers
    for s, t in zip(serial, threaded):
        pd.testing.assert_frame_equal(t, s, check_exact=True)


def test_recover_with_different_models_from_four_threads(datasets) -> None:
    """Four threads, four models (different SEs and genes), one dataset each; exact and fast mixed."""
    with warnings.catch_warnings():
        for w in QUIET:
            warnings.simplefilter("ignore", w)
        models = [er.train(a, n_features=40 + 10 * i, min_cells=10, progress=False, n_jobs=1)
                  for i, a in enumerate(datasets)]
        modes = ["exact", "fast", "exact", "fast"]
        serial = [_recover(a, m, mode, 2) for a, m, mode in zip(datasets, models, modes)]
        threaded = _all_at_once([lambda a=a, m=m, mode=mode: _recover(a, m, mode, 2)
                                 for a, m, mode in zip(datasets, models, modes)])
    for s, t in zip(serial, threaded):
        pd.testing.assert_frame_equal(t, s, check_exact=True)


def _train(a: Any, seed: int) -> er.RecoveryModel:
    return er.train(a, sample_key="Sample", n_features=60, min_cells=10, seed=seed, n_runs=2, progress=False, n_jobs=2)


def test_train_from_two_threads_equals_serial(datasets) -> None:
    with warnings.catch_warnings():
        for w in QUIET + (er.AggregateWarning,):
            warnings.simplefilter("ignore", w)
        serial = [_train(datasets[1], 3), _train(datasets[2], 4)]
        threaded = _all_at_once([lambda: _train(datasets[1], 3), lambda: _train(datasets[2], 4)])
    for s, t in zip(serial, threaded):
        assert s.cell_types == t.cell_types and len(s) >= 2
        for ct in s:
            assert list(s[ct].index) == list(t[ct].index) and list(s[ct].columns) == list(t[ct].columns)
            assert s[ct].to_numpy().tobytes() == t[ct].to_numpy().tobytes(), ct


def test_kernels_release_the_gil() -> None:
    """While a long NMF kernel call runs in one thread, a pure-Python thread keeps running: the
    largest pause it sees is well below the length of the call, so the call does not hold the GIL."""
    rng = np.random.default_rng(0)
    v = rng.random((200, 4000)) * (rng.random((200, 4000)) < 0.5)
    w = rng.random((200, 6)) + 0.1
    h0 = rng.random((6, 4000)) + 0.1
    t0 = time.perf_counter()
    nmf.update_h(v, w, h0, max_iter=200, n_jobs=1)
    single = time.perf_counter() - t0
    iters = max(200, int(200 * 0.6 / max(single, 1e-3)))  # aim at ~0.6 s per call

    done = threading.Event()
    ticks: list[float] = []

    def heartbeat() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    hb = threading.Thread(target=heartbeat)
    hb.start()
    try:
        time.sleep(0.02)
        t0 = time.perf_counter()
        _, n_iter = nmf.update_h(v, w, h0, max_iter=iters, n_jobs=1)
        elapsed = time.perf_counter() - t0
    finally:
        done.set()
        hb.join()
    during = [t for t in ticks if t0 <= t <= t0 + elapsed]
    gaps = np.diff([t0, *during, t0 + elapsed])
    assert elapsed > 0.1, f"the call was too short ({elapsed:.3f} s, {n_iter} iterations) to tell"
    # Holding the GIL would block the heartbeat for the whole call; allow for a loaded machine.
    assert gaps.max() < elapsed / 2, (
        f"a pure-Python thread was blocked for {gaps.max():.3f} s of a {elapsed:.3f} s kernel call: the GIL is held"
    )
