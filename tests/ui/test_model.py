"""The control API's answers parse into typed values, and wrong shapes are named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.ui.fake_agent import FakeAgent, ManualClock, sample_batches
from ui.errors import BadReply
from ui.model import (
    parse_consent_offer,
    parse_discard,
    parse_exemption_list,
    parse_ledger,
    parse_status,
)

#: The status object exactly as docs/CONTROL.md shows it.
DOC_STATUS: dict[str, Any] = {
    "capturing": True,
    "reason": "capturing",
    "reason_text": "Capturing in allow-listed apps",
    "current_app": {"name": "LibreOffice Writer", "allowed": True},
    "paused_until_ms": None,
    "pause_max_minutes": 30,
    "policy": {"version": 3, "expires": "2026-12-01T00:00:00Z", "organisation": "Example Corp"},
    "consent_needed": False,
    "exemptions": [{"category": "limited_bandwidth", "expires": "2026-12-01T00:00:00Z"}],
    "spool": {"batches": 4, "bytes": 123456, "budget": 268435456, "held": 3, "ready": 1,
              "dead": 0, "quarantined": 0},
    "upload": {"state": "idle", "why": "", "last_success_ms": 1795000000000,
               "today_bytes": 654321, "daily_budget": 52428800},
    "now_ms": 1795000000000,
}  # fmt: skip


def test_the_documented_status_object_parses() -> None:
    status = parse_status(DOC_STATUS)
    assert status.capturing
    assert status.reason == "capturing"
    assert status.current_app is not None
    assert status.current_app.name == "LibreOffice Writer"
    assert status.policy is not None
    assert status.policy.version == 3
    assert status.spool is not None
    assert status.spool.budget == 268435456
    assert status.upload is not None
    assert status.upload.today_bytes == 654321
    assert status.exemptions[0].category == "limited_bandwidth"
    assert not status.paused
    assert status.pause_remaining_ms == 0


def test_parsing_does_not_change_its_input() -> None:
    before = copy.deepcopy(DOC_STATUS)
    parse_status(DOC_STATUS)
    assert before == DOC_STATUS


def test_fields_a_newer_agent_adds_are_ignored() -> None:
    status = parse_status({**DOC_STATUS, "battery": {"on_ac": False}, "reason": "new_reason"})
    assert status.reason == "new_reason"


def test_optional_blocks_may_be_null_or_missing() -> None:
    doc = {k: v for k, v in DOC_STATUS.items() if k not in {"spool", "upload", "exemptions"}}
    status = parse_status({**doc, "current_app": None, "policy": None})
    assert status.spool is None
    assert status.upload is None
    assert status.policy is None
    assert status.exemptions == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"now_ms": "soon"}, "status.now_ms: expected an integer, got a string"),
        ({"now_ms": True}, "status.now_ms: expected an integer, got a boolean"),
        ({"capturing": 1}, "status.capturing: expected true or false, got an integer"),
        ({"pause_max_minutes": 0}, "status.pause_max_minutes: must be at least 1"),
        ({"spool": {"batches": 1}}, "status.spool.bytes: missing"),
        ({"current_app": "Writer"}, "status.current_app: expected an object, got a string"),
        ({"exemptions": [{"expires": "x"}]}, "status.exemptions[0].category: missing"),
        ({"paused_until_ms": -5}, "status.paused_until_ms: must be at least 0"),
    ],
)
def test_a_wrong_field_is_named_in_the_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadReply, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_status({**DOC_STATUS, **change})


def test_a_missing_required_field_is_an_error_not_a_default() -> None:
    doc = dict(DOC_STATUS)
    del doc["reason"]
    with pytest.raises(BadReply, match=r"status\.reason: missing"):
        parse_status(doc)


@pytest.mark.parametrize("value", [None, [], "ok", 3])
def test_a_result_that_is_not_an_object_is_refused(value: object) -> None:
    with pytest.raises(BadReply, match="status: expected an object"):
        parse_status(value)


def test_paused_status_counts_down_from_the_agents_clock() -> None:
    status = parse_status(
        {**DOC_STATUS, "reason": "paused", "capturing": False,
         "paused_until_ms": DOC_STATUS["now_ms"] + 90_000}
    )  # fmt: skip
    assert status.paused
    assert status.pause_remaining_ms == 90_000


def test_the_fake_agents_answers_match_the_documented_shapes() -> None:
    clock = ManualClock()
    agent = FakeAgent(clock=clock, batches=sample_batches(clock.now_ms))
    assert parse_status(agent.status()).reason == "capturing"
    offer = parse_consent_offer(agent.consent_show())
    assert offer.policy_version == 3
    assert not offer.needed
    ledger = parse_ledger(agent.ledger(7))
    assert ledger.batches
    assert ledger.daily
    assert parse_discard(agent.discard(5)).batches_deleted == 1
    agent.exemption_request("battery", "I work from trains", 30)
    (request,) = parse_exemption_list(agent.exemption_list())
    assert request.status == "pending"
    assert request.decided_at is None


def test_consent_widening_may_be_a_flag_or_a_list() -> None:
    base = {"policy_version": 2, "needed": True, "notice": {"organisation": "X"}}
    assert parse_consent_offer({**base, "widening": True}).widens
    listed = parse_consent_offer({**base, "widening": ["typed text in apps matching 'x'"]})
    assert listed.widens
    assert listed.widening == ("typed text in apps matching 'x'",)
    assert not parse_consent_offer({**base, "widening": False}).widens
    with pytest.raises(BadReply, match=r"consent\.widening\[0\]"):
        parse_consent_offer({**base, "widening": [3]})
    with pytest.raises(BadReply, match=r"consent\.notice"):
        parse_consent_offer({**base, "notice": "text"})


def test_discard_range_must_be_two_integers() -> None:
    base = {"batches_deleted": 1, "events_dropped": 0, "erasure_requested": True}
    assert parse_discard({**base, "erasure_range": [1, 2]}).erasure_range == (1, 2)
    with pytest.raises(BadReply, match="erasure_range"):
        parse_discard({**base, "erasure_range": [1]})


def test_ledger_counts_must_be_integers() -> None:
    batch = FakeAgent().ledger(7)
    doc = {
        "batches": [
            {
                "seq": 1,
                "batch_id": "a",
                "start_ms": 0,
                "end_ms": 1,
                "apps": [],
                "counts": {"clicks": "3"},
                "bytes": 1,
                "state": "held",
                "uploaded_at_ms": None,
                "destination": None,
            }
        ],
        "daily": batch["daily"],
    }
    with pytest.raises(BadReply, match=r"ledger\.batches\[0\]\.counts"):
        parse_ledger(doc)
