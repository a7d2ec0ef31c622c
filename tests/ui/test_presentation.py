"""The presentation core: what the tray shows for each agent state (no Qt, no display)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from overt.wire.control_results import Status
from tests.ui.fake_agent import MINUTE_MS, T0_MS, FakeAgent, ManualClock
from ui.presentation import (
    ConsentPrompter,
    IconKind,
    ResumeAnnouncer,
    Unreachable,
    human_bytes,
    minutes_phrase,
    next_poll_ms,
    pause_choices,
    present,
)


def status(**changes: Any) -> Status:
    doc = FakeAgent().status().model_dump(mode="json")
    doc.update(changes)
    return Status.model_validate(doc)


def paused(left_ms: int, now_ms: int = T0_MS) -> Status:
    return status(reason="paused", capturing=False, paused_until_ms=now_ms + left_ms,
                  now_ms=now_ms)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "icon", "headline"),
    [
        ({}, IconKind.CAPTURING, "Capturing in allow-listed apps"),
        ({"reason": "not_allowed", "capturing": False,
          "current_app": {"name": "Firefox", "allowed": False}},
         IconKind.ARMED, "Capturing in allow-listed apps; not in Firefox"),
        ({"reason": "never_captured", "capturing": False,
          "current_app": {"name": "KeePassXC", "allowed": False}},
         IconKind.ARMED, "Capturing in allow-listed apps; never in KeePassXC"),
        ({"reason": "no_consent", "capturing": False, "consent_needed": True},
         IconKind.ATTENTION, "Not capturing: you have not answered the notice yet"),
        ({"reason": "consent_outdated", "capturing": False, "consent_needed": True},
         IconKind.ATTENTION, "Not capturing: the new policy captures more and needs your answer"),
        ({"reason": "consent_declined", "capturing": False},
         IconKind.BLOCKED, "Not capturing: you declined the notice"),
        ({"reason": "policy_expired", "capturing": False},
         IconKind.BLOCKED, "Not capturing: the policy has expired"),
        ({"reason": "policy_invalid", "capturing": False},
         IconKind.BLOCKED, "Not capturing: the policy is not valid"),
        ({"reason": "no_policy", "capturing": False, "policy": None},
         IconKind.BLOCKED, "Not capturing: no policy is installed"),
        ({"reason": "self_test_failed", "capturing": False},
         IconKind.BLOCKED, "Not capturing: the privacy self-test failed"),
        ({"reason": "spool_full", "capturing": False},
         IconKind.BLOCKED, "Not capturing: the local store is full until uploads catch up"),
        ({"reason": "spool_full", "capturing": False,
          "problem": "the disk is full: captured batches cannot be stored in /s"},
         IconKind.BLOCKED,
         "Not capturing: the disk is full: captured batches cannot be stored in /s"),
        ({"reason": "exempt", "capturing": False,
          "exemptions": [{"category": "battery", "expires": "2026-12-01T00:00:00Z"}]},
         IconKind.BLOCKED, "Not capturing: you are exempt until 2026-12-01"),
        ({"reason": "something_new", "capturing": False, "reason_text": "the moon is full"},
         IconKind.BLOCKED, "Not capturing: the moon is full"),
    ],
)  # fmt: skip
def test_each_reason_has_its_icon_and_plain_words(
    changes: dict[str, Any], icon: IconKind, headline: str
) -> None:
    view = present(status(**changes), UTC)
    assert view.icon is icon
    assert view.headline == headline
    assert view.tooltip.startswith(headline)
    assert view.entry("status").label == headline
    assert not view.entry("status").enabled


def test_paused_shows_the_minutes_left_and_the_time_in_tooltip_and_menu() -> None:
    view = present(paused(12 * MINUTE_MS - 30_000), UTC)
    assert view.icon is IconKind.PAUSED
    assert view.headline == "Paused — resumes in 12 min (at 12:11)"
    assert "resumes in 12 min" in view.tooltip
    assert view.entry("status").label == view.headline


def test_less_than_a_minute_left_still_says_one_minute() -> None:
    assert "resumes in 1 min" in present(paused(10_000), UTC).headline


def test_agent_not_running_has_its_own_icon_and_everything_but_quit_is_off() -> None:
    view = present(Unreachable(why="the agent is not running (no socket at /x)"))
    assert view.icon is IconKind.NOT_RUNNING
    assert view.headline == "Not capturing: the agent is not running"
    assert "no socket at /x" in view.tooltip
    assert view.detail == "the agent is not running (no socket at /x)"
    enabled = {e.id for e in view.menu if e.enabled and not e.separator}
    assert enabled == {"quit"}


def test_a_tray_that_can_start_the_agent_offers_to() -> None:
    view = present(Unreachable(can_start=True))
    assert view.entry("start_agent").enabled
    starting = present(Unreachable(starting=True, can_start=True))
    assert starting.headline == "Not capturing: starting the agent…"
    assert not starting.entry("start_agent").enabled


def test_menu_while_capturing() -> None:
    view = present(status())
    labels = [e.label for e in view.menu if not e.separator]
    assert labels == [
        "Capturing in allow-listed apps",
        "The capture notice…",
        "Pause for 30 minutes",
        "Pause for 15 minutes",
        "Pause for 5 minutes",
        "Resume now",
        "Discard the last 5 minutes",
        "Discard the last 15 minutes",
        "What is captured…",
        "Request an exemption…",
        "Quit",
    ]
    assert view.entry("pause:30").enabled
    assert not view.entry("resume").enabled
    assert view.entry("discard:5").minutes == 5


def test_while_paused_pausing_is_off_and_resume_is_on() -> None:
    view = present(paused(5 * MINUTE_MS))
    assert not any(e.enabled for e in view.menu if e.command == "pause")
    assert view.entry("resume").enabled


def test_consent_needed_puts_the_notice_first_in_words_that_ask() -> None:
    view = present(status(reason="no_consent", capturing=False, consent_needed=True))
    assert view.entry("consent").label == "Answer the capture notice…"
    assert view.menu[2].id == "consent"


@pytest.mark.parametrize(
    ("maximum", "choices"),
    [(30, (30, 15, 5)), (60, (60, 30, 15, 5)), (10, (10, 5)), (5, (5,)), (1, (1,)),
     (240, (240, 60, 30, 15, 5))],
)  # fmt: skip
def test_pause_offers_the_policy_maximum_first_and_shorter_choices(
    maximum: int, choices: tuple[int, ...]
) -> None:
    assert pause_choices(maximum) == choices
    view = present(status(pause_max_minutes=maximum))
    assert [e.minutes for e in view.menu if e.command == "pause"] == list(choices)


def test_tooltip_details_uploads_and_policy() -> None:
    view = present(status())
    tooltip = view.tooltip
    assert view.detail == "Recording LibreOffice Writer now"
    assert "Recording LibreOffice Writer now" in tooltip
    assert "Uploaded today: 639 KiB of 50 MiB" in tooltip
    assert "Policy 3 of Example Corp" in tooltip


def test_upload_waiting_says_why() -> None:
    doc = FakeAgent().status().model_dump(mode="json")
    doc["upload"].update(state="waiting", why="on battery")
    assert "Upload waiting: on battery" in present(Status.model_validate(doc)).tooltip


# -- announcements --------------------------------------------------------------


def test_resume_is_announced_a_minute_before_and_when_it_happens() -> None:
    announcer = ResumeAnnouncer(tz=UTC)
    until = T0_MS + 30 * MINUTE_MS
    assert announcer.observe(paused(30 * MINUTE_MS)) == []
    assert announcer.observe(paused(until - (T0_MS + 20 * MINUTE_MS), T0_MS + 20 * MINUTE_MS)) == []
    (soon,) = announcer.observe(paused(59_000, until - 59_000))
    assert soon.title == "Capture resumes soon"
    assert "resumes in 1 minute (at 12:30)" in soon.message
    assert announcer.observe(paused(30_000, until - 30_000)) == []  # said once
    (resumed,) = announcer.observe(status(now_ms=until + 500))
    assert resumed.title == "Capture resumed"
    assert "capturing in allow-listed apps again" in resumed.message
    assert announcer.observe(status(now_ms=until + 2500)) == []


def test_a_pause_ended_by_the_employee_is_not_announced() -> None:
    announcer = ResumeAnnouncer()
    announcer.observe(paused(30 * MINUTE_MS))
    assert announcer.observe(status(now_ms=T0_MS + 5 * MINUTE_MS)) == []


def test_a_short_pause_does_not_warn_as_it_starts() -> None:
    announcer = ResumeAnnouncer()
    assert announcer.observe(paused(60_000)) == []
    assert [n.title for n in announcer.observe(status(now_ms=T0_MS + 60_000))] == [
        "Capture resumed"
    ]


def test_a_pause_that_ends_into_another_reason_says_so() -> None:
    announcer = ResumeAnnouncer()
    announcer.observe(paused(10 * MINUTE_MS))
    (n,) = announcer.observe(
        status(reason="spool_full", capturing=False, now_ms=T0_MS + 10 * MINUTE_MS)
    )
    assert "Not capturing: the local store is full" in n.message


def test_losing_the_agent_during_a_pause_announces_nothing() -> None:
    announcer = ResumeAnnouncer()
    announcer.observe(paused(10 * MINUTE_MS))
    assert announcer.observe(Unreachable()) == []


def test_an_extended_pause_warns_again_before_its_new_end() -> None:
    announcer = ResumeAnnouncer()
    announcer.observe(paused(5 * MINUTE_MS))
    assert len(announcer.observe(paused(50_000, T0_MS + 5 * MINUTE_MS - 50_000))) == 1
    later = T0_MS + 5 * MINUTE_MS - 40_000
    announcer.observe(paused(30 * MINUTE_MS, later))
    assert len(announcer.observe(paused(45_000, later + 30 * MINUTE_MS - 45_000))) == 1


def test_consent_prompt_once_per_policy_version() -> None:
    prompter = ConsentPrompter()
    needed = status(reason="no_consent", capturing=False, consent_needed=True)
    assert prompter.observe(status()) is False
    assert prompter.observe(needed) is True
    assert prompter.observe(needed) is False
    newer = dict(
        FakeAgent().status().model_dump(mode="json"),
        consent_needed=True,
        reason="consent_outdated",
    )
    newer["policy"] = dict(newer["policy"], version=4)
    assert prompter.observe(Status.model_validate(newer)) is True
    assert prompter.observe(Unreachable()) is False


def test_polling_comes_early_for_the_warning_and_the_resume() -> None:
    assert next_poll_ms(status(), 2000) == 2000
    assert next_poll_ms(Unreachable(), 2000) == 2000
    assert next_poll_ms(paused(60_500), 2000) == 600  # the warning point, then a little
    assert next_poll_ms(paused(800), 2000) == 900  # just after the end
    assert next_poll_ms(paused(10 * MINUTE_MS), 2000) == 2000


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (654_321, "639 KiB"),
     (50 << 20, "50 MiB"), (3 << 30, "3.0 GiB")],
)  # fmt: skip
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_minutes_phrase() -> None:
    assert [minutes_phrase(m) for m in (1, 5, 60, 90, 120)] == [
        "1 minute", "5 minutes", "1 hour", "90 minutes", "2 hours"
    ]  # fmt: skip


def test_a_manual_clock_agent_pause_is_clamped_to_the_policy() -> None:
    clock = ManualClock()
    agent = FakeAgent(clock=clock, pause_max_minutes=20)
    s = agent.pause(30)
    assert s.pause_remaining_ms == 20 * MINUTE_MS
    assert present(s, UTC).headline.startswith("Paused — resumes in 20 min")
