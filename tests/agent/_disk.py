"""A small file system to fill, for the full-disk tests (tests/agent, tests/e2e)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4 << 10


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``directory``; the test is skipped if not root."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    directory.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path, leave: int = 0) -> list[Path]:
    """Fill the file system under ``directory`` until it refuses, then free
    ``leave`` bytes (in 4 KiB pages). Returns the filler files."""
    directory.mkdir(exist_ok=True)
    made: list[Path] = []
    for chunk in (1 << 20, 64 << 10, PAGE):
        while True:
            path = directory / f"{len(made):05d}"
            try:
                with path.open("wb") as handle:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                path.unlink(missing_ok=True)
                if exc.errno != errno.ENOSPC:
                    raise
                break
            made.append(path)
    pages = [p for p in made if p.stat().st_size == PAGE]
    for path in pages[: leave // PAGE]:
        path.unlink()
        made.remove(path)
    return made
