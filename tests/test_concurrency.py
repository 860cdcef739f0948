"""Concurrency (issue 9): recover() from 4 Python threads at once on different data, and train()
from 2 threads, return exactly what serial calls return; the compiled kernels release the GIL.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ecorecover as er
from ecorecover import _core, nmf
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


#: Failure detector only (never a timing assertion): how long a step may take before the test
#: gives up, for a loaded machine. The test passes as soon as each step happens.
_PATIENCE = 120.0


def test_kernels_release_the_gil() -> None:
    """While an NMF kernel runs in a worker thread, the main thread runs Python code: it sees the
    kernel running (``CancelToken.running``, counted from kernel entry to return) and cancels it.

    Deterministic: had the kernel held the GIL, the main thread could run no Python at all until
    the kernel returned, so it would never see it running; the kernel would then end on its own
    (after ``max_iter`` iterations, minutes) with a result instead of ``CancelledError``, and the
    test fails. No duration is compared with another."""
    rng = np.random.default_rng(0)
    v = rng.random((100, 3000)) * (rng.random((100, 3000)) < 0.5)
    w = rng.random((100, 5)) + 0.1
    h0 = rng.random((5, 3000)) + 0.1
    token = _core.CancelToken()
    outcome: list[BaseException | tuple[Any, int]] = []

    def work() -> None:
        try:
            # stationary out of reach: only max_iter (long) or the token ends the kernel.
            outcome.append(token.run(_core.update_h, v, w, h0, 10**6, 10, 10**9, 1))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + _PATIENCE
    while token.running == 0 and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)  # Python code in the main thread, between polls
    seen_running = token.running == 1
    token.cancel()
    worker.join(timeout=_PATIENCE)
    assert not worker.is_alive(), "the kernel did not stop after cancel()"
    assert seen_running, f"the main thread never saw the kernel running (outcome: {outcome})"
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledError), outcome
    assert token.running == 0
