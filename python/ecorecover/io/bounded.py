"""Bounded reading of untrusted model files: size limits and decompression-bomb guards.

A model file is at most :data:`MAX_MODEL_FILE_BYTES` on disk; a compressed one (gzip, bzip2, xz)
is decompressed as a stream and refused once it grows past
``max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO x its size)``, before anything is parsed.
Problems raise :class:`ecorecover.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

__all__ = ["MAX_MODEL_FILE_BYTES", "MIN_DECOMPRESSED_LIMIT", "MAX_COMPRESSION_RATIO", "read_bounded", "compression"]

#: Largest model file read (bytes on disk).
MAX_MODEL_FILE_BYTES = 1 << 30
#: A compressed model file may always decompress to this many bytes...
MIN_DECOMPRESSED_LIMIT = 16 << 20
#: ... or to this many times its size if that is more (real models compress 1.2-3 fold).
MAX_COMPRESSION_RATIO = 64

_Opener = Callable[..., Any]  # gzip.open, bz2.open, lzma.open
_COMPRESSED: dict[bytes, tuple[str, _Opener]] = {
    b"\x1f\x8b": ("gzip", gzip.open),
    b"BZh": ("bzip2", bz2.open),
    b"\xfd7zXZ\x00": ("xz", lzma.open),
}


def compression(head: bytes) -> tuple[str, _Opener] | None:
    """The compression (name, opener) whose magic number starts ``head``, or None."""
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return kind
    return None


def read_bounded(path: Path) -> bytes:
    """The (decompressed) content of a model file, refusing oversized files and decompression
    bombs before they are materialised: the stream is decompressed in 1 MiB pieces and abandoned
    as soon as it exceeds the limit."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from None
    if not path.is_file():
        raise ModelFileError(f"{path} is not a regular file")
    if size > MAX_MODEL_FILE_BYTES:
        raise ModelFileError(f"{path} is {size} bytes, more than the {MAX_MODEL_FILE_BYTES} a model file may have")
    with open(path, "rb") as fh:
        head = fh.read(8)
    kind = compression(head)
    if kind is None:
        return path.read_bytes()
    name, opener = kind
    limit = min(MAX_MODEL_FILE_BYTES, max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO * size))
    chunks: list[bytes] = []
    total = 0
    try:
        with opener(path, "rb") as fh:
            while True:
                piece = fh.read(1 << 20)
                if not piece:
                    break
                total += len(piece)
                if total > limit:
                    raise ModelFileError(
                        f"{path}: the {size}-byte {name} stream decompresses to more than {limit} bytes "
                        f"(limit max({MIN_DECOMPRESSED_LIMIT}, {MAX_COMPRESSION_RATIO} x the file size)); refusing it "
                        "as a decompression bomb"
                    )
                chunks.append(piece)
    except ModelFileError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise ModelFileError(f"{path}: damaged {name} stream: {exc}") from None
    data = b"".join(chunks)
    if compression(data[:8]) is not None:
        raise ModelFileError(f"{path}: compressed twice ({name} of a compressed stream); not a model file")
    return data

