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
from PIL import Image

from agent.app import Agent
from agent.config import AgentConfig
from agent.events import AppIdentity, MouseButton, MouseScroll, Rect, WindowInfo
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.sinks.base import SinkError
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from overt.wire.batch import Batch
from overt.wire.body import decode_body
from overt.wire.frames import reassemble
from overt.wire.records import (
    ClickRecord,
    MarkerRecord,
    MousePathRecord,
    PathKind,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ScrollRecord,
    TextSpanRecord,
    to_ms,
)
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
WORK_COLOUR = (200, 40, 40)


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
    grabber: FakeScreenGrabber
    #: How many events the test has accounted for so far (see ``settle``).
    accounted: int = 0

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
def probe_class() -> type[FakeWindowProbe]:
    """The fake desktop's probe; a test parametrizes this to answer differently."""
    return FakeWindowProbe


@pytest.fixture
def rig(tmp_path: Path, probe_class: type[FakeWindowProbe]) -> Iterator[Rig]:
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
    probe = probe_class()
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
    grabber = FakeScreenGrabber(colors={WORKAPP.window_id: WORK_COLOUR})
    agent = Agent(config, probe=probe, hooks=hooks, grabber=grabber, sink=sink, canary=canary)
    agent.start()
    probe.focus(WORKAPP.window_id)
    yield Rig(
        agent, probe, hooks, sink, clock, tmp_path / "p.signed.json", key, doc, canaries, grabber
    )
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


