"""``overt status|pause|resume|discard|consent|exemption|ledger`` against a real
control socket served by a fake agent.

The CLI functions are called as the dispatcher calls them
(``function(argv, prog) -> int``); what they print is read with capsys.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlError, ControlServer
from agent.notice import consent_notice
from overt.cli import main as overt_main
from overt.wire.control_results import (
    ConsentOffer,
    DiscardReport,
    ExemptionRequestSent,
    LedgerReport,
    RequestedExemptions,
    Status,
)
from policies.verify import parse_policy_payload
from tests.agent.test_control import OneShotServer
from ui import control_cli
from ui.cli_text import clock_time, local_moment

ROOT = Path(__file__).resolve().parents[2]
NOW_MS = 1_795_000_000_000
MIN = 60_000


def office_notice() -> dict[str, Any]:
    doc = json.loads((ROOT / "policies/examples/office.json").read_text("utf-8"))
    doc["issued_at"] = "2026-11-01T00:00:00Z"
    doc["expires"] = "2026-12-01T00:00:00Z"
    doc["version"] = 3
    return consent_notice(parse_policy_payload(json.dumps(doc).encode()))


def status_object(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "capturing": True,
        "reason": "capturing",
        "reason_text": "Capturing in allow-listed apps",
        "problem": None,
        "current_app": {"name": "LibreOffice Writer", "allowed": True},
        "paused_until_ms": None,
        "pause_max_minutes": 30,
        "policy": {"version": 3, "expires": "2026-12-01T00:00:00Z", "organisation": "Example Corp"},
        "consent_needed": False,
        "exemptions": [],
        "spool": {
            "batches": 4,
            "bytes": 123_456,
            "budget": 256 * 2**20,
            "held": 3,
            "ready": 1,
            "dead": 0,
            "quarantined": 0,
        },
        "upload": {
            "state": "idle",
            "why": "",
            "last_success_ms": NOW_MS - 20 * MIN,
            "today_bytes": 654_321,
            "daily_budget": 50 * 2**20,
            "next_attempt_ms": None,
        },
        "counts": {"batches_written": 4, "batches_held": 0, "events_seen": 10, "events_lost": 0},
        "now_ms": NOW_MS,
    }
    status.update(changes)
    return status


class FakeAgent:
    """A control target with canned answers (kept as the JSON objects the
    tests compare ``--json`` with, answered as their models); records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.status_value = status_object()
        self.refuse: ControlError | None = None
        self.ledger_value: dict[str, Any] = {"batches": [], "daily": []}
        self.requests: list[dict[str, Any]] = []
        self.shown: dict[str, Any] = {
            "policy_version": 3,
            "needed": True,
            "widening": [],
            "previous": None,
            "notice": office_notice(),
        }

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.refuse is not None:
            raise self.refuse

    def status(self) -> Status:
        self._call("status")
        return Status.model_validate(self.status_value)

    def pause(self, minutes: int | None) -> Status:
        self._call("pause", minutes)
        length = min(minutes or 30, 30)
        return _status(
            capturing=False,
            reason="paused",
            reason_text="Paused by you",
            paused_until_ms=NOW_MS + length * MIN,
        )

    def resume(self) -> Status:
        self._call("resume")
        return _status()

    def discard(self, minutes: int) -> DiscardReport:
        self._call("discard", minutes)
        return DiscardReport(
            batches_deleted=3,
            events_dropped=41,
            erasure_requested=True,
            erasure_range=(NOW_MS - 90 * MIN, NOW_MS - 80 * MIN),
        )

    def consent_show(self) -> ConsentOffer:
        self._call("consent_show")
        return ConsentOffer.model_validate(self.shown)

    def consent_accept(self, policy_version: int) -> Status:
        self._call("consent_accept", policy_version)
        return _status()

    def consent_decline(self, policy_version: int) -> Status:
        self._call("consent_decline", policy_version)
        return _status(
            capturing=False,
            reason="consent_declined",
            reason_text="You declined the capture notice, so nothing is captured",
        )

    def exemption_request(
        self, category: str, reason: str, duration_days: int
    ) -> ExemptionRequestSent:
        self._call("exemption_request", category, reason, duration_days)
        return ExemptionRequestSent(request_id="req-7", status="pending")

    def exemption_list(self) -> RequestedExemptions:
        self._call("exemption_list")
        return RequestedExemptions.model_validate({"requests": self.requests})

    def ledger(self, days: int) -> LedgerReport:
        self._call("ledger", days)
        return LedgerReport.model_validate(self.ledger_value)


