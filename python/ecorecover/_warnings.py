"""Warnings that point at the user's code: the one place the package calls ``warnings.warn``.

A warning's file and line should be the caller's, not a helper's inside ecorecover. A fixed
``stacklevel`` breaks as soon as a helper moves or a decorator (``_params.validate_params``)
adds a frame, so :func:`warn` counts the frames instead: the warning is attributed to the first
frame outside the ecorecover package (as pandas' ``find_stack_level`` does).
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["find_stack_level", "warn"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def find_stack_level() -> int:
    """The ``stacklevel`` that, passed to ``warnings.warn`` by the caller of this function,
    names the first frame outside the ecorecover package."""
    frame = sys._getframe(1)  # the caller, which will call warnings.warn
    level = 1
    while frame.f_back is not None and _inside(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first caller outside ecorecover."""
    warnings.warn(message, category, stacklevel=find_stack_level())