def test_a_dropped_policy_reaches_capture_verified_once_and_in_memory(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.trust
    import policies.store

    verified: list[int] = []
    real = policies.store.verify_policy

    def counting(*args: Any, **kwargs: Any) -> Any:
        verified.append(1)
        return real(*args, **kwargs)

    def no_second_look(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stored policy was verified again")

    monkeypatch.setattr(policies.store, "verify_policy", counting)
    monkeypatch.setattr(agent.trust, "verify_policy", no_second_look)
    rig.drop_policy(version=2, apps=[dict(rig.doc["apps"][0], capture={"keystrokes": "timing"})])
    wait(lambda: rig.agent.status().policy_version == 2)
    assert verified == [1]
    assert rig.agent.policy is rig.agent.trust.in_force.policy


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


def test_a_received_grant_is_verified_and_an_approved_exemption_stops_capture(
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
    trust = rig.agent.trust
    assert trust.offer_grants(
        [grant(Category.SENSITIVE, rig.key), grant(Category.OTHER, admin)], rig.clock()
    )
    assert rig.agent.status().reason is Reason.CAPTURING
    assert trust.offer_grants([grant(Category.SENSITIVE, admin)], rig.clock())
    status = rig.agent.status()
    assert status.reason is Reason.EXEMPT
    assert not status.hooks_installed
    assert [g.category for g in status.grants] == [Category.SENSITIVE]
    # Stored as received, for the next start to verify again.
    assert len(LocalState(tmp_path / "state").grants()) == 1


# -- where input and pixels go (the probe's answers) --------------------------

#: Another program's window, stacked above the middle of the work app.
CHAT = WindowInfo(
    window_id=2,
    app=AppIdentity(wm_instance="chat", wm_class="chat"),
    title="Chat",
    rect=Rect(300, 300, 200, 200),
    pid=20,
)


def seen(rig: Rig) -> int:
    return rig.agent.status().events_seen


def settle(rig: Rig, events: int) -> None:
    """Wait until the pipeline thread has taken the ``events`` caused since the
    last wait. Counted from what the test accounted for, not from what has been
    handled when this is called: the pipeline may already have taken some."""
    rig.accounted += events
    target = rig.accounted
    wait(lambda: seen(rig) >= target)


def started(rig: Rig) -> None:
    """Wait for the two focus changes of the rig's start to be handled."""
    settle(rig, 2)


def records(rig: Rig) -> list[Record]:
    rig.agent.flush()
    return [r for b in rig.sink.batches for r in decode_body(b.body)[0]]


def clicks(recs: list[Record]) -> list[tuple[bool, int, int]]:
    return [(r.pressed, r.x, r.y) for r in recs if isinstance(r, ClickRecord)]


def paths(recs: list[Record]) -> list[MousePathRecord]:
    return [r for r in recs if isinstance(r, MousePathRecord)]


def spanning(recs: list[Record], since: float, until: float) -> list[Record]:
    """Pointer paths and text spans that last over some of (since, until)."""
    out: list[Record] = []
    for r in recs:
        if isinstance(r, MousePathRecord):
            start, end = r.t, r.points()[-1][0] + r.dwell_ms
        elif isinstance(r, TextSpanRecord):
            start, end = r.t, r.end
        else:
            continue
        if start < to_ms(until) and end > to_ms(since):
            out.append(r)
    return out


def test_keys_typed_while_another_client_holds_the_keyboard_are_dropped(rig: Rig) -> None:
    started(rig)
    rig.hooks.type("mine")
    settle(rig, 8)
    rig.probe.grabbed = True  # a screen locker, say: the keys are not the work app's
    rig.hooks.type("hunter2")
    settle(rig, 14)
    rig.probe.grabbed = False
    rig.hooks.type("again")
    settle(rig, 10)
    rig.agent.flush()
    assert spans(rig.sink.batches) == ["mine", "again"]


def test_a_press_on_a_window_stacked_above_the_work_app_is_not_captured(rig: Rig) -> None:
    started(rig)
    rig.probe.add(CHAT)  # above the work app; the work app keeps focus
    settle(rig, 1)
    rig.hooks.click(350, 350)  # on the chat window, inside the work app's rectangle
    rig.hooks.scroll(360, 360)
    rig.hooks.click(150, 150)  # on the work app
    settle(rig, 5)
    recs = records(rig)
    assert clicks(recs) == [(True, 50, 50), (False, 50, 50)]
    assert not any(isinstance(r, ScrollRecord) for r in recs)


class FramedProbe(FakeWindowProbe):
    """A fake desktop whose windows have window-manager frames: a 30 px title
    bar and 4 px borders around each client rectangle, as the server routes a
    press to the frame there."""

    def pointer_receiver(self, event: MouseButton | MouseScroll) -> int | None:
        for window in reversed(self._stack):
            r = window.rect
            frame = Rect(r.x - 4, r.y - 30, r.width + 8, r.height + 34)
            if frame.contains(event.x, event.y):
                return window.window_id
        return None


@pytest.mark.parametrize("probe_class", [FramedProbe])
def test_a_press_on_the_work_apps_title_bar_or_border_is_not_captured(rig: Rig) -> None:
    started(rig)
    rig.hooks.click(150, 85)  # the title bar
    rig.hooks.click(98, 300)  # the left border
    rig.hooks.scroll(150, 85)
    rig.hooks.click(150, 150)
    settle(rig, 7)
    assert clicks(records(rig)) == [(True, 50, 50), (False, 50, 50)]


def test_a_release_goes_where_its_press_went(rig: Rig) -> None:
    started(rig)
    rig.probe.add(CHAT)
    settle(rig, 1)
    # Pressed on the work app, released over the chat window: the work app's.
    rig.hooks.button(150, 150, pressed=True)
    rig.hooks.move(350, 350)
    rig.hooks.button(350, 350, pressed=False)
    # Pressed on the chat window, released over the work app: not captured.
    rig.hooks.button(360, 360, pressed=True)
    rig.hooks.move(160, 160)
    rig.hooks.button(160, 160, pressed=False)
    settle(rig, 6)
    assert clicks(records(rig)) == [(True, 50, 50), (False, 250, 250)]


def _moves_across_the_chat_window(rig: Rig) -> tuple[list[Record], float, float]:
    """Rest on the work app, cross the chat window above it slowly, come back
    below it and click: the records, and when the pointer entered and left the
    chat window."""
    started(rig)
    rig.probe.add(CHAT)
    settle(rig, 1)
    rig.hooks.move(150, 150)  # on the work app
    rig.clock.offset += 1
    entered = rig.clock()
    for x in range(320, 480, 10):  # across the chat window, resting in it a while
        rig.hooks.move(x, 400)
    rig.clock.offset += 2
    for x in range(480, 320, -10):
        rig.hooks.move(x, 420)
    left = rig.clock()
    for y in range(600, 650, 5):  # back on the work app, below the chat window
        rig.hooks.move(200, y)
    rig.hooks.click(200, 650)
    settle(rig, 1 + 16 + 16 + 10 + 2)
    return records(rig), entered, left


def test_pointer_moves_over_a_window_above_the_work_app_leave_no_sample(rig: Rig) -> None:
    recs, _, _ = _moves_across_the_chat_window(rig)
    chat_on_work = Rect(200, 200, 200, 200)  # where the chat window is, work-app relative
    samples = [(x, y) for p in paths(recs) for _, x, y in p.points()]
    assert samples
    assert not [s for s in samples if chat_on_work.contains(*s)]


def test_no_rest_on_the_work_app_lasts_while_the_pointer_is_over_a_window_above(
    rig: Rig,
) -> None:
    recs, entered, left = _moves_across_the_chat_window(rig)
    assert spanning(recs, entered + 0.05, left - 0.05) == []


def test_a_window_mapped_over_the_resting_pointer_ends_its_hover_then(rig: Rig) -> None:
    started(rig)
    rig.hooks.move(350, 350)  # at rest on the work app
    settle(rig, 1)
    rested = rig.clock()
    rig.clock.offset += 2
    covered = rig.clock()
    rig.probe.add(CHAT)  # now over the pointer
    settle(rig, 1)
    rig.clock.offset += 5
    for y in range(150, 200, 5):
        rig.hooks.move(150, y)
    settle(rig, 10)
    hovers = [p for p in paths(records(rig)) if p.kind is PathKind.HOVER and p.x == 250]
    [hover] = hovers
    assert abs(hover.t - to_ms(rested)) < 200
    assert abs(hover.t + hover.dwell_ms - to_ms(covered)) < 200


def test_a_hover_ends_when_the_window_was_mapped_even_if_handled_later(rig: Rig) -> None:
    started(rig)
    rig.hooks.move(350, 350)
    settle(rig, 1)
    rig.clock.offset += 2
    covered = rig.clock()
    with rig.agent._lock:  # the pipeline thread is busy (encoding a frame, say)
        rig.probe.add(CHAT)
        rig.clock.offset += 5
    settle(rig, 1)
    rig.hooks.move(150, 150)
    settle(rig, 1)
    [hover] = [p for p in paths(records(rig)) if p.kind is PathKind.HOVER and p.x == 250]
    assert abs(hover.t + hover.dwell_ms - to_ms(covered)) < 200


def _screens(recs_and_images: list[tuple[list[Record], dict[str, bytes]]]) -> list[Image.Image]:
    """Every screenshot as shown, reassembled within its batch."""
    shown = []
    for recs, images in recs_and_images:
        chain: list[tuple[ScreenshotRecord, bytes]] = []
        keyframe = b""
        for r in recs:
            if not isinstance(r, ScreenshotRecord):
                continue
            if r.kind is ScreenshotKind.KEYFRAME:
                keyframe, chain = images[r.image], []
            else:
                chain.append((r, images[r.image]))
            shown.append(reassemble(keyframe, chain))
    return shown


def test_a_frame_of_the_work_app_is_black_where_a_window_lies_above_it(rig: Rig) -> None:
    started(rig)

    def screens() -> list[Image.Image]:
        rig.agent.flush()
        return _screens([decode_body(b.body) for b in rig.sink.batches])

    wait(lambda: len(screens()) >= 1)  # the grab on focus, before the chat window
    before = len(screens())
    rig.probe.add(CHAT)
    settle(rig, 1)
    rig.clock.offset += 1  # past min_interval_seconds
    rig.hooks.click(150, 150)  # a press asks for a screenshot
    wait(lambda: len(screens()) > before)
    shown = screens()
    first, last = shown[0], shown[-1]
    assert first.getpixel((400, 400)) == pytest.approx(WORK_COLOUR, abs=30)
    for x, y in [(250, 250), (300, 300), (395, 395)]:  # under the chat window
        assert last.getpixel((x, y)) == pytest.approx((0, 0, 0), abs=30)
    for x, y in [(50, 50), (150, 350), (450, 450), (700, 500)]:
        assert last.getpixel((x, y)) == pytest.approx(WORK_COLOUR, abs=30)


def test_consent_withdrawn_while_the_pointer_rests_leaves_no_record_over_the_time_off(
    rig: Rig,
) -> None:
    started(rig)
    rig.hooks.move(350, 350)
    rig.hooks.type("ab")
    settle(rig, 5)
    rig.clock.offset += 2
    off = rig.clock()
    rig.agent.set_consent(accepted=False)
    rig.clock.offset += 30
    on = rig.clock()
    rig.agent.set_consent(accepted=True)
    assert rig.agent.status().hooks_installed
    rig.clock.offset += 2
    rig.hooks.type("cd")
    for x in range(350, 450, 10):
        rig.hooks.move(x, 350)
    # 2 at the start, 5 before, the focus change of the hooks' return, 14 after
    wait(lambda: seen(rig) >= 2 + 5 + 1 + 14)
    rig.clock.offset += 2
    recs = records(rig)
    assert spanning(recs, off, on) == []
    assert [r.text for r in recs if isinstance(r, TextSpanRecord)] == ["ab", "cd"]
    [hover, *_] = [p for p in paths(recs) if p.kind is PathKind.HOVER]
    assert abs(hover.t + hover.dwell_ms - to_ms(off)) < 200
