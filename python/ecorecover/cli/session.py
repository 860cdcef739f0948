"""The run's logging and warnings: records of the ``ecorecover`` loggers to stderr (``-v`` debug
with timestamps, ``-q`` warnings only) and warnings shown as one log line in the CLI's spelling."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from .messages import cli_spelling, one_line

__all__ = ["log", "cli_environment"]

log = logging.getLogger("ecorecover.cli")


def _setup_logging(verbose: bool, quiet: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("ecorecover: %(message)s"))
    root = logging.getLogger("ecorecover")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO))
    root.propagate = False
    return handler


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    text = cli_spelling(one_line(message))
    if category.__name__ == "RawCountWarning" and "--normalize" not in text:
        text += " [use --normalize to log-normalise raw counts instead]"
    log.warning("warning: %s", text)


@contextlib.contextmanager
def cli_environment(verbose: bool, quiet: bool) -> Iterator[None]:
    """Log to stderr and show warnings as log lines while the command runs."""
    handler = _setup_logging(verbose, quiet)
    root = logging.getLogger("ecorecover")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            yield
    finally:
        root.removeHandler(handler)
