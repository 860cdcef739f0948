"""Declarative checks of public arguments: one error type per kind of mistake.

A function declares what each argument accepts, and :func:`validate_params` checks the call
before the body runs::

    @validate_params({"scale_factor": [Interval(Real, 0, None, closed="neither")],
                      "method": [StrOptions({"sparse", "dense"})],
                      "n_jobs": ["n_jobs"]})
    def scale(x, *, method="sparse", scale_factor=1e4, n_jobs=None): ...

A value of none of the accepted types raises :class:`~ecorecover.errors.ParameterTypeError` (a
``TypeError``); a value of an accepted type but outside its range or options raises
:class:`~ecorecover.errors.ParameterError` (a ``ValueError``). The message names the function,
the argument, what it accepts and the value given. Constraints: an :class:`Interval`, a
:class:`StrOptions`, ``"boolean"``, ``None``, ``"callable"``, ``"inf"`` (R's ``Inf``), ``"n_jobs"`` (scikit-learn style
thread counts, checked by :func:`ecorecover._validation.resolve_n_jobs`) or a class (any
instance). Intervals accept finite numbers only: NaN or infinity is a wrong value of the right
type (``ParameterError``); ``Interval("whole", ...)`` takes ints and whole floats (R's numbers).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Literal, TypeVar, cast

import numpy as np

from ._validation import resolve_n_jobs
from .errors import ParameterError, ParameterTypeError

__all__ = ["Constraint", "Interval", "StrOptions", "check_params", "validate_params"]

F = TypeVar("F", bound=Callable[..., Any])
Closed = Literal["both", "left", "right", "neither"]


class Constraint:
    """What one argument accepts: a type (:meth:`has_type`) and, within it, values (:meth:`accepts`)."""

    def has_type(self, value: Any) -> bool:
        """Whether ``value`` is of a type this constraint takes (the value may still be refused)."""
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is accepted."""
        return self.has_type(value)

    def refusal(self, value: Any, name: str) -> str | None:
        """A message of its own for a refused value of the right type (None: the generic one)."""
        return None

    def values_text(self) -> str:
        """The accepted values, for a value of the right type that was refused."""
        return str(self)

    def __str__(self) -> str:
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    return isinstance(value, (Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class Interval(Constraint):
    """Numbers of a kind (``int``/``Integral``, ``float``/``Real``, or ``"whole"``) between two
    bounds (None: unbounded), closed on the sides ``closed`` says."""

    def __init__(self, kind: Any, left: float | None, right: float | None, *, closed: Closed = "both") -> None:
        if kind in (int, Integral):
            self.kind = "int"
        elif kind in (float, Real):
            self.kind = "real"
        elif kind == "whole":
            self.kind = "whole"
        else:
            raise ValueError(f"Interval kind must be int, float or 'whole', got {kind!r}")
        self.left, self.right, self.closed = left, right, closed

    def has_type(self, value: Any) -> bool:
        if self.kind == "int":
            return _is_int(value)
        if not _is_real(value):
            return False
        return self.kind == "real" or _is_int(value) or (math.isfinite(float(value)) and float(value) == int(value))

    def accepts(self, value: Any) -> bool:
        if not self.has_type(value) or not math.isfinite(float(value)):
            return False
        v = float(value) if self.kind == "real" else int(value)
        if self.left is not None and (v < self.left or (v == self.left and self.closed in ("right", "neither"))):
            return False
        return self.right is None or not (v > self.right or (v == self.right and self.closed in ("left", "neither")))

    def values_text(self) -> str:
        if self.left is None and self.right is None:
            return str(self)
        if self.right is None:
            return f"{'>=' if self.closed in ('both', 'left') else '>'} {self.left}"
        if self.left is None:
            return f"{'<=' if self.closed in ('both', 'right') else '<'} {self.right}"
        lo = "[" if self.closed in ("both", "left") else "("
        hi = "]" if self.closed in ("both", "right") else ")"
        return f"in {lo}{self.left}, {self.right}{hi}"

    def __str__(self) -> str:
        what = {"int": "an integer", "real": "a finite number", "whole": "a whole number"}[self.kind]
        return what if self.left is None and self.right is None else f"{what} {self.values_text()}"


class StrOptions(Constraint):
    """One of a set of strings."""

    def __init__(self, options: Iterable[str]) -> None:
        self.options = frozenset(options)

    def has_type(self, value: Any) -> bool:
        return isinstance(value, str)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(o) for o in sorted(self.options))


class _InstanceOf(Constraint):
    def __init__(self, cls: type, label: str | None = None) -> None:
        self.cls, self.label = cls, label

    def has_type(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    def __str__(self) -> str:
        return self.label or f"a {self.cls.__name__}"


class _Boolean(Constraint):
    def has_type(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "True or False"


class _NoneValue(Constraint):
    def has_type(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _RInf(Constraint):
    """R's ``Inf`` (``float("inf")``), for counts where it means "no limit"."""

    def has_type(self, value: Any) -> bool:
        return isinstance(value, (float, np.floating)) and math.isinf(value) and bool(value > 0)

    def __str__(self) -> str:
        return "inf (R's Inf)"


class _Callable(Constraint):
    def has_type(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


class _NJobs(Constraint):
    """scikit-learn style ``n_jobs``: None, -1 (all cores), -k, or a positive count not above
    :func:`ecorecover._validation.max_n_jobs` (the one place that decides)."""

    def has_type(self, value: Any) -> bool:
        return value is None or _is_int(value)

    def refusal(self, value: Any, name: str) -> str | None:
        try:
            resolve_n_jobs(value)
        except ValueError as exc:
            return str(exc)
        return None

    def accepts(self, value: Any) -> bool:
        return self.has_type(value) and self.refusal(value, "n_jobs") is None

    def __str__(self) -> str:
        return "None, -1 (all cores) or a positive integer"


_NAMED: dict[str, Constraint] = {"boolean": _Boolean(), "callable": _Callable(), "n_jobs": _NJobs(), "inf": _RInf()}


def make_constraint(spec: Any) -> Constraint:
    """The :class:`Constraint` a declaration stands for."""
    if isinstance(spec, Constraint):
        return spec
    if spec is None:
        return _NoneValue()
    if isinstance(spec, str) and spec in _NAMED:
        return _NAMED[spec]
    if isinstance(spec, type):
        return _InstanceOf(spec)
    raise ValueError(f"unknown parameter constraint {spec!r}")


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def check_params(where: str, spec: Mapping[str, Sequence[Any]], values: Mapping[str, Any]) -> None:
    """Check ``values`` against ``spec`` (argument name -> accepted constraints); ``where`` names
    the function in the message. Names absent from ``values`` are not checked."""
    for name, declared in spec.items():
        if name not in values:
            continue
        value = values[name]
        constraints = [make_constraint(c) for c in declared]
        if any(c.accepts(value) for c in constraints):
            continue
        typed = [c for c in constraints if c.has_type(value)]
        if typed:
            own = next((m for c in typed if (m := c.refusal(value, name)) is not None), None)
            if own is not None:
                raise ParameterError(f"{where}: {own}")
            accepted = " or ".join(c.values_text() for c in typed)
            raise ParameterError(f"{where}: {name} must be {accepted}, got {_given(value)}")
        accepted = " or ".join(str(c) for c in constraints)
        raise ParameterTypeError(f"{where}: {name} must be {accepted}, got {_given(value)}")


def validate_params(spec: Mapping[str, Sequence[Any]], *, where: str | None = None) -> Callable[[F], F]:
    """Decorator: check the arguments named in ``spec`` (with their defaults) before each call.

    Messages name the function as ``where`` (e.g. ``"ecorecover.train()"``, the name users
    call it by), by default its module (``ecorecover`` for a private one) and qualified name.
    This is the one way public functions check their arguments; :func:`check_params` is its
    engine (and serves arguments that are only known inside a function)."""

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        unknown = set(spec) - set(sig.parameters)
        if unknown:
            raise ValueError(f"validate_params: {func.__qualname__} has no parameter(s) {sorted(unknown)}")
        for c in spec.values():  # fail at import time on a bad declaration
            [make_constraint(x) for x in c]
        private = any(part.startswith("_") for part in func.__module__.split("."))
        named = where or f"{'ecorecover' if private else func.__module__}.{func.__qualname__}()"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # let Python report the bad call itself
            bound.apply_defaults()
            check_params(named, spec, bound.arguments)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
