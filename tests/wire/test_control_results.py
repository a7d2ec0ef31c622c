"""The control API's results read into typed models, and wrong shapes are named.

What the tray and the CLI used to check by hand, field by field, is now the
models' of ``overt.wire.control_results``: these tests hold them to the
documented shapes and to the words of their refusals.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from overt.wire.control import (
    CONSENT_SHOW,
    DISCARD,
    EXEMPTION_LIST,
    LEDGER,
    STATUS,
    Command,
    ControlFormatError,
)
from overt.wire.control_results import Result
from tests.ui.fake_agent import FakeAgent, ManualClock, office_notice, sample_batches

#: The status object exactly as docs/CONTROL.md shows it.
DOC_STATUS: dict[str, Any] = {
    "capturing": True,
    "reason": "capturing",
    "reason_text": "Capturing in allow-listed apps",
    "problem": None,
    "current_app": {"name": "LibreOffice Writer", "allowed": True},
    "paused_until_ms": None,
    "pause_max_minutes": 30,
    "policy": {"version": 3, "expires": "2026-12-01T00:00:00Z", "organisation": "Example Corp"},
    "consent_needed": False,
    "exemptions": [{"category": "bandwidth", "expires": "2026-12-01T00:00:00Z"}],
    "spool": {"batches": 4, "bytes": 123456, "budget": 268435456, "held": 3, "ready": 1,
              "dead": 0, "quarantined": 0},
    "upload": {"state": "idle", "why": "", "last_success_ms": 1795000000000,
               "today_bytes": 654321, "daily_budget": 52428800, "next_attempt_ms": None},
    "counts": {"batches_written": 12, "batches_held": 0, "events_seen": 3400, "events_lost": 0},
    "now_ms": 1795000000000,
}  # fmt: skip


def test_the_documented_status_object_reads_and_goes_back_to_the_same_json() -> None:
    status = STATUS.parse_result(DOC_STATUS)
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
    assert status.exemptions[0].category == "bandwidth"
    assert not status.paused
    assert status.pause_remaining_ms == 0
    assert status.model_dump(mode="json") == DOC_STATUS


def test_reading_does_not_change_its_input() -> None:
    before = copy.deepcopy(DOC_STATUS)
    STATUS.parse_result(DOC_STATUS)
    assert before == DOC_STATUS


def test_fields_a_newer_agent_adds_are_ignored_and_a_new_reason_is_kept() -> None:
    status = STATUS.parse_result({**DOC_STATUS, "battery": {"on_ac": False}, "reason": "new"})
    assert status.reason == "new"
    assert "battery" not in status.model_dump()


def test_the_blocks_an_agent_may_not_report_may_be_null() -> None:
    status = STATUS.parse_result(
        {**DOC_STATUS, "current_app": None, "policy": None, "spool": None, "upload": None}
    )
    assert (status.current_app, status.policy, status.spool, status.upload) == (None,) * 4


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"now_ms": "soon"}, "status.now_ms"),
        ({"now_ms": True}, "status.now_ms"),
        ({"now_ms": 1.0}, "status.now_ms"),
        ({"capturing": 1}, "status.capturing"),
        ({"pause_max_minutes": 0}, "status.pause_max_minutes"),
        ({"spool": {"batches": 1}}, "status.spool.bytes"),
        ({"current_app": "Writer"}, "status.current_app"),
        ({"exemptions": [{"expires": "x"}]}, "status.exemptions[0].category"),
        ({"exemptions": None}, "status.exemptions"),
        ({"paused_until_ms": -5}, "status.paused_until_ms"),
        ({"upload": {**DOC_STATUS["upload"], "state": "sleeping"}}, "status.upload.state"),
    ],
)
def test_a_wrong_field_is_named_in_the_error(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ControlFormatError) as refused:
        STATUS.parse_result({**DOC_STATUS, **change})
    assert str(refused.value).startswith(path + ":")


@pytest.mark.parametrize("field", ["reason", "spool", "counts", "problem"])
def test_a_missing_field_is_an_error_not_a_default(field: str) -> None:
    doc = dict(DOC_STATUS)
    del doc[field]
    with pytest.raises(ControlFormatError, match=rf"^status\.{field}: Field required"):
        STATUS.parse_result(doc)


@pytest.mark.parametrize("value", [None, [], "ok", 3])
def test_a_result_that_is_not_an_object_is_refused(value: object) -> None:
    with pytest.raises(ControlFormatError, match=r"^status: "):
        STATUS.parse_result(value)


def test_paused_status_counts_down_from_the_agents_clock() -> None:
    status = STATUS.parse_result(
        {**DOC_STATUS, "reason": "paused", "capturing": False,
         "paused_until_ms": DOC_STATUS["now_ms"] + 90_000}
    )  # fmt: skip
    assert status.paused
    assert status.pause_remaining_ms == 90_000


def test_the_fake_agents_answers_are_the_models_and_read_back_from_their_json() -> None:
    clock = ManualClock()
    agent = FakeAgent(clock=clock, batches=sample_batches(clock.now_ms))
    agent.exemption_request("battery", "I work from trains", 30)
    answers: list[tuple[Command[Any, Any], Result]] = [
        (STATUS, agent.status()),
        (CONSENT_SHOW, agent.consent_show()),
        (LEDGER, agent.ledger(7)),
        (DISCARD, agent.discard(5)),
        (EXEMPTION_LIST, agent.exemption_list()),
    ]
    for command, answer in answers:
        assert command.parse_result(answer.model_dump(mode="json")) == answer
    assert agent.ledger(7).batches
    (request,) = agent.exemption_list().requests
    assert (request.status, request.decided_at) == ("pending", None)


def test_consent_widening_is_a_list_of_sentences() -> None:
    base = {"policy_version": 2, "needed": True, "previous": None, "notice": office_notice()}
    listed = CONSENT_SHOW.parse_result({**base, "widening": ["typed text in apps matching 'x'"]})
    assert listed.widens
    assert listed.widening == ("typed text in apps matching 'x'",)
    assert not CONSENT_SHOW.parse_result({**base, "widening": []}).widens
    with pytest.raises(ControlFormatError, match=r"^consent\.show\.widening\[0\]"):
        CONSENT_SHOW.parse_result({**base, "widening": [3]})
    with pytest.raises(ControlFormatError, match=r"^consent\.show\.notice"):
        CONSENT_SHOW.parse_result({**base, "widening": [], "notice": "text"})


def test_discard_range_must_be_two_integers() -> None:
    base = {"batches_deleted": 1, "events_dropped": 0, "erasure_requested": True}
    assert DISCARD.parse_result({**base, "erasure_range": [1, 2]}).erasure_range == (1, 2)
    for wrong in ([1], [1, 2, 3], ["1", 2], [True, 2]):
        with pytest.raises(ControlFormatError, match="erasure_range"):
            DISCARD.parse_result({**base, "erasure_range": wrong})


def test_ledger_counts_must_be_integers() -> None:
    batch = {
        "seq": 1, "batch_id": "a", "start_ms": 0, "end_ms": 1, "apps": [],
        "counts": {"clicks": "3"}, "bytes": 1, "state": "held", "uploaded_at_ms": None,
        "destination": None,
    }  # fmt: skip
    with pytest.raises(ControlFormatError, match=r"^ledger\.batches\[0\]\.counts"):
        LEDGER.parse_result({"batches": [batch], "daily": []})
