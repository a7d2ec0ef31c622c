"""A full disk under the running agent: capture stops and says why, nothing
is dropped, a gap marker follows, and sequence numbers stay honest.

The agent is the real ``AgentService`` (sealing, spool, ledger, local state)
on the fake desktop, with its state directory on a small tmpfs that the test
fills while the agent captures, then frees. Mounting needs root; without it
those tests are skipped. The rest provoke what a full disk leaves behind (a
batch refused to the end, a number recorded that no batch carries) directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.service import AgentService
from agent.sinks.base import SpoolFullError
from agent.sinks.ledger import LedgerState
from agent.sinks.spool import Spool
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from agent.sources.power import FakeConditions
from overt.wire.body import decode_body
from overt.wire.records import MarkerRecord, TextSpanRecord
from overt.wire.sealed import dataset_public_b64, open_sealed, parse_sealed
from policies.keys import generate_private_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload, sign_policy

from ._disk import fill, small_tmpfs
from .sinks._build import DATASET, T0_MS, make_sealed

ROOT = Path(__file__).resolve().parents[2]
WORKAPP = WindowInfo(
    window_id=1,
    app=AppIdentity(wm_instance="overt-workapp", wm_class="overt-workapp"),
    title="Work",
    rect=Rect(100, 100, 800, 600),
    pid=10,
)


@dataclass
class Clock:
    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def wait(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def type_and_flush(agent: Any, hooks: FakeInputHooks, text: str) -> None:
    """Type ``text`` and close a batch once the agent has handled every key
    (a flush while the pipeline thread holds a key would split the text)."""
    settle(agent)
    seen = agent.status().events_seen
    hooks.type(text)
    if hooks.installed:
        wait(lambda: agent.status().events_seen >= seen + 2 * len(text), what=f"{text!r}")
    agent.flush()


def settle(agent: Any) -> None:
    """Wait until the agent's count of events seen stops moving."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 0.2:
        seen = agent.status().events_seen
        if seen != last:
            last, stable_since = seen, time.monotonic()
        time.sleep(0.02)


@dataclass
class Rig:
    """What a test needs to drive one agent and look at what it stored."""

    state: Path
    policy_file: Path
    trusted: SignerSet
    socket: Path
    clock: Clock

    def service(self, hooks: FakeInputHooks) -> AgentService:
        probe = FakeWindowProbe()
        probe.add(WORKAPP, focus=True)

        def canary() -> Canary:
            opened = FakeCanary(Rect(1500, 50, 160, 90))
            probe.add(
                WindowInfo(
                    opened.window_id,
                    AppIdentity(wm_instance=CANARY_CLASS, wm_class=CANARY_CLASS),
                    "Overt filter self-test",
                    Rect(1500, 50, 160, 90),
                )
            )
            return opened

        config = AgentConfig(
            trusted=self.trusted,
            tenant="example-corp",
            device_group="office",
            state_dir=self.state,
            policy_file=self.policy_file,
            clock=self.clock,
        )
        return AgentService(
            config,
            probe=probe,
            hooks=hooks,
            grabber=FakeScreenGrabber(),
            conditions=FakeConditions(),
            socket_path=self.socket,
            canary=canary,
        )

    def stored(self) -> list[tuple[int, list[Any]]]:
        """(seq, records) of every batch waiting in the spool, opened with the dataset key."""
        spool = Spool(self.state)
        try:
            assert spool.integrity_check() == "ok"
            return [
                (b.seq, decode_body(open_sealed(parse_sealed(b.sealed), DATASET))[0])
                for b in spool.waiting()
            ]
        finally:
            spool.close()

    def ledger(self) -> dict[int, LedgerState]:
        spool = Spool(self.state)
        try:
            return {e.seq: e.state for e in spool.ledger.recent(30, int(self.clock() * 1000))}
        finally:
            spool.close()


