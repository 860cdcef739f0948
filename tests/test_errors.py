"""ecorecover.errors: each error of the compiled core reaches Python as its own class, which is
also the built-in callers already catch; the classes keep their old import locations."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import ecorecover
from ecorecover import _core, errors


def _nmf_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((6, 5)), rng.random((6, 2)) + 0.1, rng.random((2, 5)) + 0.1


def _shape() -> None:
    v, w, h0 = _nmf_inputs()
    _core.update_h(v, w[:4], h0)


def _non_finite() -> None:
    v, w, h0 = _nmf_inputs()
    v[1, 2] = np.nan
    _core.update_h(v, w, h0)


def _negative() -> None:
    v, w, h0 = _nmf_inputs()
    v[1, 2] = -1.0
    _core.update_h(v, w, h0)


def _invalid_argument() -> None:
    _core.RRandom(1).runif(3, 2.0, 1.0)


def _cancelled() -> None:
    v, w, h0 = _nmf_inputs()
    token = _core.CancelToken()
    token.cancel()
    token.run(_core.update_h, v, w, h0)


@pytest.mark.parametrize(
    ("call", "cls", "builtin", "text"),
    [
        (_shape, errors.ShapeError, ValueError, "shape mismatch"),
        (_non_finite, errors.NonFiniteValueError, ValueError, "non-finite value"),
        (_negative, errors.NegativeValueError, ValueError, "negative value"),
        (_invalid_argument, errors.ParameterError, ValueError, "invalid argument: runif"),
        (_cancelled, errors.CancelledError, concurrent.futures.CancelledError, "cancelled"),
    ],
    ids=["Shape", "NonFinite", "Negative", "InvalidArgument", "Cancelled"],
)
def test_each_core_error_variant_reaches_python_as_its_class(call, cls, builtin, text) -> None:
    with pytest.raises(cls, match=text) as info:
        call()
    assert type(info.value) is cls
    assert isinstance(info.value, errors.EcorecoverError) and isinstance(info.value, builtin)


def test_the_data_errors_are_input_data_errors() -> None:
    for cls in (errors.ShapeError, errors.NonFiniteValueError, errors.NegativeValueError, errors.TrainingInputError):
        assert issubclass(cls, errors.InputDataError) and issubclass(cls, ValueError)


def test_classes_subclass_the_builtin_a_caller_would_catch() -> None:
    assert issubclass(errors.ParameterError, ValueError)
    assert issubclass(errors.ParameterTypeError, TypeError)
    assert issubclass(errors.GeneMatchError, KeyError) and issubclass(errors.GeneMatchError, ValueError)
    assert issubclass(errors.ModelFileError, ValueError)
    assert issubclass(errors.CancelledError, concurrent.futures.CancelledError)
    # KeyError would repr() the message; GeneMatchError prints it as written.
    assert str(errors.GeneMatchError("no gene 'X' in the data")) == "no gene 'X' in the data"


def test_old_import_locations_name_the_same_classes() -> None:
    from ecorecover import preprocessing

    assert ecorecover.GeneMatchError is errors.GeneMatchError
    assert ecorecover.RecoveryWarning is errors.RecoveryWarning
    assert ecorecover.TrainingInputError is errors.TrainingInputError
    assert ecorecover.SkippedCellTypeWarning is errors.SkippedCellTypeWarning
    assert preprocessing.RawCountWarning is errors.RawCountWarning
    assert preprocessing.NonIntegerCountsWarning is errors.NonIntegerCountsWarning
    assert ecorecover.errors is errors


def _cells(n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(n, dtype=np.float64)
    return x, x[::-1].copy(), np.array([0, 1] * (n // 2), dtype=np.uint32), np.zeros(n, dtype=np.uint32)


@pytest.mark.parametrize(
    ("call", "cls", "text"),
    [
        (lambda: _core.scale_dense(np.ones((3, 2)), method="fancy"), errors.ParameterError, "method must be"),
        (lambda: _core.MoranTest(*_cells()[:3], 2, _cells()[3], 0, 1), errors.ParameterError, "k must be in"),
        (lambda: _core.MoranTest(*_cells()[:2], _cells()[2], 1, _cells()[3], 2, 1), errors.ParameterError,
         r"labels\[1\] = 1 is not below 1"),
        (lambda: _core.MoranTest(*_cells()[:2], _cells()[2][:4], 2, _cells()[3], 2, 1), errors.ShapeError,
         "4 labels for 6 cells"),
        (lambda: _core.ColocalizationTest(*_cells()[:2], _cells()[2], 1, _cells()[3], 2, 50.0, 1, 1),
         errors.ParameterError, "is not below 1"),
    ],
    ids=["scale-method", "moran-k", "moran-codes", "moran-labels-length", "coloc-codes"],
)
def test_binding_checks_raise_ecorecover_errors(call, cls, text) -> None:
    """The bindings' own checks (preprocess, spatial) raise ecorecover.errors classes too."""
    with pytest.raises(cls, match=text) as info:
        call()
    assert type(info.value) is cls and isinstance(info.value, ValueError)
