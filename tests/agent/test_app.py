"""The agent's wiring on the fake desktop: no display needed.

Real-desktop behaviour is proven in tests/e2e/test_capture.py; these tests
cover what is hard to provoke there, such as a sink that refuses batches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.app import Agent
from agent.config import AgentConfig
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import LocalState
from agent.pipeline.batch import Batch, decode_body
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.pipeline.records import MarkerRecord, TextSpanRecord
from agent.sinks.base import SinkError
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from policies.keys import generate_private_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload, sign_policy

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


class FlakySink:
    """Refuses batches while ``broken`` is set, like a full disk."""

    def __init__(self) -> None:
        self.broken = False
        self.batches: list[Batch] = []

    def write(self, batch: Batch) -> None:
        if self.broken:
            raise SinkError("No space left on device")
        self.batches.append(batch)


@dataclass
class Rig:
    agent: Agent
    probe: FakeWindowProbe
    hooks: FakeInputHooks
    sink: FlakySink
    clock: Clock
    policy_file: Path
    key: Ed25519PrivateKey
    doc: dict[str, Any]
    canaries: list[FakeCanary]

    def drop_policy(self, *, tamper: bool = False, **changes: Any) -> None:
        """Replace the policy file, as device management would (or an attacker)."""
        signed = sign_policy(json.dumps({**self.doc, **changes}).encode(), [self.key])
        if tamper:
            signed = signed.replace(b'"payload":"e', b'"payload":"f')
        # Replaced whole, as device management does: a half-written file is
        # another case (a malformed file, re-read once it changes again).
        staging = self.policy_file.with_suffix(".tmp")
        staging.write_bytes(signed)
        staging.replace(self.policy_file)
        self.clock.offset += 6  # the agent looks at the file every few seconds


def wait(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    key = generate_private_key()
    doc = json.loads((ROOT / "policies/examples/test-workapp.json").read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=1)).isoformat()
    payload = json.dumps(doc).encode()
    (tmp_path / "p.signed.json").write_bytes(sign_policy(payload, [key]))
    clock = Clock()
    LocalState(tmp_path / "state").save_consent(
        ConsentRecord.accept(parse_policy_payload(payload), clock())
    )
    probe = FakeWindowProbe()
    probe.add(WORKAPP, focus=True)

    canaries: list[FakeCanary] = []

    def canary() -> Canary:
        opened = FakeCanary(Rect(1500, 50, 160, 90))
        canaries.append(opened)
        probe.add(
            WindowInfo(
                opened.window_id,
                AppIdentity(wm_instance=CANARY_CLASS, wm_class=CANARY_CLASS),
                "Overt filter self-test",
                Rect(1500, 50, 160, 90),
            )
        )
        return opened

    hooks = FakeInputHooks(clock)
    sink = FlakySink()
    config = AgentConfig(
        trusted=SignerSet(keys=(public_key_model(key.public_key()),), threshold=1),
        tenant="example-corp",
        device_group="office",
        state_dir=tmp_path / "state",
        policy_file=tmp_path / "p.signed.json",
        clock=clock,
    )
    agent = Agent(
        config, probe=probe, hooks=hooks, grabber=FakeScreenGrabber(), sink=sink, canary=canary
    )
    agent.start()
    probe.focus(WORKAPP.window_id)
    yield Rig(agent, probe, hooks, sink, clock, tmp_path / "p.signed.json", key, doc, canaries)
    agent.stop()


def spans(batches: list[Batch]) -> list[str]:
    return [
        r.text for b in batches for r in decode_body(b.body)[0] if isinstance(r, TextSpanRecord)
    ]


def test_a_refusing_sink_stops_capture_visibly_and_loses_no_batch(rig: Rig) -> None:
    assert rig.agent.status().reason is Reason.CAPTURING
    rig.sink.broken = True
    rig.hooks.type("first")
    wait(lambda: rig.agent.status().events_seen >= 10)
    rig.agent.flush()

    status = rig.agent.status()
    assert status.reason is Reason.SPOOL_FULL
    assert status.problem is not None
    assert "No space left on device" in status.problem
    assert not status.hooks_installed
    assert status.batches_held == 1

    rig.sink.broken = False
    rig.clock.offset += 6  # past the retry delay
    wait(lambda: rig.agent.status().hooks_installed)
    assert rig.agent.status().reason is Reason.CAPTURING
    assert rig.agent.status().batches_held == 0
    assert spans(rig.sink.batches) == ["first"]
    # The sequence numbers stay in order across the failure.
    rig.probe.focus(WORKAPP.window_id)
    rig.hooks.type("second")
    wait(lambda: rig.agent.status().events_seen >= 22)
    rig.agent.flush()
    assert spans(rig.sink.batches) == ["first", "second"]
    gaps = [
        r.detail
        for b in rig.sink.batches
        for r in decode_body(b.body)[0]
        if isinstance(r, MarkerRecord) and r.kind.value == "gap"
    ]
    assert gaps == ["spool_full"]  # the dataset shows the stretch that was not captured
    seqs = [b.header.seq for b in rig.sink.batches]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_the_next_sequence_number_is_persisted_with_each_batch(rig: Rig, tmp_path: Path) -> None:
    rig.hooks.type("one")
    wait(lambda: rig.agent.status().events_seen >= 6)
    rig.agent.flush()
    first = rig.sink.batches[-1].header.seq
    assert LocalState(tmp_path / "state").next_sequence() == first + 1


def test_a_wider_policy_dropped_in_place_stops_capture_until_consent_is_renewed(
    rig: Rig,
) -> None:
    chat = {
        "id": "chat",
        "name": "Chat",
        "match": {"wm_classes": ["chat"]},
        "capture": {"actions_only": True},
    }
    rig.drop_policy(version=2, apps=[*rig.doc["apps"], chat])
    wait(lambda: rig.agent.status().policy_version == 2)
    status = rig.agent.status()
    assert status.reason is Reason.CONSENT_OUTDATED
    assert not status.hooks_installed
    assert len(rig.canaries) == 2  # the new policy was self-tested too


def test_a_narrower_policy_is_self_tested_and_capture_goes_on(rig: Rig) -> None:
    apps = [dict(rig.doc["apps"][0], capture={"keystrokes": "timing"})]
    rig.drop_policy(version=2, apps=apps)
    wait(lambda: rig.agent.status().policy_version == 2)
    wait(lambda: rig.agent.status().hooks_installed)
    assert rig.agent.status().reason is Reason.CAPTURING
    assert len(rig.canaries) == 2
    rig.probe.focus(WORKAPP.window_id)
    rig.hooks.type("quiet")
    wait(lambda: rig.agent.status().events_seen >= 11)
    rig.agent.flush()
    assert spans(rig.sink.batches) == []  # timing only now
    typed = [b for b in rig.sink.batches if b.header.counts.key_timings]
    assert typed
    assert {b.header.policy_version for b in typed} == {2}


def test_a_tampered_policy_dropped_in_place_is_refused_and_the_last_good_stays(
    rig: Rig,
) -> None:
    rig.drop_policy(version=2, tamper=True)
    wait(lambda: rig.agent.status().problem is not None)
    status = rig.agent.status()
    assert status.problem is not None
    assert "bad signature" in status.problem
    assert status.policy_version == 1
    assert status.reason is Reason.CAPTURING


def test_consent_declined_at_runtime_removes_the_hooks_and_accepting_brings_them_back(
    rig: Rig, tmp_path: Path
) -> None:
    rig.agent.set_consent(accepted=False)
    status = rig.agent.status()
    assert status.reason is Reason.CONSENT_DECLINED
    assert status.consent_needed
    assert not status.hooks_installed
    stored = LocalState(tmp_path / "state").consent()
    assert stored is not None
    assert not stored.accepted
    rig.agent.set_consent(accepted=True)
    assert rig.agent.status().reason is Reason.CAPTURING
    assert rig.agent.status().hooks_installed


def test_discard_drops_what_is_buffered_and_capture_goes_on(rig: Rig) -> None:
    rig.hooks.type("secret plan")
    wait(lambda: rig.agent.status().events_seen >= 22)
    result = rig.agent.discard(5)
    assert result.records_dropped >= 1
    assert result.until_ms - result.since_ms == 5 * 60 * 1000
    rig.hooks.type("kept")
    wait(lambda: rig.agent.status().events_seen >= 31)
    rig.agent.flush()
    assert spans(rig.sink.batches) == ["kept"]
    markers = [
        r.kind.value
        for b in rig.sink.batches
        for r in decode_body(b.body)[0]
        if isinstance(r, MarkerRecord)
    ]
    assert "discard" in markers


def test_discard_also_drops_batches_the_sink_has_not_taken(rig: Rig) -> None:
    rig.sink.broken = True
    rig.hooks.type("held back")
    wait(lambda: rig.agent.status().events_seen >= 20)
    rig.agent.flush()
    assert rig.agent.status().batches_held == 1
    assert rig.agent.discard(1).batches_dropped == 1
    assert rig.agent.status().batches_held == 0


def test_status_names_the_focused_app_and_whether_it_is_allowed(rig: Rig) -> None:
    status = rig.agent.status()
    assert status.current_app == "overt-workapp"
    assert status.current_app_allowed


def test_a_stored_grant_is_verified_and_an_approved_exemption_stops_capture(
    rig: Rig, tmp_path: Path
) -> None:
    from policies.model import Category, Grant
    from policies.verify import sign_grant

    admin = generate_private_key()
    signer = {**public_key_model(admin.public_key()).model_dump(), "categories": ["sensitive"]}
    # Narrower than version 1 (timing only), so consent stays valid.
    apps = [dict(rig.doc["apps"][0], capture={"keystrokes": "timing"})]
    rig.drop_policy(version=2, apps=apps, grant_signers=[signer])
    wait(lambda: rig.agent.status().policy_version == 2)
    now = datetime.now(UTC)
    local = LocalState(tmp_path / "state")

    def grant(category: Category, key: Ed25519PrivateKey) -> bytes:
        return sign_grant(
            Grant(
                grant_id=f"g-{category.value}",
                request_id="r1",
                tenant=rig.doc["scope"]["tenant"],
                device_id=rig.agent.device_id,
                category=category,
                issued_at=now - timedelta(minutes=1),
                expires=now + timedelta(days=1),
            ),
            key,
        )

    # A grant by a key the policy does not list, and one for a category the
    # listed key may not grant: neither applies.
    local.save_grants([grant(Category.SENSITIVE, rig.key), grant(Category.OTHER, admin)])
    rig.agent.reload_grants()
    assert rig.agent.status().reason is Reason.CAPTURING
    local.save_grants([grant(Category.SENSITIVE, admin)])
    rig.agent.reload_grants()
    status = rig.agent.status()
    assert status.reason is Reason.EXEMPT
    assert not status.hooks_installed
    assert [g.category for g in status.grants] == [Category.SENSITIVE]