def make_rig(tmp_path: Path, state: Path) -> Rig:
    key = generate_private_key()
    doc = json.loads((ROOT / "policies/examples/test-workapp.json").read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=1)).isoformat()
    doc["dataset_key"] = {"key_id": "test-dataset", "public_key": dataset_public_b64(DATASET)}
    payload = json.dumps(doc).encode()
    policy_file = tmp_path / "p.signed.json"
    policy_file.write_bytes(sign_policy(payload, [key]))
    clock = Clock()
    LocalState(state).save_consent(ConsentRecord.accept(parse_policy_payload(payload), clock()))
    trusted = SignerSet(keys=(public_key_model(key.public_key()),), threshold=1)
    return Rig(state, policy_file, trusted, tmp_path / "run" / "agent.sock", clock)


def texts(stored: list[tuple[int, list[Any]]]) -> list[str]:
    return [r.text for _, records in stored for r in records if isinstance(r, TextSpanRecord)]


def gaps(stored: list[tuple[int, list[Any]]]) -> list[str]:
    return [
        r.detail
        for _, records in stored
        for r in records
        if isinstance(r, MarkerRecord) and r.kind.value == "gap"
    ]


def overt_status(sock: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "overt", "status", "--socket", str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------ a real full disk


@pytest.mark.parametrize("room", ["none", "sequence only"])
def test_a_full_disk_stops_capture_with_its_reason_and_a_gap_marker_follows(
    tmp_path: Path, room: str
) -> None:
    """``none``: not even ``sequence.json`` can be rewritten; ``sequence
    only``: it can, the spool cannot take the batch."""
    state = tmp_path / "state"
    with small_tmpfs(state, "4m"):
        rig = make_rig(tmp_path, state)
        hooks = FakeInputHooks(rig.clock)
        service = rig.service(hooks)
        service.start()
        try:
            agent = service.agent
            wait(lambda: agent.status().hooks_installed, what="capture")
            type_and_flush(agent, hooks, "before")
            assert agent.status().batches_written >= 1

            filler = fill(state / "filler", leave=8 << 10 if room == "sequence only" else 0)
            type_and_flush(agent, hooks, "during")  # its batch cannot be stored

            status = agent.status()
            assert status.reason is Reason.SPOOL_FULL
            assert not status.capturing
            assert not status.hooks_installed
            assert status.problem is not None
            assert "the disk is full" in status.problem
            assert status.batches_held >= 1
            held = max(seq for seq, _ in rig.stored()) + 1
            # The held batch's number is recorded as used just before the
            # spool is asked, if the disk allows even that.
            expected_next = held + 1 if room == "sequence only" else held
            assert LocalState(state).next_sequence() == expected_next
            shown = overt_status(rig.socket)
            assert "the disk is full" in shown, shown

            hooks.type("lost")  # no hook is installed: not captured
            assert agent.status().events_seen == status.events_seen

            for path in filler:
                path.unlink()
            rig.clock.offset += 6  # past the retry delay
            wait(lambda: agent.status().hooks_installed, what="capture to resume")
            status = agent.status()
            assert status.reason is Reason.CAPTURING
            assert status.problem is None
            assert status.batches_held == 0
            type_and_flush(agent, hooks, "after")
            assert (agent.status().events_lost, agent.status().batches_lost) == (0, 0)
        finally:
            service.stop()

        stored = rig.stored()
        assert texts(stored) == ["before", "during", "after"]
        assert gaps(stored) == ["spool_full"]
        # The gap marker comes after the batches held through the failure.
        marker_seq = next(
            seq for seq, records in stored if any(isinstance(r, MarkerRecord) for r in records)
        )
        during_seq = next(
            seq
            for seq, records in stored
            if any(isinstance(r, TextSpanRecord) and r.text == "during" for r in records)
        )
        assert marker_seq > during_seq
        seqs = [seq for seq, _ in stored]
        assert seqs == list(range(1, len(seqs) + 1))  # no number skipped, none reused
        assert set(rig.ledger()) == set(seqs)
        assert LocalState(state).next_sequence() == seqs[-1] + 1


def test_consent_given_on_a_full_disk_is_refused_in_words_and_changes_nothing(
    tmp_path: Path,
) -> None:
    from agent.control import ControlClient, ControlError

    state = tmp_path / "state"
    with small_tmpfs(state, "4m"):
        rig = make_rig(tmp_path, state)
        before = LocalState(state).consent()
        service = rig.service(FakeInputHooks(rig.clock))
        service.start()
        try:
            fill(state / "filler")
            client = ControlClient(rig.socket)
            policy = client.status().policy
            assert policy is not None
            version = policy.version
            with pytest.raises(ControlError) as refused:
                client.consent_decline(version)
            assert refused.value.code == "unavailable"
            assert "could not be recorded" in refused.value.message
            assert "No space left on device" in refused.value.message
            assert service.agent.status().reason is Reason.CAPTURING
        finally:
            service.stop()
        assert LocalState(state).consent() == before


# ---------------------------------------------------- what a full disk leaves


class RefusingSpool:
    """Makes the service's spool refuse every put, as a full disk does."""

    def __init__(self, service: AgentService) -> None:
        self.refusing = True
        real = service.spool.put

        def put(sealed: bytes, *, now_ms: int, hold_until_ms: int) -> bool:
            if self.refusing:
                raise SpoolFullError("the disk holding the spool is full", reason="disk")
            return real(sealed, now_ms=now_ms, hold_until_ms=hold_until_ms)

        service.spool.put = put  # type: ignore[method-assign]


def test_batches_refused_until_exit_are_marked_lost_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    rig = make_rig(tmp_path, state)
    hooks = FakeInputHooks(rig.clock)
    service = rig.service(hooks)
    service.start()
    try:
        agent = service.agent
        wait(lambda: agent.status().hooks_installed, what="capture")
        type_and_flush(agent, hooks, "kept")
        RefusingSpool(service)
        type_and_flush(agent, hooks, "doomed")
        assert agent.status().reason is Reason.SPOOL_FULL
        held = agent.status().batches_held
        assert held >= 1
    finally:
        service.stop()  # the held batches die with the process
    assert [seq for seq, _ in rig.stored()] == [1]
    assert LocalState(state).next_sequence() == 1 + held + 1  # their numbers stay used

    hooks = FakeInputHooks(rig.clock)
    service = rig.service(hooks)
    service.start()
    try:
        agent = service.agent
        wait(lambda: agent.status().hooks_installed, what="capture")
        assert agent.status().batches_lost == held
        type_and_flush(agent, hooks, "next")
    finally:
        service.stop()
    stored = rig.stored()
    assert texts(stored) == ["kept", "next"]
    assert gaps(stored) == ["batches_lost"]
    # The numbers of the lost batches are skipped, never reused.
    assert [seq for seq, _ in stored] == [1, 2 + held]


def test_a_clean_restart_reports_no_lost_batch(tmp_path: Path) -> None:
    state = tmp_path / "state"
    rig = make_rig(tmp_path, state)
    for word in ("one", "two"):
        hooks = FakeInputHooks(rig.clock)
        service = rig.service(hooks)
        service.start()
        try:
            agent = service.agent
            wait(lambda: agent.status().hooks_installed, what="capture")  # noqa: B023
            assert agent.status().batches_lost == 0
            type_and_flush(agent, hooks, word)
        finally:
            service.stop()
    stored = rig.stored()
    assert texts(stored) == ["one", "two"]
    assert gaps(stored) == []


def test_the_spool_keeps_its_highest_sequence_number_past_retention(tmp_path: Path) -> None:
    """Else a long quiet spell (an exemption, say) would make the next start
    take every recorded number for a lost batch."""
    spool = Spool(tmp_path)
    try:
        for seq in (1, 2, 3):
            spool.put(make_sealed(seq), now_ms=T0_MS, hold_until_ms=T0_MS)
            batch = spool.next_ready(T0_MS)
            assert batch is not None
            spool.ack(batch, now_ms=T0_MS, destination="https://c")
        later = T0_MS + 40 * 86_400_000
        assert spool.maintain(later) == 2
        assert spool.last_seq() == 3
        assert [e.seq for e in spool.ledger.recent(30, later)] == []
        assert [e.seq for e in spool.ledger.recent(60, later)] == [3]
    finally:
        spool.close()
