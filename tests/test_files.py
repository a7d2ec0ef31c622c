"""overt.files: replaced or new, a file is complete, private from creation, and never clobbered."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from overt import files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_the_content_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    files.atomic_write(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def broken(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_temporary_file_is_private_before_its_final_mode_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    files.atomic_write(tmp_path / "public.txt", b"x", mode=0o644)
    assert seen == [0o600]


def test_write_private_creates_a_0600_file_and_refuses_an_existing_name(tmp_path: Path) -> None:
    key = tmp_path / "it-1.key"
    files.write_private(key, b"secret")
    assert key.read_bytes() == b"secret"
    assert _mode(key) == 0o600
    with pytest.raises(FileExistsError):
        files.write_private(key, b"other")
    assert key.read_bytes() == b"secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["it-1.key"]


def test_write_new_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "token").symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        files.write_new(tmp_path / "token", b"secret")
    assert not elsewhere.exists()
