"""The ``ecorecover`` command line: train, aggregate, recover, inspect, demo, validate.

:func:`main` parses the arguments (:mod:`.parser`), runs the command's module (``train``,
``aggregate``, ``recover``, ``inspect``, ``demo``, ``validate``) with the CLI's logging
(:mod:`.session`), and turns errors into exit codes and one-line messages in the command line's
spelling (:mod:`.messages`).

Every output file is written atomically (temporary file + rename; removed on errors and SIGTERM)
and is never overwritten without ``--force``; a symlink, device, fifo or directory is never
replaced, even with ``--force`` (the rule of ``RecoveryModel.save``). Exit codes: 0 success,
2 bad usage or input (a one-line message naming the file and the problem; ``-v`` adds the
traceback), 1 an unexpected internal error, 130 interrupted. Progress bars go to stderr
(``--quiet`` turns them off).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from .messages import API_TO_FLAG, CLIError, cli_spelling, one_line
from .parser import build_parser
from .session import cli_environment

__all__ = ["main", "build_parser", "CLIError", "cli_spelling", "API_TO_FLAG"]


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors about the usage or the input: one line, exit code 2 (the others are internal)."""
    from .._atomic import OutputExistsError
    from ..errors import EcorecoverError

    return (CLIError, OutputExistsError, EcorecoverError, OSError, ValueError, KeyError, TypeError)


def _report(exc: Exception, prog: str, verbose: bool) -> int:
    """Print ``exc`` as one line (the traceback too with ``-v``); the exit code."""
    from ..errors import CancelledError

    if verbose:
        traceback.print_exc(file=sys.stderr)
    if isinstance(exc, _expected_errors()) and not isinstance(exc, CancelledError):
        msg: object = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError) and exc.filename and \
                str(exc.filename) not in str(msg):
            msg = f"{exc.filename}: {exc.strerror or msg}"
        print(f"{prog}: error: {cli_spelling(one_line(msg))}", file=sys.stderr)
        return 2
    print(f"{prog}: internal error: {type(exc).__name__}: {cli_spelling(one_line(exc))} "
          "(run with -v for the traceback)", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecorecover`` command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prog = f"ecorecover {args.command}"
    with cli_environment(args.verbose, args.quiet):
        try:
            return int(args.func(args))
        except BrokenPipeError:  # e.g. 'ecorecover inspect MODEL | head'
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - expected errors exit 2, internal ones 1
            return _report(exc, prog, args.verbose)
