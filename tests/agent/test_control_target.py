"""The adapter from the agent to the control API, and the notice it shows.

Most tests drive :class:`AgentControlTarget` with a fake agent and a real,
signed policy in a real trust store; the last ones run the real
:class:`~agent.app.Agent` on the fake desktop behind a real control socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.app import Agent, AgentStatus
from agent.config import AgentConfig
from agent.control import ControlClient, ControlError, ControlServer
from agent.control_target import (
    AgentControlTarget,
    ControlParts,
)
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import LocalState
from agent.notice import consent_needed, consent_notice
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.pipeline.pause import PauseState
from agent.policy_source import load_policy
from agent.sinks.memory import MemorySink
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from overt.wire.control_results import (
    REASON_TEXT,
    ConsentOnRecord,
    CurrentApp,
    ExemptionInForce,
    ExemptionRequestSent,
    PolicySummary,
    RequestedExemptions,
)
from policies.keys import generate_private_key, public_key_model
from policies.model import Category, Grant, Policy, SignerSet
from policies.store import accept_policy_bytes
from policies.verify import DeviceScope, parse_policy_payload, sign_policy

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DEVICE = DeviceScope(tenant="example-corp", group="office")


def policy_doc(name: str = "test-workapp.json", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "policies/examples" / name).read_text("utf-8"))
    doc["issued_at"] = (NOW - timedelta(days=1)).isoformat()
    doc["expires"] = (NOW + timedelta(days=30)).isoformat()
    doc.update(changes)
    return doc


@dataclass
class Clock:
    now: float = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeAgent:
    """Stands in for agent.app.Agent: a status to report, calls recorded."""

    status_value: AgentStatus
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def status(self) -> AgentStatus:
        return self.status_value

    def pause(self, minutes: float | None = None) -> PauseState:
        self.calls.append(("pause", minutes))
        return PauseState()

    def resume(self) -> None:
        self.calls.append(("resume", None))


def agent_status(**changes: Any) -> AgentStatus:
    base = AgentStatus(
        capturing=True,
        reason=Reason.CAPTURING,
        policy_version=1,
        problem=None,
        hooks_installed=True,
        paused_until=None,
        batches_written=4,
        events_seen=120,
        events_lost=0,
        batches_held=0,
    )
    return replace(base, **changes)


@dataclass
class Setup:
    key: Ed25519PrivateKey
    local: LocalState
    clock: Clock
    agent: FakeAgent
    trusted: SignerSet

    def install(self, doc: dict[str, Any]) -> Policy:
        signed = sign_policy(json.dumps(doc).encode(), [self.key])
        policy, _ = accept_policy_bytes(signed, self.local.trust, self.trusted, DEVICE, NOW)
        return policy

    def policy_in_store(self) -> Policy | None:
        """What the agent would have in force: the trust store's last good policy."""
        return load_policy(self.local.trust, self.trusted, DEVICE, self.clock()).policy

    def target(self, parts: ControlParts | None = None) -> AgentControlTarget:
        return AgentControlTarget(
            self.agent,
            policy=self.policy_in_store,
            consent=self.local.consent,
            clock=self.clock,
            parts=parts,
        )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    key = generate_private_key()
    trusted = SignerSet(keys=(public_key_model(key.public_key()),), threshold=1)
    return Setup(key, LocalState(tmp_path / "state"), Clock(), FakeAgent(agent_status()), trusted)


@pytest.fixture
def policy(setup: Setup) -> Policy:
    return setup.install(policy_doc())


# ------------------------------------------------------------------ status


