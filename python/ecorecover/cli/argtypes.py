"""The argument converters of the command line's options (``type=`` of argparse): positive and
non-negative integers, 'none', finite numbers and numbers in [0, 1]."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonneg_int", "int_or_none", "finite_float", "unit_float"]


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    """``text`` as an integer >= ``minimum``; ``expected`` describes it in the error."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def int_or_none(text: str) -> int | None:
    """A positive integer, or None for 'none' / 'inf' / 'all'."""
    if text.strip().lower() in ("none", "inf", "all"):
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def unit_float(text: str) -> float:
    """A number between 0 and 1."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return v
