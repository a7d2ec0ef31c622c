"""The spool under ``kill -9`` and a full disk, with real processes and a real
file system: every put that returned survives intact, the database stays sound."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sinks.base import SpoolError, SpoolFullError
from agent.sinks.spool import Spool
from overt.wire.sealed import open_sealed, parse_sealed

from ._build import DATASET, T0_MS, body_for, make_sealed
from ._spool_child import BODY_BYTES

REPO = Path(__file__).resolve().parents[3]
KILLS = 20


def start_child(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.agent.sinks._spool_child", str(state_dir), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def returned_seqs(lines: list[str]) -> list[int]:
    """Sequence numbers whose put returned: complete lines of digits only."""
    return [int(line) for line in lines if line.endswith("\n") and line.strip().isdigit()]


def assert_intact(state_dir: Path, seqs: set[int]) -> None:
    """Every seq is in the spool, passes its checks and opens to its own body."""
    spool = Spool(state_dir)
    try:
        assert spool.integrity_check() == "ok"
        stored = {b.seq: b for b in spool.waiting()}
        assert seqs <= set(stored), f"lost: {sorted(seqs - set(stored))}"
        assert spool.check_all(T0_MS) == 0  # no row fails its checksum or parse
        for seq in seqs:
            body = open_sealed(parse_sealed(stored[seq].sealed), DATASET)
            assert body == body_for(seq, BODY_BYTES)
    finally:
        spool.close()


def test_every_returned_put_survives_kill_9_at_random_moments(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    rng = random.Random(20260509)
    returned: set[int] = set()
    for _ in range(KILLS):
        proc = start_child(tmp_path, "forever")
        children.append(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        if rng.random() < 0.2:
            proc.kill()  # while it starts: importing, opening, creating tables
        else:
            lines.append(proc.stdout.readline())
            assert lines[0] == "ready\n", proc.stderr.read() if proc.stderr else ""
            for _ in range(rng.randint(0, 12)):
                lines.append(proc.stdout.readline())
            os.kill(proc.pid, signal.SIGKILL)  # mid-put, wherever it is
        proc.wait()
        lines.extend(proc.stdout.readlines())  # printed before the kill: returned too
        assert proc.returncode == -signal.SIGKILL
        returned.update(returned_seqs(lines))
        assert_intact(tmp_path, returned)
    assert len(returned) >= KILLS  # the loop did write, not only die at start


# --------------------------------------------------------------- full disk


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``directory``; yields False if not permitted."""
    directory.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def run_until_full(
    state_dir: Path, children: list[subprocess.Popen[str]], *args: str
) -> tuple[set[int], str, str, str]:
    proc = start_child(state_dir, "fill", *args)
    children.append(proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.splitlines(keepends=True)
    assert lines[0] == "ready\n", err
    error = lines[-1].split(" ", 3)
    assert error[0] == "error", out[-500:]
    return set(returned_seqs(lines)), error[1], error[2], error[3]


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """A 3 MiB tmpfs filled by the spool; without permission to mount, the
    file-size limit below stands in for it."""
    mount = tmp_path / "small"
    with small_tmpfs(mount, "3m") as mounted:
        if not mounted:
            _file_size_limit_run(mount, children)
            return
        filler = mount / "filler"
        filler.write_bytes(b"\0" * 512 * 1024)  # to free later
        returned, kind, reason, message = run_until_full(mount, children)
        assert (kind, reason) == (SpoolFullError.__name__, "disk")
        assert "disk holding the spool" in message
        assert len(returned) >= 5  # it wrote for a while first
        assert_intact(mount, returned)
        # Space comes back: the spool takes batches again.
        filler.unlink()
        spool = Spool(mount)
        try:
            assert spool.put(make_sealed(spool.last_seq() + 1), now_ms=T0_MS, hold_until_ms=T0_MS)
            assert spool.integrity_check() == "ok"
        finally:
            spool.close()


def test_a_file_size_limit_is_a_clear_error_and_corrupts_nothing(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    _file_size_limit_run(tmp_path, children)


def _file_size_limit_run(state_dir: Path, children: list[subprocess.Popen[str]]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("no tmpfs mount permitted and no RLIMIT_FSIZE on Windows")
    returned, kind, _, message = run_until_full(state_dir, children, str(2 * 2**20))
    assert kind in (SpoolFullError.__name__, SpoolError.__name__)
    assert "could not spool batch" in message
    assert len(returned) >= 5
    assert_intact(state_dir, returned)
