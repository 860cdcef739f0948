"""Atomic output files: write to a temporary file next to the target, then rename.

One rule for the API (:meth:`ecorecover.RecoveryModel.save`) and the command line:

- an existing output is only replaced when the caller allows it (``overwrite=True`` /
  ``--force``), and only if it is a regular file: a symlink, device, fifo, socket or directory is
  never replaced, whatever the caller allows;
- a replaced file keeps its permission bits (a new file gets the umask's);
- an error, a crash of the writer or SIGTERM while writing leaves the target as it was (absent or
  the old file) and no temporary file behind (SIGTERM: the temporary files are removed, then the
  signal's previous disposition applies).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "OutputExistsError",
    "NotRegularFileError",
    "check_outputs",
    "check_target",
    "atomic_outputs",
    "temp_path_for",
    "terminate_cleanly",
    "replace_into",
]


class OutputExistsError(FileExistsError):
    """An output file exists and overwriting was not allowed."""

    def __init__(self, path: str | os.PathLike[str], hint: str = "pass --force to overwrite it") -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: output file exists; {hint}")


class NotRegularFileError(OSError):
    """An output path exists and is not a regular file (symlink, device, fifo, socket, directory);
    it is never replaced, even when overwriting is allowed."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        self.path = os.fspath(path)
        super().__init__(
            f"{self.path}: output path exists and is a {kind}, not a regular file; refusing to replace it "
            "(remove it or choose another name)"
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def check_target(
    path: str | os.PathLike[str], *, overwrite: bool, hint: str = "pass --force to overwrite it"
) -> os.stat_result | None:
    """The ``lstat`` of an existing output that may be replaced, or None when it does not exist.

    Raises :class:`NotRegularFileError` (or :class:`IsADirectoryError` for a directory) when
    ``path`` is anything but a regular file, whatever ``overwrite`` says, and
    :class:`OutputExistsError` when it is a regular file and ``overwrite`` is false.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{os.fspath(path)}: output path is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, _kind(st.st_mode))
    if not overwrite:
        raise OutputExistsError(path, hint)
    return st


class _Terminated(BaseException):
    """Raised by the temporary SIGTERM handler, so that clean-up code runs (not an Exception:
    ``except Exception`` must not swallow it)."""


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While the body runs, SIGTERM raises inside it (so ``finally`` / ``except BaseException``
    clean-up removes temporary files); afterwards the signal is re-delivered with its previous
    disposition (the default terminates the process). Only in the main thread (Python runs signal
    handlers there); elsewhere, or when SIGTERM is ignored, nothing changes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - no signal support
        yield
        return
    if previous in (signal.SIG_IGN, None):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):  # a Python handler (possibly an outer terminate_cleanly): let it act
            previous(signal.SIGTERM, None)
            raise InterruptedError("writing was interrupted by SIGTERM; nothing was written") from None
        os.kill(os.getpid(), signal.SIGTERM)  # default action: terminate (the temporaries are gone)
        raise InterruptedError("writing was interrupted by SIGTERM; nothing was written") from None  # pragma: no cover
    finally:
        signal.signal(signal.SIGTERM, previous)


def replace_into(tmp: Path, final: Path, *, overwrite: bool, hint: str = "pass --force to overwrite it") -> None:
    """Move the finished temporary file ``tmp`` onto ``final`` following the rule of the module:
    re-checks ``final`` right before the move, keeps the mode of a replaced file, never clobbers
    when ``overwrite`` is false (hard link, which fails if ``final`` appeared meanwhile)."""
    st = check_target(final, overwrite=overwrite, hint=hint)
    if st is not None:
        os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o777)
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)
    except FileExistsError:
        check_target(final, overwrite=False, hint=hint)  # raises the right error
        raise OutputExistsError(final, hint) from None  # pragma: no cover
    except OSError:  # file system without hard links
        if os.path.lexists(final):
            check_target(final, overwrite=False, hint=hint)
            raise OutputExistsError(final, hint) from None  # pragma: no cover
        os.replace(tmp, final)
        return
    _remove(Path(tmp))


def _suffix(path: Path) -> str:
    s = path.suffixes
    if len(s) >= 2 and s[-1].lower() == ".gz":
        return "".join(s[-2:])
    return path.suffix


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden file name in ``path``'s directory, keeping its suffix (``.h5``, ``.tsv.gz``)."""
    p = Path(path)
    suffix = _suffix(p)
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return p.with_name(f".{stem}.{secrets.token_hex(6)}.tmp{suffix}")


def check_outputs(paths: Sequence[str | os.PathLike[str]], *, force: bool) -> None:
    """Fail early: every directory must exist, no output may exist unless ``force`` (and then only
    as a regular file, see :func:`check_target`), and no two outputs may be the same file."""
    seen: dict[str, str] = {}
    for path in paths:
        p = Path(path)
        key = os.path.realpath(p)
        if key in seen:
            raise ValueError(f"{p}: the same file is given for two outputs")
        seen[key] = str(p)
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise FileNotFoundError(f"{p}: output directory {parent} does not exist")
        check_target(p, overwrite=force)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike[str]], *, force: bool) -> Iterator[list[Path]]:
    """Yield one temporary path per output; on success move them all onto the outputs.

    If the body raises (or SIGTERM arrives, in the main thread), every temporary file is removed
    and no output is touched. Without ``force``, an output that appeared in the meantime is not
    replaced (the temporaries are removed and :class:`OutputExistsError` raised); with several
    outputs the check for all of them happens before the first is moved. Outputs that are not
    regular files are never replaced (:func:`check_target`); a replaced file keeps its mode.
    """
    finals = [Path(p) for p in paths]
    check_outputs(finals, force=force)
    temps = [temp_path_for(p) for p in finals]
    with terminate_cleanly():
        try:
            yield temps
            for t, f in zip(temps, finals):
                if not t.exists():
                    raise RuntimeError(f"{f}: nothing was written")
                check_target(f, overwrite=force)
            for t, f in zip(temps, finals):
                replace_into(t, f, overwrite=force)
                with contextlib.suppress(OSError):
                    fd = os.open(f, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        finally:
            for t in temps:
                if os.path.lexists(t):
                    _remove(t)
