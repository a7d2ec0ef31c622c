"""A full disk under the real agent on a real desktop, delivering to a real
collector: capture stops and ``overt status`` says why, nothing acknowledged
into the spool is lost, a gap marker follows when space returns, and every
batch the ledger lists reaches the collector exactly once.

The agent's state directory is a small tmpfs (mounting needs root: without
it the test is skipped) that the test fills while the agent captures what
xdotool types into the work app, and frees again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from collector.config import StorageConfig
from collector.store.sqlite import SQLiteStorage
from overt.wire.body import decode_body
from overt.wire.records import MarkerRecord, TextSpanRecord
from overt.wire.sealed import open_sealed, parse_sealed
from policies.keys import load_dataset_private_key
from tests.agent._disk import fill, small_tmpfs
from tests.desktop import AppWindow, Desktop, wait_for

from .conftest import WORKAPP_GEOMETRY
from .stack import Stack, duplicates, ledger_seqs, make_stack, overt
from .test_delivery import control, start_agent

pytestmark = pytest.mark.desktop


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    stack = make_stack(tmp_path)
    stack.start_collector()
    yield stack
    stack.stop()


def collected(stack: Stack) -> list[tuple[int, list[Any]]]:
    """(seq, records) of every batch the collector stored, opened with the dataset key."""
    key = load_dataset_private_key(stack.keys / "dataset.key")
    storage = SQLiteStorage(StorageConfig(data_dir=stack.data, exclusive=False))
    try:
        return [
            (b.seq, decode_body(open_sealed(parse_sealed(b.sealed), key))[0])
            for b in storage.iter_batches()
        ]
    finally:
        storage.close()


def typed(desktop: Desktop, text: str) -> None:
    desktop.xdotool("type", "--delay", "30", text)
    time.sleep(1.5)  # a typing pause ends the span; the batch closes after a second


def quiet(sock: Path) -> None:
    """Wait until the agent has written every batch of what was done so far."""

    def written() -> int:
        counts = control(sock, "status").get("counts")
        return int(counts["batches_written"]) if isinstance(counts, dict) else -1

    last, since = written(), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < 2.5:
        assert time.monotonic() < deadline, "the agent kept writing batches"
        time.sleep(0.2)
        now = written()
        if now != last:
            last, since = now, time.monotonic()


def test_a_full_disk_stops_capture_visibly_and_delivery_loses_and_doubles_nothing(
    desktop: Desktop, workapp: AppWindow, stack: Stack, tmp_path: Path
) -> None:
    state, sock = tmp_path / "agent", tmp_path / "agent.sock"
    with small_tmpfs(state, "8m"):
        stack.enroll(state)
        agent = start_agent(stack, state, sock)
        try:
            wait_for(lambda: control(sock, "status"), 30, what="the agent's control socket")
            overt("consent", "--accept", "--socket", sock)
            wait_for(lambda: control(sock, "status").get("capturing"), 20, what="capture")
            wx, wy, _, _ = WORKAPP_GEOMETRY
            desktop.xdotool("windowactivate", "--sync", workapp.window_id)
            desktop.xdotool("mousemove", wx + 400, wy + 250, "click", 1)
            typed(desktop, "before the disk filled ")
            quiet(sock)

            filler = fill(tmp_path / "agent" / "filler")
            typed(desktop, "while it filled ")  # its batch cannot be stored

            def stopped() -> dict[str, Any]:
                status = control(sock, "status")
                return status if status.get("reason") == "spool_full" else {}

            status = wait_for(stopped, 20, what="capture to stop")
            assert status["capturing"] is False
            assert "the disk is full" in str(status["problem"])
            assert status["counts"]["batches_held"] >= 1
            shown = overt("status", "--socket", sock)
            assert "the disk is full" in shown
            typed(desktop, "never captured ")  # no hook is installed

            for path in filler:
                path.unlink()
            wait_for(lambda: control(sock, "status").get("capturing"), 30, what="capture again")
            desktop.xdotool("mousemove", wx + 420, wy + 260, "click", 1)
            typed(desktop, "after the space came back ")

            quiet(sock)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        assert agent.returncode == 0

        ledger = ledger_seqs(state)

    # What the agent spooled as it stopped went in its last upload attempt,
    # whatever its backoff after the acknowledgements the full disk refused.
    assert {st for _, st in ledger.values()} == {"uploaded"}

    stored = stack.stored()
    assert duplicates(stored) == []
    assert {(seq, bid) for _, seq, bid in stored} == {(s, b) for s, (b, _) in ledger.items()}
    assert sorted(ledger) == list(range(1, len(ledger) + 1))  # no number skipped or reused
    batches = collected(stack)
    text = "".join(
        r.text for _, records in batches for r in records if isinstance(r, TextSpanRecord)
    )
    assert "before the disk filled" in text
    assert "while it filled" in text  # held in memory, stored once space came back
    assert "after the space came back" in text
    assert "never captured" not in text
    gaps = [
        (seq, r.detail)
        for seq, records in batches
        for r in records
        if isinstance(r, MarkerRecord) and r.kind.value == "gap"
    ]
    assert [detail for _, detail in gaps] == ["spool_full"]
    held_seq = next(
        seq
        for seq, records in batches
        if any(isinstance(r, TextSpanRecord) and "while it filled" in r.text for r in records)
    )
    assert gaps[0][0] > held_seq