def test_status_reports_what_the_agent_says_and_null_for_parts_it_lacks(
    setup: Setup, policy: Policy
) -> None:
    setup.local.save_consent(ConsentRecord.accept(policy, setup.clock()))
    status = setup.target().status().model_dump(mode="json")
    assert status == {
        "capturing": True,
        "reason": "capturing",
        "reason_text": "Capturing in allow-listed apps",
        "problem": None,
        "current_app": None,
        "paused_until_ms": None,
        "pause_max_minutes": 30,
        "policy": {
            "version": 1,
            "expires": (NOW + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
            "organisation": "Example Corp (test)",
        },
        "consent_needed": False,
        "exemptions": [],
        "spool": None,
        "upload": None,
        "counts": {"batches_written": 4, "batches_held": 0, "events_seen": 120, "events_lost": 0},
        "now_ms": int(NOW.timestamp() * 1000),
    }
    json.dumps(status, allow_nan=False)  # it must go on the wire as it is


def test_status_while_paused_carries_the_resume_time_and_the_policy_maximum(
    setup: Setup,
) -> None:
    setup.install(policy_doc(pause={"max_minutes": 20}))
    resumes = setup.clock() + 17 * 60
    setup.agent.status_value = agent_status(
        capturing=False, reason=Reason.PAUSED, paused_until=resumes
    )
    status = setup.target().status()
    assert status.reason == "paused"
    assert status.reason_text == "Paused by you"
    assert status.paused_until_ms == round(resumes * 1000)
    assert status.pause_max_minutes == 20


def test_status_without_a_policy_says_why_and_asks_no_consent(setup: Setup) -> None:
    setup.agent.status_value = agent_status(
        capturing=False,
        reason=Reason.NO_POLICY,
        policy_version=None,
        problem="no policy has been installed",
    )
    status = setup.target().status()
    assert status.policy is None
    assert status.problem == "no policy has been installed"
    assert status.reason_text.startswith("No capture policy")
    assert status.consent_needed is False
    assert status.pause_max_minutes == 30


def test_status_asks_for_consent_when_none_is_on_record(setup: Setup, policy: Policy) -> None:
    setup.agent.status_value = agent_status(capturing=False, reason=Reason.NO_CONSENT)
    assert setup.target().status().consent_needed is True


def test_status_passes_on_the_parts_it_is_given(setup: Setup, policy: Policy) -> None:
    def grant(category: Category, days: float) -> Grant:
        return Grant(
            grant_id=f"g-{category.value}",
            request_id="r1",
            tenant="example-corp",
            device_id="d1",
            category=category,
            issued_at=NOW - timedelta(days=10),
            expires=NOW + timedelta(days=days),
        )

    spool = {"batches": 4, "bytes": 123_456, "budget": 2**28, "held": 3, "ready": 1}
    spool |= {"dead": 0, "quarantined": 0}
    upload = {"state": "waiting", "why": "metered network", "last_success_ms": 1}
    upload |= {"today_bytes": 654_321, "daily_budget": 50 * 2**20, "next_attempt_ms": None}
    setup.agent.status_value = agent_status(
        policy_version=1,
        current_app="LibreOffice Writer",
        current_app_allowed=True,
        grants=(grant(Category.BANDWIDTH, 3), grant(Category.BATTERY, -1)),
    )
    parts = ControlParts(
        spool_state=lambda: spool,
        upload_state=lambda: upload,
    )
    status = setup.target(parts).status()
    assert status.current_app == CurrentApp(name="LibreOffice Writer", allowed=True)
    # The expired battery grant is not in force any more.
    assert status.exemptions == (
        ExemptionInForce(
            category="bandwidth",
            expires=(NOW + timedelta(days=3)).isoformat().replace("+00:00", "Z"),
        ),
    )
    assert status.spool is not None
    assert status.spool.model_dump() == spool
    assert status.upload is not None
    assert status.upload.model_dump() == upload


@pytest.mark.parametrize(
    "answer",
    [
        {"batches": 4, "secret": "keep out"},
        {"batches": "keep out", "bytes": 1, "budget": 1, "held": 0, "ready": 0, "dead": 0,
         "quarantined": 0},
        ["keep out"],
    ],
    ids=["missing fields", "a wrong type", "not an object"],
)  # fmt: skip
def test_a_part_answering_with_the_wrong_shape_is_an_internal_error(
    setup: Setup, policy: Policy, caplog: pytest.LogCaptureFixture, answer: Any
) -> None:
    parts = ControlParts(spool_state=lambda: answer)
    with pytest.raises(ControlError) as caught:
        setup.target(parts).status()
    assert caught.value.code == "internal"
    assert caught.value.__cause__ is None
    assert "keep out" not in caught.value.message
    assert "keep out" not in caplog.text


def test_every_reason_of_the_agent_has_its_sentence_on_the_wire(setup: Setup) -> None:
    assert set(REASON_TEXT) == {reason.value for reason in Reason}
    for reason in Reason:
        setup.agent.status_value = agent_status(reason=reason)
        assert setup.target().status().reason_text == REASON_TEXT[reason.value]


# ------------------------------------------------------------------ pause


def test_pause_and_resume_go_to_the_agent(setup: Setup, policy: Policy) -> None:
    target = setup.target()
    assert target.pause(None).reason == "capturing"  # the fake agent's status
    target.pause(12)
    target.resume()
    assert setup.agent.calls == [("pause", None), ("pause", 12.0), ("resume", None)]


# ------------------------------------------------------------------ consent


def test_consent_show_gives_the_notice_of_the_policy_in_force(setup: Setup, policy: Policy) -> None:
    shown = setup.target().consent_show()
    assert shown.policy_version == 1
    assert shown.needed is True
    assert shown.widening == ()
    assert shown.previous is None
    assert shown.notice.model_dump(mode="json") == consent_notice(policy)


def test_consent_show_lists_what_a_wider_policy_adds(setup: Setup) -> None:
    narrow = setup.install(policy_doc())
    setup.local.save_consent(ConsentRecord.accept(narrow, setup.clock() - 3600))
    chat = {"id": "chat", "name": "Chat", "match": {"wm_classes": ["chat"]}}
    doc = policy_doc(version=2)
    doc["apps"] = [*doc["apps"], chat]
    setup.install(doc)
    setup.agent.status_value = agent_status(
        capturing=False, reason=Reason.CONSENT_OUTDATED, policy_version=2
    )
    shown = setup.target().consent_show()
    assert shown.policy_version == 2
    assert shown.needed is True
    added = "app names and window positions in apps matching window class 'chat'"
    assert added in shown.widening
    assert shown.previous == ConsentOnRecord(
        accepted=True, policy_version=1, at_ms=round((setup.clock() - 3600) * 1000)
    )


def test_consent_show_refuses_without_a_policy(setup: Setup) -> None:
    setup.agent.status_value = agent_status(policy_version=None, reason=Reason.NO_POLICY)
    with pytest.raises(ControlError) as caught:
        setup.target().consent_show()
    assert caught.value.code == "unavailable"


def test_an_answer_is_handed_to_the_agent_as_a_consent_record(setup: Setup, policy: Policy) -> None:
    answers: list[ConsentRecord] = []
    target = setup.target(ControlParts(apply_consent=answers.append))
    target.consent_accept(1)
    target.consent_decline(1)
    assert [(a.accepted, a.policy_version, a.at) for a in answers] == [
        (True, 1, setup.clock()),
        (False, 1, setup.clock()),
    ]
    assert answers[0] == ConsentRecord.accept(policy, setup.clock())


def test_an_answer_to_another_policy_version_is_refused_and_recorded_nowhere(
    setup: Setup, policy: Policy
) -> None:
    answers: list[ConsentRecord] = []
    target = setup.target(ControlParts(apply_consent=answers.append))
    with pytest.raises(ControlError) as caught:
        target.consent_accept(2)
    assert caught.value.code == "not_allowed"
    assert "version 2" in caught.value.message
    assert answers == []


def test_an_answer_without_a_way_to_apply_it_is_unavailable_and_changes_nothing(
    setup: Setup, policy: Policy
) -> None:
    with pytest.raises(ControlError) as caught:
        setup.target().consent_accept(1)
    assert caught.value.code == "unavailable"
    assert "Nothing was recorded" in caught.value.message
    assert setup.local.consent() is None


def test_consent_is_asked_again_only_when_it_no_longer_covers_the_policy(
    setup: Setup, policy: Policy
) -> None:
    at = setup.clock()
    assert consent_needed(None, policy)
    assert not consent_needed(ConsentRecord.accept(policy, at), policy)
    assert not consent_needed(ConsentRecord.decline(policy, at), policy)
    newer = policy.model_copy(update={"version": 2})
    assert consent_needed(ConsentRecord.decline(policy, at), newer)
    assert not consent_needed(ConsentRecord.accept(policy, at), newer)


# ------------------------------------------------------------------ parts not built yet


@pytest.mark.parametrize(
    "command",
    [
        lambda t: t.discard(10),
        lambda t: t.exemption_request("battery", "on the train all day", 30),
        lambda t: t.exemption_list(),
        lambda t: t.ledger(7),
    ],
    ids=["discard", "exemption.request", "exemption.list", "ledger"],
)
def test_commands_whose_part_is_missing_are_unavailable(
    setup: Setup, policy: Policy, command: Callable[[AgentControlTarget], Any]
) -> None:
    with pytest.raises(ControlError) as caught:
        command(setup.target())
    assert caught.value.code == "unavailable"
    assert caught.value.message


def test_commands_reach_their_parts_and_answer_with_their_objects(
    setup: Setup, policy: Policy
) -> None:
    seen: list[tuple[str, Any]] = []
    discarded: dict[str, Any] = {
        "batches_deleted": 2,
        "events_dropped": 17,
        "erasure_requested": False,
        "erasure_range": None,
    }
    ledger = {"batches": [], "daily": [{"day": "2026-11-22", "bytes_uploaded": 0, "budget": 9}]}

    def discard(minutes: int) -> dict[str, Any]:
        seen.append(("discard", minutes))
        return discarded

    def request(category: str, reason: str, days: int) -> dict[str, Any]:
        seen.append(("request", (category, reason, days)))
        return {"request_id": "r-1", "status": "pending"}

    def report(days: int) -> dict[str, Any]:
        seen.append(("ledger", days))
        return ledger

    parts = ControlParts(
        discard=discard,
        request_exemption=request,
        list_exemptions=lambda: {"requests": []},
        ledger=report,
    )
    target = setup.target(parts)
    assert target.discard(10).model_dump(mode="json") == discarded
    assert target.exemption_request("battery", "on the train", 14) == ExemptionRequestSent(
        request_id="r-1", status="pending"
    )
    assert target.exemption_list() == RequestedExemptions(requests=())
    assert target.ledger(3).model_dump(mode="json") == ledger
    assert seen == [
        ("discard", 10),
        ("request", ("battery", "on the train", 14)),
        ("ledger", 3),
    ]


def test_a_policy_other_than_the_agents_is_not_shown(setup: Setup, policy: Policy) -> None:
    setup.agent.status_value = agent_status(policy_version=7)
    status = setup.target().status()
    assert status.policy == PolicySummary(version=7, expires=None, organisation=None)
    with pytest.raises(ControlError):
        setup.target().consent_show()


# ------------------------------------------------------------------ the notice


def test_the_notice_says_everything_the_signed_policy_promises() -> None:
    doc = policy_doc("office.json")
    policy = parse_policy_payload(json.dumps(doc).encode())
    notice = consent_notice(policy)
    assert notice["organisation"] == "Example Corp"
    assert notice["contact"] == "privacy@example.com"
    assert notice["purpose"] == doc["notice"]["purpose"]
    assert notice["policy"]["version"] == policy.version
    assert notice["policy"]["expires"] == doc["expires"].replace("+00:00", "Z")
    assert [a["name"] for a in notice["apps"]] == [a["name"] for a in doc["apps"]]

    browser = notice["apps"][0]
    assert browser["keystrokes"] == "shortcuts"
    assert browser["keystrokes_words"].startswith("shortcuts and editing keys")
    assert browser["mouse"] is True
    assert browser["screenshots"]["max_width"] == 1280
    assert browser["screenshots"]["max_per_minute"] == 10
    assert browser["titles"] == "keep"
    assert {"pattern": "(?i)private browsing|incognito|inprivate", "action": "skip"}.items() <= (
        browser["title_rules"][0].items()
    )

    chat = next(a for a in notice["apps"] if a["name"] == "Team chat")
    assert chat["actions_only"] is True
    assert chat["screenshots"] is None
    assert chat["titles"] == "none"

    assert notice["never_captured"] == ["Password managers"]
    assert notice["redaction"]["custom"] == ["employee-id", "iban"]
    assert notice["review_window_minutes"] == 15
    assert notice["retention_days"] == 180
    assert notice["readers"] == list(doc["retention"]["readers"])
    assert notice["pause_max_minutes"] == 30
    categories = {c["category"]: c for c in notice["exemptions"]["categories"]}
    assert set(categories) == {"bandwidth", "sensitive", "battery", "other"}
    assert categories["sensitive"]["effect"] == "capture stops"
    assert all(c["grantable"] for c in categories.values())
    assert "overt exemption request" in notice["exemptions"]["how"]
    json.dumps(notice, allow_nan=False)


def test_a_category_no_admin_key_may_grant_is_marked_so() -> None:
    doc = policy_doc("office.json")
    doc["grant_signers"][0]["categories"] = ["battery"]
    notice = consent_notice(parse_policy_payload(json.dumps(doc).encode()))
    grantable = {c["category"]: c["grantable"] for c in notice["exemptions"]["categories"]}
    assert grantable == {"bandwidth": False, "sensitive": False, "battery": True, "other": False}


# ------------------------------------------------------------------ the real agent

WORKAPP = WindowInfo(
    window_id=1,
    app=AppIdentity(wm_instance="overt-workapp", wm_class="overt-workapp"),
    title="Work",
    rect=Rect(100, 100, 800, 600),
    pid=10,
)


def wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


@dataclass
class Running:
    agent: Agent
    hooks: FakeInputHooks
    client: ControlClient


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    key = generate_private_key()
    now = datetime.now(UTC)
    doc = policy_doc(
        issued_at=(now - timedelta(hours=1)).isoformat(),
        expires=(now + timedelta(days=1)).isoformat(),
    )
    payload = json.dumps(doc).encode()
    (tmp_path / "p.signed.json").write_bytes(sign_policy(payload, [key]))
    LocalState(tmp_path / "state").save_consent(
        ConsentRecord.accept(parse_policy_payload(payload), time.time())
    )
    probe = FakeWindowProbe()
    probe.add(WORKAPP, focus=True)

    def canary() -> Canary:
        rect = Rect(1500, 50, 160, 90)
        opened = FakeCanary(rect)
        identity = AppIdentity(wm_instance=CANARY_CLASS, wm_class=CANARY_CLASS)
        probe.add(WindowInfo(opened.window_id, identity, "Overt filter self-test", rect))
        return opened

    hooks = FakeInputHooks(time.time)
    config = AgentConfig(
        trusted=SignerSet(keys=(public_key_model(key.public_key()),), threshold=1),
        tenant="example-corp",
        device_group="office",
        state_dir=tmp_path / "state",
        policy_file=tmp_path / "p.signed.json",
    )
    agent = Agent(
        config,
        probe=probe,
        hooks=hooks,
        grabber=FakeScreenGrabber(),
        sink=MemorySink(),
        canary=canary,
    )
    agent.start()
    target = AgentControlTarget(
        agent,
        policy=lambda: agent.policy,
        consent=LocalState(config.state_dir).consent,
        clock=config.clock,
    )
    server = ControlServer(target, tmp_path / "run/agent.sock")
    server.start()
    try:
        yield Running(agent, hooks, ControlClient(server.path))
    finally:
        server.stop()
        agent.stop()


def test_the_real_agent_pauses_clamps_and_resumes_through_the_socket(running: Running) -> None:
    status = running.client.status()
    assert status.capturing is True
    assert status.policy is not None
    assert status.policy.organisation == "Example Corp (test)"
    assert status.consent_needed is False

    paused = running.client.pause(600)  # more than the policy's 30 minutes
    assert paused.reason == "paused"
    assert 29 * 60_000 < paused.pause_remaining_ms <= 30 * 60_000
    assert running.agent.status().reason is Reason.PAUSED
    assert not running.hooks.installed

    resumed = running.client.resume()
    assert resumed.paused_until_ms is None
    wait(lambda: running.hooks.installed)
    assert running.client.status().reason == "capturing"


def test_the_real_agent_shows_its_notice_but_cannot_take_consent_yet(running: Running) -> None:
    shown = running.client.consent_show()
    assert shown.needed is False
    assert shown.notice.apps[0].name == "Overt test work app"
    with pytest.raises(ControlError) as caught:
        running.client.consent_decline(shown.policy_version)
    assert caught.value.code == "unavailable"
    assert running.agent.status().reason is Reason.CAPTURING


def test_control_calls_from_several_threads_at_once_are_safe(running: Running) -> None:
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(10):
                running.client.pause(5)
                running.client.status()
                running.client.resume()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    running.client.resume()
    wait(lambda: running.hooks.installed)
