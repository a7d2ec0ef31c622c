"""The whole delivery path on a real desktop, with real processes.

- Capture in the work app (XTEST input) → seal → spool → upload → a real
  collector process → ``overt export``: the exported actions are the ones
  injected, with window-relative coordinates, and the typed text.
- ``kill -9`` of the agent at random moments while it captures and uploads,
  many times over: every batch the agent acknowledged into its spool (its
  ledger records it) reaches the collector exactly once.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desktop import AppWindow, Desktop, wait_for

from .conftest import WORKAPP_GEOMETRY
from .stack import OVERT, Stack, duplicates, ledger_seqs, make_stack, overt

pytestmark = pytest.mark.desktop


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(tmp_path)
    stack.start_collector()
    yield stack
    stack.stop()


def start_agent(stack: Stack, state: Path, sock: Path) -> subprocess.Popen[bytes]:
    log = (state.parent / "agent.log").open("ab")
    return subprocess.Popen(
        [*OVERT, "agent", "run", "--trust", str(stack.keys / "it.pub"), "--state", str(state),
         "--socket", str(sock), "--batch-seconds", "1"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def control(sock: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [*OVERT, *args, "--json", "--socket", str(sock)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return {}
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_injected_actions_come_out_of_the_export(
    desktop: Desktop, workapp: AppWindow, stack: Stack, tmp_path: Path
) -> None:
    state, sock = tmp_path / "agent", tmp_path / "agent.sock"
    stack.enroll(state)
    agent = start_agent(stack, state, sock)
    try:
        wait_for(lambda: control(sock, "status"), 30, what="the agent's control socket")
        overt("consent", "--accept", "--socket", sock)
        wait_for(lambda: control(sock, "status").get("capturing"), 20, what="capture")
        wx, wy, _, _ = WORKAPP_GEOMETRY
        desktop.xdotool("windowactivate", "--sync", workapp.window_id)
        time.sleep(0.5)
        desktop.xdotool("mousemove", wx + 400, wy + 250, "click", 1)
        desktop.xdotool("type", "--delay", "30", "ship the report")
        time.sleep(1.0)  # a typing pause ends the span
        desktop.xdotool("mousemove", wx + 120, wy + 330, "click", 1)
        time.sleep(2.0)

        def all_uploaded() -> bool:
            rows = ledger_seqs(state).values()
            return bool(rows) and all(st == "uploaded" for _, st in rows)

        time.sleep(1.5)  # past the batch age
        wait_for(all_uploaded, 30, what="the batches to be uploaded")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    assert agent.returncode == 0
    out = tmp_path / "dataset"
    summary = overt("export", "--data", stack.data, "--key", stack.keys / "dataset.key",
                    "--out", out)  # fmt: skip
    assert "rejected batches 0" in summary
    actions = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    clicks = [(a["x"], a["y"]) for a in actions if a["action"] == "click"]
    assert clicks == [(400, 250), (120, 330)]
    texts = [a["text"] for a in actions if a["action"] == "text"]
    assert texts == ["ship the report"]
    assert {a["app_id"] for a in actions} == {"overt-workapp"}
    for action in actions:
        assert (out / action["file_name"]).exists()


def test_kill_9_at_random_moments_loses_and_duplicates_no_spooled_batch(
    desktop: Desktop, workapp: AppWindow, stack: Stack, tmp_path: Path
) -> None:
    state, sock = tmp_path / "agent", tmp_path / "agent.sock"
    stack.enroll(state)
    rng = random.Random(20261122)
    typing = threading.Event()

    def typist() -> None:
        while not typing.is_set():
            desktop.xdotool("type", "--delay", "15", "lorem ipsum ")
            time.sleep(0.1)

    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    wx, wy, _, _ = WORKAPP_GEOMETRY
    desktop.xdotool("mousemove", wx + 400, wy + 250, "click", 1)
    thread = threading.Thread(target=typist, daemon=True)
    thread.start()
    kills = 0
    try:
        for round_ in range(8):
            agent = start_agent(stack, state, sock)
            try:
                wait_for(lambda: control(sock, "status"), 30, what="the agent's control socket")
                if round_ == 0:
                    overt("consent", "--accept", "--socket", sock)
                time.sleep(rng.uniform(1.5, 4.0))
            finally:
                agent.send_signal(signal.SIGKILL)
                agent.wait(10)
                kills += 1
            sock.unlink(missing_ok=True)
        typing.set()
        thread.join(10)
        agent = start_agent(stack, state, sock)
        try:

            def drained() -> bool:
                rows = ledger_seqs(state).values()
                return all(st == "uploaded" for _, st in rows)

            wait_for(lambda: control(sock, "status"), 30, what="the last agent")
            time.sleep(2.0)  # past the batch age: what was typed is in the spool now
            wait_for(drained, 60, what="every spooled batch to be uploaded")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
    finally:
        typing.set()
    ledger = ledger_seqs(state)
    stored = stack.stored()
    assert kills == 8
    assert len(ledger) >= 8, "too few batches to prove anything"
    assert duplicates(stored) == []
    assert {(seq, bid) for _, seq, bid in stored} == {(s, b) for s, (b, _) in ledger.items()}
    assert {st for _, st in ledger.values()} == {"uploaded"}
    with sqlite3.connect(state / "spool" / "v1" / "spool.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
