"""nmf_generate_w() against R's NMFGenerateW (tests/fixtures/nmf_generate_w)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecorecover.training import TrainingInputError, nmf_generate_w
from ecorecover.training.generate_w import nmf_generate_w_details
from ecorecover.nmf import update_w
from ecorecover.preprocessing import RawCountWarning
from ecorecover.rng import RRandom

from conftest import max_abs_diff, read_matrix

CASES = {
    "nfeature150_perse20": ("expression_log", dict(n_features=150, n_features_per_se=20)),
    "nfeature150_perseInf": ("expression_log", dict(n_features=150, n_features_per_se=None)),
    "rawguard_nfeature150_perse20": ("expression_raw", dict(n_features=150, n_features_per_se=20)),
    "defaults": ("expression_log", {}),
}


@pytest.fixture(scope="module")
def fractions() -> pd.DataFrame:
    return read_matrix("nmf_generate_w/fractions.tsv")


@pytest.fixture(scope="module")
def expression() -> dict[str, pd.DataFrame]:
    return {k: read_matrix(f"nmf_generate_w/{k}.tsv.gz") for k in ("expression_log", "expression_raw")}


def details(fractions, expr, **kw):
    # nmf_generate_w's defaults; R: set.seed(1) before the call
    args = {"scale": True, "n_features": 300, "n_features_per_se": 50, **kw}
    return nmf_generate_w_details(fractions, expr, rng=RRandom(1), **args)


@pytest.mark.parametrize("case", list(CASES))
def test_w_matches_r(fractions, expression, case):
    which, kw = CASES[case]
    if which == "expression_raw":
        with pytest.warns(RawCountWarning):
            d = details(fractions, expression[which], **kw)
    else:
        d = details(fractions, expression[which], **kw)
    exp = read_matrix(f"nmf_generate_w/{case}/W.tsv")
    assert list(d["W"].index) == list(exp.index)
    assert list(d["W"].columns) == list(exp.columns)
    assert d["n_iter"] == 420
    # measured <= 1e-15: V differs from R's in the last bits (R's dense ScaleData arithmetic in
    # NMFGenerateW is not bit-reproduced); W0 and the W-steps are bit-exact.
    assert max_abs_diff(d["W"], exp) <= 1e-9


@pytest.mark.parametrize("case", ["nfeature150_perse20", "defaults"])
def test_intermediates_match_r(fractions, expression, case):
    which, kw = CASES[case]
    d = details(fractions, expression[which], **kw)
    v = read_matrix(f"nmf_generate_w/{case}/V.tsv.gz")
    # R names V's rows by gene (pos half, then neg half); ours carry the suffix
    assert [f.rsplit("__", 1)[0] for f in d["V"].index] == list(v.index)
    half = len(v) // 2
    assert all(f.endswith("__pos") for f in d["V"].index[:half]) and all(f.endswith("__neg") for f in d["V"].index[half:])
    assert max_abs_diff(d["V"], v) <= 1e-9  # measured <= 8.9e-16 (dense ScaleData path)
    w0 = read_matrix(f"nmf_generate_w/{case}/W0.tsv.gz")
    assert d["W0"].tobytes() == w0.to_numpy().tobytes()  # runif(m * k), column-major, bit-exact
    fit = read_matrix(f"nmf_generate_w/{case}/W_fit_before_selection.tsv.gz")
    assert max_abs_diff(d["W_fit"], fit) <= 1e-9
    # the W-steps are R's: on R's V and W0 they give R's fit bit for bit
    h = fractions.to_numpy().T + np.finfo(float).eps
    w, it = update_w(v.to_numpy(), w0.to_numpy(), h)
    assert it == 420 and w.tobytes() == fit.to_numpy().tobytes()


def test_seed_rng_and_name_matching(fractions, expression):
    e = expression["expression_log"]
    kw = dict(n_features=150, n_features_per_se=20)
    ref = nmf_generate_w(fractions, e, rng=RRandom(1), **kw)
    assert nmf_generate_w(fractions, e, seed=1, **kw).equals(ref)
    # fractions rows are matched to expression columns by name
    assert nmf_generate_w(fractions.iloc[::-1], e, seed=1, **kw).equals(ref)
    # rng carries its state: a second call continues the stream
    r = RRandom(1)
    nmf_generate_w(fractions, e, rng=r, **kw)
    assert not nmf_generate_w(fractions, e, rng=r, **kw).equals(ref)
    with pytest.raises(TypeError, match="either seed or rng"):
        nmf_generate_w(fractions, e, seed=1, rng=RRandom(1))
    with pytest.raises(TrainingInputError, match="no row for 1 expression sample"):
        nmf_generate_w(fractions.iloc[1:], e, seed=1)
    with pytest.raises(TrainingInputError, match="at least 2 SE"):
        nmf_generate_w(fractions.iloc[:, :1], e, seed=1)


def test_binary_membership_uses_means_equal_to_updates(fractions, expression):
    """0/1 F: the closed form equals R's 420 W-steps (to ~1e-14)."""
    e = expression["expression_log"]
    f = pd.DataFrame(0.0, index=fractions.index, columns=fractions.columns)
    f.values[np.arange(len(f)), np.argmax(fractions.to_numpy(), axis=1)] = 1.0
    d = details(f, e, n_features=150, n_features_per_se=None)
    w, _ = update_w(d["V"].to_numpy(), d["W0"], f.to_numpy().T + np.finfo(float).eps)
    assert max_abs_diff(d["W_fit"], w) <= 1e-12