def _status(**changes: Any) -> Status:
    return Status.model_validate(status_object(**changes))


@pytest.fixture
def fake() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def sock(tmp_path: Path, fake: FakeAgent) -> Iterator[str]:
    server = ControlServer(fake, tmp_path / "run" / "agent.sock")
    server.start()
    try:
        yield str(server.path)
    finally:
        server.stop()


def run(capsys: pytest.CaptureFixture[str], command: str, *argv: str) -> tuple[int, str, str]:
    code = getattr(control_cli, command)(list(argv), prog=f"overt {command}")
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ status


def test_status_says_where_capture_happens_and_what_it_costs(
    capsys: pytest.CaptureFixture[str], sock: str
) -> None:
    code, out, err = run(capsys, "status", "--socket", sock)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Capturing in LibreOffice Writer (allowed)."
    assert "Policy: version 3 from Example Corp, valid until 2026-12-01." in lines
    assert "Exemptions: none." in lines
    assert "Spool: 4 batches, 120.6 KiB of 256 MiB (3 held for review, 1 ready to upload)." in lines
    assert f"Upload: idle; last upload at {local_moment(NOW_MS - 20 * MIN)}." in lines
    assert "Today: 639 KiB uploaded of the 50 MiB daily budget." in lines


def test_status_when_paused_counts_down_to_the_resume(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    until = NOW_MS + 28 * MIN + 30_000
    fake.status_value = status_object(
        capturing=False, reason="paused", reason_text="Paused by you", paused_until_ms=until
    )
    code, out, _ = run(capsys, "status", "--socket", sock)
    assert code == 0
    assert out.splitlines()[0] == f"Paused for 29 more minutes (until {clock_time(until)})."


def test_status_in_an_app_that_is_not_allowed(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    fake.status_value = status_object(current_app={"name": "Firefox", "allowed": False})
    _, out, _ = run(capsys, "status", "--socket", sock)
    assert out.splitlines()[0] == (
        "Capture is on, but not in Firefox: it is not an allow-listed app."
    )


def test_status_says_why_nothing_is_captured_and_what_the_agent_does_not_report(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    fake.status_value = status_object(
        capturing=False,
        reason="no_consent",
        reason_text="Waiting for your consent to the capture notice",
        consent_needed=True,
        current_app=None,
        spool=None,
        upload=None,
        problem=None,
    )
    _, out, _ = run(capsys, "status", "--socket", sock)
    lines = out.splitlines()
    assert lines[0] == "Not capturing: Waiting for your consent to the capture notice."
    assert "Your answer to the capture notice is needed: run `overt consent`." in lines
    assert "Exemptions: none." in lines
    assert "Spool: not reported by this agent." in lines
    assert "Upload: not reported by this agent." in lines


def test_status_json_prints_the_agents_answer_as_it_is(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(capsys, "status", "--socket", sock, "--json")
    assert code == 0
    assert json.loads(out) == fake.status_value


def test_the_dispatcher_reaches_the_control_commands(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    assert overt_main(["status", "--socket", sock, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == fake.status_value


# ------------------------------------------------------------------ no agent, refusals, usage


@pytest.mark.parametrize(
    "argv",
    [
        ("status",),
        ("pause", "5"),
        ("resume",),
        ("discard", "5"),
        ("consent",),
        ("exemption", "list"),
        ("ledger",),
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_says_clearly_when_no_agent_is_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: tuple[str, ...]
) -> None:
    missing = tmp_path / "nowhere" / "agent.sock"
    command, *rest = argv
    code, out, err = run(capsys, command, *rest, "--socket", str(missing))
    assert code == 1
    assert out == ""
    assert err == (
        f"overt: the agent is not running (no socket at {missing}). "
        "Start it with `overt agent run …` or `overt tray`.\n"
    )


def test_a_refusal_is_one_line_on_stderr_and_exit_1(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    fake.refuse = ControlError("unavailable", "This agent keeps no spool to discard from yet.")
    code, out, err = run(capsys, "discard", "10", "--socket", sock)
    assert (code, out) == (1, "")
    assert err == "overt discard: This agent keeps no spool to discard from yet.\n"


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("pause", ("0",)),
        ("pause", ("half-an-hour",)),
        ("discard", ()),
        ("discard", ("-5",)),
        ("ledger", ("--days", "0")),
        ("exemption", ()),
        ("exemption", ("request", "--category", "lazy", "--reason", "x")),
        ("exemption", ("request", "--category", "battery")),
        ("exemption", ("request", "--category", "battery", "--reason", "   ")),
        ("consent", ("--accept", "--decline")),
        ("status", ("--verbose",)),
    ],
    ids=[
        "pause zero",
        "pause words",
        "discard nothing",
        "discard negative",
        "ledger zero days",
        "exemption no subcommand",
        "exemption bad category",
        "exemption no reason",
        "exemption blank reason",
        "consent both answers",
        "status unknown option",
    ],
)
def test_usage_errors_exit_2_and_reach_no_agent(
    capsys: pytest.CaptureFixture[str],
    sock: str,
    fake: FakeAgent,
    command: str,
    argv: tuple[str, ...],
) -> None:
    code, _, err = run(capsys, command, *argv, "--socket", sock)
    assert code == 2
    assert "usage:" in err
    assert fake.calls == []


def test_an_answer_of_an_unexpected_shape_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # An agent of another version: its status has a spool of another shape.
    odd = status_object(spool={"batches": 4})
    reply = json.dumps({"ok": True, "result": odd}).encode() + b"\n"
    path = tmp_path / "odd" / "agent.sock"
    agent = OneShotServer(path, reply)
    try:
        code, out, err = run(capsys, "status", "--socket", str(path))
    finally:
        agent.close()
    assert (code, out) == (1, "")
    assert err.startswith("overt status: the agent's answer is not what this version")
    assert "status.spool.bytes" in err
    assert err.count("\n") == 1
    path.unlink()
    agent = OneShotServer(path, reply)
    try:
        code, out, _ = run(capsys, "status", "--socket", str(path), "--json")
    finally:
        agent.close()
    assert code == 0
    assert json.loads(out)["spool"] == {"batches": 4}


# ------------------------------------------------------------------ pause, resume, discard


def test_pause_without_minutes_asks_for_the_policy_maximum(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(capsys, "pause", "--socket", sock)
    assert code == 0
    assert fake.calls == [("pause", (None,))]
    until = clock_time(NOW_MS + 30 * MIN)
    assert out == f"Paused for 30 minutes (until {until}); capture resumes by itself.\n"


def test_pause_longer_than_allowed_is_clamped_and_says_so(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(capsys, "pause", "45", "--socket", sock)
    assert code == 0
    assert fake.calls == [("pause", (45,))]
    until = clock_time(NOW_MS + 30 * MIN)
    assert out.splitlines() == [
        "The policy allows pauses of at most 30 minutes.",
        f"Paused for 30 minutes (until {until}); capture resumes by itself.",
    ]


def test_resume(capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent) -> None:
    code, out, _ = run(capsys, "resume", "--socket", sock)
    assert code == 0
    assert fake.calls == [("resume", ())]
    assert out.splitlines() == [
        "Capture is no longer paused.",
        "Capturing in LibreOffice Writer (allowed).",
    ]


def test_discard_reports_what_went_and_the_erasure_request(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(capsys, "discard", "90", "--socket", sock)
    assert code == 0
    assert fake.calls == [("discard", (90,))]
    assert out.splitlines() == [
        "Discarded 3 batches and 41 buffered events from the last 90 minutes.",
        "Part of it had already been uploaded: the collector was asked to erase "
        f"{local_moment(NOW_MS - 90 * MIN)} to {clock_time(NOW_MS - 80 * MIN)}.",
    ]


def test_discard_json(capsys: pytest.CaptureFixture[str], sock: str) -> None:
    code, out, _ = run(capsys, "discard", "--json", "5", "--socket", sock)
    assert code == 0
    assert json.loads(out)["batches_deleted"] == 3


# ------------------------------------------------------------------ consent


def test_consent_accept_shows_the_notice_then_answers_for_its_version(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(capsys, "consent", "--accept", "--socket", sock)
    assert code == 0
    assert fake.calls == [("consent_show", ()), ("consent_accept", (3,))]
    assert out.startswith(
        "Capture notice — Example Corp, policy version 3 (valid until 2026-12-01)\n"
    )
    for expected in (
        "Contact: privacy@example.com",
        "  - Web browser",
        "  - Team chat",
        "Never captured: Password managers.",
        "Kept for 180 days; readable only by: ",
        "You can pause capture at any time for up to 30 minutes.",
        "On battery: no screenshots.",
        "  - bandwidth: limited bandwidth",
        "Consent recorded: accepted.",
        "Capturing in LibreOffice Writer (allowed).",
    ):
        assert expected in out


def test_consent_decline(capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent) -> None:
    code, out, _ = run(capsys, "consent", "--decline", "--socket", sock)
    assert code == 0
    assert fake.calls[-1] == ("consent_decline", (3,))
    assert out.splitlines()[-2:] == [
        "Consent recorded: declined.",
        "Not capturing: You declined the capture notice, so nothing is captured.",
    ]


def test_consent_without_a_terminal_only_shows_the_notice(
    capsys: pytest.CaptureFixture[str],
    sock: str,
    fake: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, _ = run(capsys, "consent", "--socket", sock)
    assert code == 0
    assert fake.calls == [("consent_show", ())]
    assert out.splitlines()[-1] == (
        "To answer: `overt consent --accept` or `overt consent --decline`."
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("typed", "call"),
    [("y\n", "consent_accept"), ("maybe\nno\n", "consent_decline")],
    ids=["yes", "no after a wrong answer"],
)
def test_consent_on_a_terminal_asks(
    capsys: pytest.CaptureFixture[str],
    sock: str,
    fake: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
    typed: str,
    call: str,
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(typed))
    code, _, _ = run(capsys, "consent", "--socket", sock)
    assert code == 0
    assert fake.calls == [("consent_show", ()), (call, (3,))]


def test_consent_on_a_terminal_that_closes_records_nothing(
    capsys: pytest.CaptureFixture[str],
    sock: str,
    fake: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(""))
    code, out, err = run(capsys, "consent", "--socket", sock)
    assert code == 1
    assert fake.calls == [("consent_show", ())]
    assert out.endswith("[y/n] \n")
    assert err == "overt consent: no answer given; nothing was recorded\n"


def test_consent_shows_what_a_wider_policy_adds(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    fake.shown = {
        **fake.shown,
        "widening": ["typed text in apps matching window class 'code'"],
        "previous": {"accepted": True, "policy_version": 2, "at_ms": NOW_MS - 86_400_000},
    }
    _, out, _ = run(capsys, "consent", "--socket", sock)
    assert "Since you last agreed (policy version 2), this policy captures:" in out
    assert "  - typed text in apps matching window class 'code'" in out
    at = local_moment(NOW_MS - 86_400_000)
    assert f"Your answer on record: accepted (policy version 2, {at})." in out


def test_consent_json_prints_the_notice_or_the_answer(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    _, out, _ = run(capsys, "consent", "--json", "--socket", sock)
    assert json.loads(out) == fake.shown
    _, out, _ = run(capsys, "consent", "--json", "--accept", "--socket", sock)
    assert json.loads(out)["reason"] == "capturing"


def test_a_stale_notice_is_refused_by_the_agent(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    original = fake.consent_accept

    def refuse(policy_version: int) -> Status:
        original(policy_version)
        raise ControlError("not_allowed", "The notice you answered is for policy version 3.")

    fake.consent_accept = refuse  # type: ignore[method-assign]
    code, _, err = run(capsys, "consent", "--accept", "--socket", sock)
    assert code == 1
    assert err == "overt consent: The notice you answered is for policy version 3.\n"


# ------------------------------------------------------------------ exemptions


def test_exemption_request_sends_category_reason_and_days(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    code, out, _ = run(
        capsys,
        "exemption",
        "request",
        "--category",
        "bandwidth",
        "--reason",
        "  mobile data at home  ",
        "--days",
        "14",
        "--socket",
        sock,
    )
    assert code == 0
    assert fake.calls == [("exemption_request", ("bandwidth", "mobile data at home", 14))]
    assert out == (
        "Exemption request req-7 sent (pending). An admin reviews it; "
        "`overt exemption list` shows the answer.\n"
    )


def test_exemption_request_defaults_to_30_days(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    run(capsys, "exemption", "--socket", sock, "request", "--category", "battery", "--reason", "r")
    assert fake.calls == [("exemption_request", ("battery", "r", 30))]


def test_exemption_list_is_a_table(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    fake.requests = [
        {
            "request_id": "req-7",
            "category": "bandwidth",
            "reason": "mobile data",
            "duration_days": 14,
            "status": "approved",
            "decided_at": "2026-11-20T10:00:00Z",
            "decision_reason": None,
            "grant_expires": "2026-12-04T10:00:00Z",
            "created_at": "2026-11-19T10:00:00Z",
        },
        {
            "request_id": "req-9",
            "category": "other",
            "reason": "x",
            "duration_days": 30,
            "status": "pending",
            "decided_at": None,
            "decision_reason": None,
            "grant_expires": None,
            "created_at": "2026-11-21T10:00:00Z",
        },
    ]
    code, out, _ = run(capsys, "exemption", "list", "--socket", sock)
    assert code == 0
    assert out.splitlines() == [
        "REQUEST  CATEGORY   DAYS  STATUS    DECIDED     NOTE",
        "req-7    bandwidth  14    approved  2026-11-20  until 2026-12-04",
        "req-9    other      30    pending   -",
    ]
    _, out, _ = run(capsys, "exemption", "list", "--json", "--socket", sock)
    assert json.loads(out) == {"requests": fake.requests}


def test_no_exemption_requests(capsys: pytest.CaptureFixture[str], sock: str) -> None:
    _, out, _ = run(capsys, "exemption", "list", "--socket", sock)
    assert out == "No exemption requests.\n"


# ------------------------------------------------------------------ ledger


def test_ledger_is_a_table_with_the_daily_budget(
    capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent
) -> None:
    start = NOW_MS - 60 * MIN
    fake.ledger_value = {
        "batches": [
            {
                "seq": 12,
                "batch_id": "b12",
                "start_ms": start,
                "end_ms": start + MIN,
                "apps": ["browser", "office"],
                "counts": {"clicks": 4, "keys": 30, "screenshots": 0},
                "bytes": 12_600,
                "state": "uploaded",
                "uploaded_at_ms": start + 20 * MIN,
                "destination": "collector.example.com",
            },
            {
                "seq": 13,
                "batch_id": "b13",
                "start_ms": start + MIN,
                "end_ms": start + 2 * MIN,
                "apps": [],
                "counts": {},
                "bytes": 900,
                "state": "held",
                "uploaded_at_ms": None,
                "destination": None,
            },
        ],
        "daily": [{"day": "2026-11-22", "bytes_uploaded": 12_600, "budget": 50 * 2**20}],
    }
    code, out, _ = run(capsys, "ledger", "--days", "2", "--socket", sock)
    assert code == 0
    assert fake.calls == [("ledger", (2,))]
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "FROM", "TO", "APPS", "SIZE", "STATE", "UPLOADED", "COUNTS"]
    assert lines[1].startswith("12   ")
    for cell in (
        local_moment(start),
        clock_time(start + MIN),
        "browser, office",
        "12.3 KiB",
        "uploaded",
        f"{local_moment(start + 20 * MIN)} to collector.example.com",
        "clicks 4, keys 30",
    ):
        assert cell in lines[1]
    assert "held" in lines[2]
    assert lines[3] == "2 batches, 13.2 KiB in the last 2 days."
    assert lines[4] == "2026-11-22: 12.3 KiB uploaded of the 50 MiB daily budget."


def test_an_empty_ledger(capsys: pytest.CaptureFixture[str], sock: str, fake: FakeAgent) -> None:
    code, out, _ = run(capsys, "ledger", "--socket", sock)
    assert code == 0
    assert fake.calls == [("ledger", (7,))]
    assert out == "No batches in the last 7 days.\n"


def test_default_socket_comes_from_the_runtime_directory(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fake: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with ControlServer(fake, tmp_path / "overt" / "agent.sock"):
        code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    assert json.loads(out)["reason"] == "capturing"


def test_times_are_local_wall_clock() -> None:
    moment = datetime(2026, 11, 22, 10, 42, tzinfo=UTC) + timedelta(seconds=20)
    ms = int(moment.timestamp() * 1000)
    assert clock_time(ms) == moment.astimezone().strftime("%H:%M")
