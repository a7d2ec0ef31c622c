"""Crash-safe file writes: the one helper every package uses to put bytes on disk.

A leaf, like ``overt.wire``: it imports nothing of ours.

- :func:`atomic_write` replaces a file so that a reader, or the next start
  after a crash, sees either the old or the new content, never a mix.
- :func:`write_new` creates a file that must not exist yet (a private key, a
  token) and never overwrites one, not even through a planted symlink.

Both write a temporary file in the target's own directory, created with mode
0600 (so the content is never readable by others, whatever the umask), set
the final mode, fsync it, move it into place (``os.replace``, or ``os.link``
when the name must be new) and fsync the directory, so the new name survives
power loss too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``; readers see the old or the new file."""
    target = Path(path)
    temp = _write_temp(target, data, mode)
    try:
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(target.parent)


def write_new(path: str | os.PathLike[str], data: bytes, mode: int = PRIVATE) -> None:
    """Create ``path`` holding ``data``; ``FileExistsError`` if the name is taken.

    The file appears complete or not at all: it is linked into place from a
    temporary file (``os.link`` never replaces an existing name and does not
    follow a symlink planted at ``path``).
    """
    target = Path(path)
    temp = _write_temp(target, data, mode)
    try:
        os.link(temp, target, follow_symlinks=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_directory(target.parent)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Create a private key or token file: :func:`write_new` with mode 0600."""
    write_new(path, data, PRIVATE)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the names in ``directory`` durable (a new or replaced entry).

    A no-op where directories cannot be opened (Windows, whose ``os.replace``
    is durable on its own)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(target: Path, data: bytes, mode: int) -> str:
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)  # not fchmod: Windows' Python has only chmod
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return temp
