"""Determinism (issue 9): the same call gives byte-identical results with 1 and 2 threads, across
repeated calls, and under RAYON_NUM_THREADS=1 / 2 in fresh processes (rayon reads the variable
when its global pool is created, so each setting needs its own interpreter).

Covered: train (an ensemble of 2 runs with per-sample balancing: W bytes, features, SEs),
recover in exact and fast mode (score bytes, InitSE / SE labels, cell order), and the NMF kernel
on rayon's global pool (``n_jobs=None``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

# The digest code runs in this process and, verbatim, in the subprocesses.
DIGEST_CODE = r'''
import hashlib
import warnings

import numpy as np

import ecorecover as er
from ecorecover.preprocessing import log_normalize
from ecorecover.simulate import simulate

QUIET = (er.RecoveryWarning, er.SkippedCellTypeWarning, er.AggregateWarning)


def make_data():
    a = simulate(n_cells=1200, n_samples=3, n_genes=120, cell_types=3, n_se=4, seed=5, n_signature_genes=15)
    a.X = log_normalize(a.X)
    return a


def train_model(a, n_jobs):
    with warnings.catch_warnings():
        for w in QUIET:
            warnings.simplefilter("ignore", w)
        return er.train(a, sample_key="Sample", n_features=80, min_cells=10, n_runs=2, seed=7,
                        n_jobs=n_jobs, progress=False)


def recover_table(a, model, mode, n_jobs):
    with warnings.catch_warnings():
        for w in QUIET:
            warnings.simplefilter("ignore", w)
        return er.recover(a.copy(), model, mode=mode, cells_per_run=150, n_jobs=n_jobs, progress=False)


def model_digest(m):
    h = hashlib.sha256()
    for ct in m:
        w = m[ct]
        h.update(("\x01" + ct + "\x01" + "\x00".join(w.index) + "\x01" + "\x00".join(w.columns)).encode())
        h.update(np.ascontiguousarray(w.to_numpy(), dtype=np.float64).tobytes())
    for r in m.runs:
        h.update(model_digest(r).encode())
    return h.hexdigest()


def result_digest(r):
    h = hashlib.sha256()
    h.update("\x00".join(map(str, r.index)).encode())
    for c in ("CellType", "InitSE", "SE"):
        h.update(("\x01" + "\x00".join(map(str, r[c]))).encode())
    h.update("\x00".join(map(str, r.columns)).encode())
    h.update(np.ascontiguousarray(r.iloc[:, 3:].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def kernel_digest(n_jobs):
    from ecorecover import nmf
    rng = np.random.default_rng(3)
    v = rng.random((60, 700)) * (rng.random((60, 700)) < 0.5)
    w = rng.random((60, 4)) + 0.1
    h0 = rng.random((4, 700)) + 0.1
    h, it = nmf.update_h(v, w, h0, n_jobs=n_jobs)
    w2, it2 = nmf.update_w(v, w, h0, n_jobs=n_jobs)
    return hashlib.sha256(h.tobytes() + w2.tobytes() + bytes([it % 256, it2 % 256])).hexdigest()


def digests(n_jobs):
    a = make_data()
    m = train_model(a, n_jobs)
    out = {"train": model_digest(m), "kernel": kernel_digest(n_jobs)}
    for mode in ("exact", "fast"):
        out[mode] = result_digest(recover_table(a, m, mode, n_jobs))
    return out
'''

D: dict[str, Any] = {}
exec(compile(DIGEST_CODE, "<digest code>", "exec"), D)


@pytest.fixture(scope="module")
def data():
    return D["make_data"]()


@pytest.fixture(scope="module")
def model_1(data):
    return D["train_model"](data, 1)


@pytest.fixture(scope="module")
def reference(data, model_1) -> dict[str, str]:
    """Digests of the single-threaded calls."""
    out = {"train": D["model_digest"](model_1), "kernel": D["kernel_digest"](1)}
    for mode in ("exact", "fast"):
        out[mode] = D["result_digest"](D["recover_table"](data, model_1, mode, 1))
    return out


def _same_model(a, b) -> None:
    assert a.cell_types == b.cell_types
    for ct in a:
        assert list(a[ct].index) == list(b[ct].index) and list(a[ct].columns) == list(b[ct].columns), ct
        assert a[ct].to_numpy().tobytes() == b[ct].to_numpy().tobytes(), ct
    assert len(a.runs) == len(b.runs)
    for ra, rb in zip(a.runs, b.runs):
        _same_model(ra, rb)


def test_fixture_is_not_trivial(data, model_1) -> None:
    """The comparisons below are between real results: 3 trained types, several runs each."""
    assert len(model_1) == 3 and len(model_1.runs) == 2
    assert all(model_1[ct].shape[0] > 20 for ct in model_1)
    res = D["recover_table"](data, model_1, "exact", 1)
    assert pd.DataFrame(res.attrs["ecorecover"]["runs"])["run"].max() >= 2  # cells_per_run splits each type
    assert (res["PredScore"] > 0).mean() > 0.8


@pytest.mark.parametrize("n_jobs", [2, -1, None])
def test_train_is_byte_identical_across_threads(data, model_1, n_jobs) -> None:
    _same_model(D["train_model"](data, n_jobs), model_1)


def test_train_is_byte_identical_across_repeats(data, model_1) -> None:
    for _ in range(2):
        _same_model(D["train_model"](data, 2), model_1)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_recover_is_byte_identical_across_threads_and_repeats(data, model_1, mode) -> None:
    ref = D["recover_table"](data, model_1, mode, 1)
    for n_jobs in (2, 2, -1, None):
        got = D["recover_table"](data, model_1, mode, n_jobs)
        assert got[ref.columns[4:-1]].to_numpy().tobytes() == ref[ref.columns[4:-1]].to_numpy().tobytes(), n_jobs
        assert list(got["SE"]) == list(ref["SE"]) and list(got["InitSE"]) == list(ref["InitSE"]), n_jobs
        pd.testing.assert_frame_equal(got, ref, check_exact=True)


def test_kernel_is_byte_identical_across_threads() -> None:
    ref = D["kernel_digest"](1)
    assert all(D["kernel_digest"](n) == ref for n in (2, 3, None))


def _digests_in_subprocess(rayon_threads: str) -> dict[str, str]:
    env = dict(os.environ, RAYON_NUM_THREADS=rayon_threads, PYTHONHASHSEED="0")
    code = DIGEST_CODE + "\nimport json, sys\njson.dump(digests(None), sys.stdout)\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_rayon_num_threads_does_not_change_results(reference) -> None:
    one = _digests_in_subprocess("1")
    two = _digests_in_subprocess("2")
    assert one == two
    assert one == reference  # and equal to this process's single-threaded calls


def test_results_are_not_all_equal_by_accident(data, model_1) -> None:
    """The digests do see the data: another seed gives another model and other scores."""
    with warnings.catch_warnings():
        for w in D["QUIET"]:
            warnings.simplefilter("ignore", w)
        import ecorecover as er

        other = er.train(data, sample_key="Sample", n_features=80, min_cells=10, n_runs=2, seed=8, n_jobs=1,
                         progress=False)
    assert D["model_digest"](other) != D["model_digest"](model_1)
    a = D["recover_table"](data, other, "fast", 1)
    b = D["recover_table"](data, model_1, "fast", 1)
    assert D["result_digest"](a) != D["result_digest"](b)
    assert not np.array_equal(a.iloc[:, 4:].to_numpy(), b.iloc[:, 4:].to_numpy())
