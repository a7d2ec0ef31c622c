"""The running tray keeps its references to None, True and False.

A PySide6 that returns None or True without taking a reference (see
:mod:`ui.qt_binding`) makes these counts fall with every status poll, and
on Python 3.11 the tray dies when one reaches zero: after 20 minutes or so,
or when it quits. Here the real tray process (``tests/ui/tray_refcounts``,
which runs ``ui.app.main`` and samples its counts) runs offscreen over a
fake agent behind a real control socket, with its start-up check of the
binding left out, so that what is measured is the running tray itself: the
200 ms heartbeat and the status poll, at 0.2 s instead of 2 s, for twelve
seconds, while the agent is paused, resumed and moved to an app outside
the allow-list (so that labels, icon and tooltip change as well).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.control import ControlServer
from tests.ui.fake_agent import FakeAgent, sample_batches
from tests.ui.tray_refcounts import COUNTED, read_samples, trend

REPO_ROOT = Path(__file__).resolve().parents[2]
SECONDS = 12.0
#: The first seconds: imports, the first window, caches filling up.
WARM_UP_S = 3.0


@pytest.fixture
def agent_socket() -> Iterator[tuple[FakeAgent, Path]]:
    # A short directory: a Unix socket path holds about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ovt-", dir="/tmp"))

    def clock() -> int:
        return int(time.time() * 1000)

    agent = FakeAgent(clock=clock, batches=sample_batches(clock()))
    server = ControlServer(agent, directory / "agent.sock")
    server.start()
    try:
        yield agent, directory / "agent.sock"
    finally:
        server.stop()
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def change_state_now_and_then(agent: FakeAgent, stop: threading.Event) -> None:
    def switch_to(app: tuple[str, bool]) -> None:
        with agent.lock:
            agent.current_app = app

    steps: list[Callable[[], object]] = [
        lambda: agent.pause(30),
        agent.resume,
        lambda: switch_to(("Firefox", False)),
        lambda: switch_to(("LibreOffice Writer", True)),
    ]
    for step in steps * 3:
        if stop.wait(1.0):
            return
        step()


def test_the_running_tray_does_not_lose_references_to_none_true_or_false(
    tmp_path: Path, agent_socket: tuple[FakeAgent, Path]
) -> None:
    agent, socket = agent_socket
    samples_path = tmp_path / "refcounts.jsonl"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO_ROOT)}
    stop = threading.Event()
    changer = threading.Thread(target=change_state_now_and_then, args=(agent, stop))
    changer.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.ui.tray_refcounts", "--out", str(samples_path),
             "--seconds", str(SECONDS), "--every", "0.25", "--without-binding-check",
             "--", "--socket", str(socket), "--no-agent", "--poll", "0.2"],
            env=env, capture_output=True, text=True, timeout=SECONDS + 60, check=False,
        )  # fmt: skip
    finally:
        stop.set()
        changer.join()
    samples = read_samples(samples_path)
    assert result.returncode == 0, f"the tray exited with {result.returncode}:\n{result.stderr}"
    assert samples[-1]["phase"] == "stopped"
    trends = {name: trend(samples, name, after_s=WARM_UP_S) for name in COUNTED}
    # A faulty binding loses about 100 references to None and 10 to True a
    # second at this poll; a sound one none at all (only the moment's locals
    # move the count, by a few).
    falling = {n: f"{t.first} -> {t.last} ({t.per_second:+.1f}/s)" for n, t in trends.items()
               if t.per_second < -0.5}  # fmt: skip
    assert not falling, f"references lost while the tray ran: {falling}"
    assert ("pause", (30,)) in agent.calls
