"""ecorecover._params: declared argument constraints; a wrong type is a ParameterTypeError, a
wrong value of the right type a ParameterError, and the message names the function, the
argument, what it accepts and the value given. Also: the public functions use it."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pytest

import ecorecover as er
from ecorecover import nmf, preprocessing, rng, simulate
from ecorecover._params import Interval, StrOptions, check_params, validate_params
from ecorecover._validation import max_n_jobs
from ecorecover.errors import EcorecoverError, ParameterError, ParameterTypeError


@validate_params({
    "count": [Interval(Integral, 1, None)],
    "fraction": [Interval(Real, 0, 1, closed="left")],
    "whole": [Interval("whole", 0, 10)],
    "method": [StrOptions({"exact", "fast"})],
    "flag": ["boolean"],
    "label": [str, None],
    "hook": [None, "callable"],
    "n_jobs": ["n_jobs"],
})
def _f(count=1, fraction=0.5, whole=3, method="exact", flag=False, label=None, hook=None, n_jobs=None):
    return "ran"


@pytest.mark.parametrize(
    "kwargs",
    [
        {}, {"count": np.int64(7)}, {"fraction": 0}, {"fraction": np.float32(0.25)}, {"whole": 4.0},
        {"whole": 10}, {"method": "fast"}, {"flag": np.bool_(True)}, {"label": "x"}, {"hook": print},
        {"n_jobs": -1}, {"n_jobs": 2},
    ],
)
def test_accepted_values_run(kwargs) -> None:
    assert _f(**kwargs) == "ran"


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"count": 0}, r"count must be >= 1, got 0 \(int\)"),
        ({"fraction": 1.0}, r"fraction must be in \[0, 1\), got 1.0 \(float\)"),
        ({"fraction": float("nan")}, r"fraction must be in \[0, 1\), got nan"),
        ({"whole": 2.5}, None),
        ({"whole": 11}, r"whole must be in \[0, 10\]"),
        ({"method": "slow"}, "method must be one of 'exact', 'fast', got 'slow' \\(str\\)"),
        ({"n_jobs": 0}, "n_jobs must not be 0"),
        ({"n_jobs": 10**6}, "n_jobs=1000000 is more threads than this machine can use"),
    ],
)
def test_a_wrong_value_is_a_parameter_error(kwargs, text) -> None:
    if text is None:  # 2.5 is no whole number: the type is wrong
        with pytest.raises(ParameterTypeError, match="whole must be a whole number"):
            _f(**kwargs)
        return
    with pytest.raises(ParameterError, match=text) as info:
        _f(**kwargs)
    assert "_f(): " in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EcorecoverError)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"count": 1.0}, "count must be an integer >= 1, got 1.0 \\(float\\)"),
        ({"count": True}, "count must be an integer >= 1, got True \\(bool\\)"),
        ({"fraction": "0.5"}, "fraction must be a finite number in"),
        ({"method": 1}, "method must be one of 'exact', 'fast', got 1 \\(int\\)"),
        ({"flag": 1}, "flag must be True or False, got 1 \\(int\\)"),
        ({"label": 3}, "label must be a str or None, got 3"),
        ({"hook": 3}, "hook must be None or a callable"),
        ({"n_jobs": 1.5}, "n_jobs must be None, -1 \\(all cores\\) or a positive integer, got 1.5"),
    ],
)
def test_a_wrong_type_is_a_parameter_type_error(kwargs, text) -> None:
    with pytest.raises(ParameterTypeError, match=text) as info:
        _f(**kwargs)
    assert isinstance(info.value, TypeError) and isinstance(info.value, EcorecoverError)


def test_a_bad_call_is_left_to_python_and_the_signature_is_kept() -> None:
    import inspect

    with pytest.raises(TypeError, match="unexpected keyword") as info:
        _f(nonsense=1)
    assert not isinstance(info.value, EcorecoverError)
    assert list(inspect.signature(_f).parameters)[:2] == ["count", "fraction"]


def test_declarations_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="no parameter"):
        validate_params({"missing": [int]})(lambda a: a)
    with pytest.raises(ValueError, match="unknown parameter constraint"):
        validate_params({"a": ["no-such-constraint"]})(lambda a: a)


def test_check_params_skips_names_not_given() -> None:
    check_params("f()", {"a": [int]}, {})
    with pytest.raises(ParameterTypeError, match=r"^f\(\): a must be a int, got 'x' \(str\)$"):
        check_params("f()", {"a": [int]}, {"a": "x"})


@pytest.mark.parametrize(
    ("call", "cls", "where"),
    [
        (lambda: preprocessing.log_normalize(np.ones((2, 2)), scale_factor=0), ParameterError,
         "ecorecover.preprocessing.log_normalize()"),
        (lambda: preprocessing.scale(np.ones((2, 2)), method="fancy"), ParameterError, "ecorecover.preprocessing.scale()"),
        (lambda: preprocessing.scale(np.ones((2, 2)), n_jobs="all"), ParameterTypeError, "ecorecover.preprocessing.scale()"),
        (lambda: nmf.update_h(np.ones((2, 2)), np.ones((2, 1)), np.ones((1, 2)), max_iter=0), ParameterError,
         "ecorecover.nmf.update_h()"),
        (lambda: er.aggregate([{}], min_model_fraction=1.0), ParameterError, "ecorecover.aggregate()"),
        (lambda: er.pseudobulks(None, None, n_mixtures=2.5), ParameterTypeError,
         "ecorecover.pseudobulk.pseudobulks()"),
        (lambda: simulate.simulate(n_se=1), ParameterError, "ecorecover.simulate.simulate()"),
        (lambda: er.train(None, n_runs=0), ParameterError, "ecorecover.train()"),
        (lambda: er.train(None, downsample=float("-inf")), ParameterTypeError, "ecorecover.train()"),
        (lambda: er.loocv(None, scheme="leave_two_out"), ParameterError, "ecorecover.loocv()"),
        (lambda: er.metrics(None, scheme="some"), ParameterError, "ecorecover.metrics()"),
        (lambda: er.deconvolve(None, None, sum_to_one=1), ParameterTypeError, "ecorecover.deconvolve()"),
        (lambda: rng.RRandom(2**40), ParameterError, "ecorecover.rng.RRandom.__init__()"),
        (lambda: rng.RRandom(1).runif(-1), ParameterError, "ecorecover.rng.RRandom.runif()"),
        (lambda: rng.RRandom(1).sample_int("10", 1), ParameterTypeError, "ecorecover.rng.RRandom.sample_int()"),
    ],
)
def test_public_functions_declare_their_arguments(call, cls, where) -> None:
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls and str(info.value).startswith(where + ": "), info.value


def test_n_jobs_is_resolved_in_one_place() -> None:
    cap = max_n_jobs()
    assert preprocessing.scale(np.ones((3, 2)), n_jobs=cap).shape == (3, 2)
    with pytest.raises(ParameterError, match=f"at most {cap}"):
        preprocessing.scale(np.ones((3, 2)), n_jobs=cap + 1)
