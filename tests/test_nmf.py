"""KL multiplicative updates against R (NMF 0.25) intermediates in tests/fixtures, a plain
Python reference on random inputs, thread-count independence and GIL release."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecorecover import nmf

from conftest import read_matrix, read_table

EPS = np.finfo(float).eps


def _kernel_small():
    d = "recover/nmfpredict_kernel_small/"
    v, w, h0, h = (read_matrix(d + f) for f in ("V.tsv.gz", "W_used.tsv", "H0.tsv.gz", "H_raw.tsv.gz"))
    assert list(v.index) == list(w.index)
    return v.to_numpy(), w.to_numpy(), h0.to_numpy(), h.to_numpy()


def test_h_step_reproduces_r_bit_for_bit_with_its_iteration_count():
    v, w, h0, expected = _kernel_small()
    h, n_iter = nmf.update_h(v, w, h0)
    assert n_iter == 970  # recorded in the fixture's call.txt
    assert h.tobytes() == np.ascontiguousarray(expected).tobytes()


@pytest.mark.parametrize("case", ["nfeature150_perse20", "defaults"])
def test_w_step_reproduces_r_bit_for_bit(case):
    d = f"nmf_generate_w/{case}/"
    v, w0, expected = (read_matrix(d + f) for f in ("V.tsv.gz", "W0.tsv.gz", "W_fit_before_selection.tsv.gz"))
    fractions = read_matrix("nmf_generate_w/fractions.tsv").loc[v.columns]
    h = fractions.to_numpy().T + EPS
    w, n_iter = nmf.update_w(v.to_numpy(), w0.to_numpy(), h)
    summary = read_table("nmf_generate_w/summary.tsv").set_index("case")
    assert n_iter == summary.loc[case, "niter"] == 420
    assert w.tobytes() == np.ascontiguousarray(expected.to_numpy()).tobytes()


def test_results_do_not_depend_on_thread_count():
    v, w, h0, _ = _kernel_small()
    big_v = np.tile(v, (1, 40))
    big_h0 = np.tile(h0, (1, 40))
    h1, i1 = nmf.update_h(big_v, w, big_h0, n_jobs=1)
    h2, i2 = nmf.update_h(big_v, w, big_h0, n_jobs=2)
    assert i1 == i2 and h1.tobytes() == h2.tobytes()
    w1, j1 = nmf.update_w(big_v, w, np.ascontiguousarray(big_h0), n_jobs=1)
    w2, j2 = nmf.update_w(big_v, w, np.ascontiguousarray(big_h0), n_jobs=2)
    assert j1 == j2 and w1.tobytes() == w2.tobytes()


def test_two_python_threads_run_the_h_step_concurrently_with_serial_results():
    v, w, h0, _ = _kernel_small()
    rng = np.random.default_rng(0)
    inputs = [(np.tile(v, (1, 30)) * rng.uniform(0.5, 1.5, (1, 2700)), np.tile(h0, (1, 30))) for _ in range(2)]
    serial = [nmf.update_h(vv, w, hh, n_jobs=1) for vv, hh in inputs]
    out: list = [None, None]

    def work(i):
        out[i] = nmf.update_h(inputs[i][0], w, inputs[i][1], n_jobs=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (hs, its), (hc, itc) in zip(serial, out):
        assert its == itc and hs.tobytes() == hc.tobytes()


# GIL release: tests/test_concurrency.py::test_kernels_release_the_gil (deterministic, no timing).


# --- a plain Python reference with the same operation order ---------------------------------


def _reference(v, fixed, x0, h_step, max_iter):
    """update_h (h_step) or update_w with NMF's rule, element by element in R's order."""
    v = np.asarray(v, float)
    x = np.array(x0, float)
    m, n = v.shape
    ref, counter, it = None, 0, 0
    for it in range(1, max_iter + 1):
        if h_step:
            w, h = fixed, x
            denom = [sum(w[i, a] for i in range(m)) for a in range(w.shape[1])]
            new = h.copy()
            for j in range(n):
                acc = [0.0] * w.shape[1]
                for i in range(m):
                    if v[i, j] == 0:
                        continue
                    wh = 0.0
                    for a in range(w.shape[1]):
                        wh += w[i, a] * h[a, j]
                    if wh == 0:
                        continue
                    for a in range(w.shape[1]):
                        acc[a] += w[i, a] * (v[i, j] / wh)
                for a in range(w.shape[1]):
                    new[a, j] = h[a, j] * acc[a] / denom[a]
            x = new
            labels = x.argmax(axis=0)
        else:
            w, h = x, fixed
            denom = [sum(h[a, j] for j in range(n)) for a in range(h.shape[0])]
            new = w.copy()
            for i in range(m):
                acc = [0.0] * h.shape[0]
                for j in range(n):
                    if v[i, j] == 0:
                        continue
                    wh = 0.0
                    for a in range(h.shape[0]):
                        wh += w[i, a] * h[a, j]
                    if wh == 0:
                        continue
                    for a in range(h.shape[0]):
                        acc[a] += h[a, j] * (v[i, j] / wh)
                for a in range(h.shape[0]):
                    new[i, a] = w[i, a] * acc[a] / denom[a]
            x = new
            labels = h.argmax(axis=0)
        if it % 10 == 0:
            x = np.maximum(x, EPS)
            conn = labels[:, None] == labels[None, :]  # the n x n matrix R builds
            if ref is not None and np.array_equal(conn, ref):
                counter += 1
            else:
                ref, counter = conn, 0
            if counter > 40:
                break
    return x, it


@st.composite
def problems(draw):
    m = draw(st.integers(1, 5))
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 3))
    vals = st.one_of(st.just(0.0), st.floats(0.01, 5.0))
    pos = st.floats(0.05, 2.0)
    v = np.array(draw(st.lists(vals, min_size=m * n, max_size=m * n))).reshape(m, n)
    w = np.array(draw(st.lists(pos, min_size=m * k, max_size=m * k))).reshape(m, k)
    h = np.array(draw(st.lists(pos, min_size=k * n, max_size=k * n))).reshape(k, n)
    return v, w, h, draw(st.integers(1, 60))


@settings(max_examples=40, deadline=None)
@given(problems())
def test_updates_equal_the_plain_reference(p):
    v, w, h, max_iter = p
    h_ref, it_ref = _reference(v, w, h, True, max_iter)
    h_got, it_got = nmf.update_h(v, w, h, max_iter=max_iter)
    assert it_got == it_ref and np.array_equal(h_got, h_ref)
    w_ref, jt_ref = _reference(v, h, w, False, max_iter)
    w_got, jt_got = nmf.update_w(v, w, h, max_iter=max_iter)
    assert jt_got == jt_ref and np.array_equal(w_got, w_ref)


def test_fixed_h_always_takes_420_iterations():
    rng = np.random.default_rng(3)
    v = rng.uniform(0, 2, (6, 9))
    h = np.zeros((3, 9))
    h[rng.integers(0, 3, 9), np.arange(9)] = 1
    _, it = nmf.update_w(v, rng.uniform(0, 1, (6, 3)), h + EPS)
    assert it == 420


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones((3, 4)), np.ones((2, 2)), np.ones((2, 4))), "shape mismatch"),
        ((np.ones((3, 4)), np.ones((3, 2)), np.ones((3, 4))), "shape mismatch"),
        ((np.full((3, 4), np.nan), np.ones((3, 2)), np.ones((2, 4))), "non-finite"),
        ((-np.ones((3, 4)), np.ones((3, 2)), np.ones((2, 4))), "non-negative"),
        ((np.ones((0, 4)), np.ones((0, 2)), np.ones((2, 4))), "empty"),
        ((np.ones((3, 0)), np.ones((3, 2)), np.ones((2, 0))), "empty"),
        ((np.ones((3, 4)), np.ones((3, 0)), np.ones((0, 4))), "rank k is 0"),
    ],
)
def test_bad_input_raises_instead_of_crashing(args, match):
    with pytest.raises(ValueError, match=match):
        nmf.update_h(*args)
    with pytest.raises(ValueError, match=match):
        nmf.update_w(*args)


def test_bad_dtype_and_max_iter():
    with pytest.raises(TypeError, match="V must hold numbers"):
        nmf.update_h(np.array([["a"]]), np.ones((1, 1)), np.ones((1, 1)))
    with pytest.raises(ValueError, match="max_iter"):
        nmf.update_h(np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)), max_iter=0)


# A Rust panic becoming a Python RuntimeError (the interpreter going on) is checked by
# `cargo test -p ecorecover-py` (rust/py/src/glue.rs): the hook that panics is not in the wheel.
