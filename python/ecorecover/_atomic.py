"""Atomic output files: write to a temporary file next to the target, then rename.

A crash or an error while writing leaves the target as it was (absent or the old file) and no
temporary file behind; an existing target is only replaced when the caller allows it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["OutputExistsError", "check_outputs", "atomic_outputs", "temp_path_for"]


class OutputExistsError(FileExistsError):
    """An output file exists and overwriting was not allowed."""

    def __init__(self, path: str | os.PathLike[str], hint: str = "pass --force to overwrite it") -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: output file exists; {hint}")


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
    """Fail early: every directory must exist, no output may exist unless ``force``, and no
    two outputs may be the same file."""
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
        if p.is_dir():
            raise IsADirectoryError(f"{p}: output path is a directory")
        if p.exists() and not force:
            raise OutputExistsError(p)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike[str]], *, force: bool) -> Iterator[list[Path]]:
    """Yield one temporary path per output; on success move them all onto the outputs.

    If the body raises, every temporary file is removed and no output is touched. Without
    ``force``, an output that appeared in the meantime is not replaced (the temporaries are
    removed and :class:`OutputExistsError` raised); with several outputs the check for all of them
    happens before the first is moved.
    """
    finals = [Path(p) for p in paths]
    check_outputs(finals, force=force)
    temps = [temp_path_for(p) for p in finals]
    try:
        yield temps
        for t, f in zip(temps, finals):
            if not t.exists():
                raise RuntimeError(f"{f}: nothing was written")
            if f.exists() and not force:
                raise OutputExistsError(f)
        for t, f in zip(temps, finals):
            if force:
                os.replace(t, f)
            else:
                try:  # no-clobber: a hard link fails if the target appeared meanwhile
                    os.link(t, f)
                    _remove(t)
                except FileExistsError:
                    raise OutputExistsError(f) from None
                except OSError:  # file system without hard links
                    if f.exists():
                        raise OutputExistsError(f) from None
                    os.replace(t, f)
            with contextlib.suppress(OSError):
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    finally:
        for t in temps:
            if t.exists():
                _remove(t)
