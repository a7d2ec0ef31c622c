"""A stateful stand-in for the agent behind the control API, for the tray's tests.

``FakeAgent`` implements ``agent.control.ControlTarget``: it answers with the
result models of ``overt.wire.control_results`` and keeps just enough state (pause, consent, a
ledger, exemption requests) for a test to see that a click changed what the
agent does. Its clock is a callable returning epoch milliseconds, so unit
tests move time by hand and the real-tray test uses the wall clock.

``InProcessClient`` is a ``ControlClient`` that answers through
``agent.control.handle_request`` — the server's own parsing and encoding —
without a socket, so ``ControlAgentApi(client=...)`` runs its real wrapping
and reading in unit tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control import (
    AgentNotRunning,
    ControlClient,
    ControlError,
    ControlTarget,
    handle_request,
)
from agent.notice import consent_notice
from overt.wire.control import encode_request
from overt.wire.control_results import (
    ConsentOffer,
    DiscardReport,
    ExemptionRequestSent,
    LedgerReport,
    RequestedExemptions,
    Status,
)
from policies.verify import parse_policy_payload

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
#: 2026-11-22 12:00:00 UTC
T0_MS = 1_795_348_800_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def office_notice() -> dict[str, Any]:
    """The real notice the agent builds from the shipped office policy."""
    return consent_notice(parse_policy_payload((EXAMPLES / "office.json").read_bytes()))


class ManualClock:
    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class FakeBatch:
    seq: int
    start_ms: int
    end_ms: int
    apps: list[str]
    counts: dict[str, int]
    bytes: int
    state: str = "held"
    uploaded_at_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "batch_id": f"{self.seq:032x}",
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "apps": list(self.apps),
            "counts": dict(self.counts),
            "bytes": self.bytes,
            "state": self.state,
            "uploaded_at_ms": self.uploaded_at_ms,
            "destination": "https://collector.example" if self.state == "uploaded" else None,
        }


@dataclass
class FakeAgent:
    """What the tray can see of an agent, and what its commands change."""

    clock: Callable[[], int] = field(default_factory=ManualClock)
    policy_version: int = 3
    pause_max_minutes: int = 30
    consent: str | None = "accepted"  # None: not answered; "declined"
    blocked_reason: str | None = None  # e.g. "self_test_failed", "spool_full"
    current_app: tuple[str, bool] | None = ("LibreOffice Writer", True)
    paused_until_ms: int | None = None
    notice: dict[str, Any] = field(default_factory=office_notice)
    widening: list[str] = field(default_factory=list)
    batches: list[FakeBatch] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    exemptions_available: bool = True
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what the tray sees ---------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self.clock()

    @property
    def paused(self) -> bool:
        return self.paused_until_ms is not None and self.now_ms < self.paused_until_ms

    def reason(self) -> str:
        if self.blocked_reason:
            return self.blocked_reason
        if self.consent is None:
            return "no_consent"
        if self.consent == "declined":
            return "consent_declined"
        if self.paused:
            return "paused"
        if self.current_app is not None and not self.current_app[1]:
            return "not_allowed"
        return "capturing"

    def _status(self) -> dict[str, Any]:
        reason = self.reason()
        paused = self.paused
        return {
            "capturing": reason == "capturing",
            "reason": reason,
            "reason_text": f"(agent words for {reason})",
            "problem": None,
            "current_app": None
            if self.current_app is None
            else {"name": self.current_app[0], "allowed": self.current_app[1]},
            "paused_until_ms": self.paused_until_ms if paused else None,
            "pause_max_minutes": self.pause_max_minutes,
            "policy": {
                "version": self.policy_version,
                "expires": "2026-12-22T12:00:00Z",
                "organisation": "Example Corp",
            },
            "consent_needed": self.consent is None,
            "exemptions": [],
            "spool": {
                "batches": len(self.batches),
                "bytes": sum(b.bytes for b in self.batches),
                "budget": 256 << 20,
                "held": 0,
                "ready": 0,
                "dead": 0,
                "quarantined": 0,
            },
            "upload": {
                "state": "idle",
                "why": "",
                "last_success_ms": None,
                "today_bytes": 654_321,
                "daily_budget": 50 << 20,
            },
            "counts": {"batches_written": 0, "batches_held": 0, "events_seen": 0, "events_lost": 0},
            "now_ms": self.now_ms,
        }

    # -- ControlTarget ----------------------------------------------------------

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def status(self) -> Status:
        with self.lock:
            return Status.model_validate(self._status())

    def pause(self, minutes: int | None) -> Status:
        with self.lock:
            self._record("pause", minutes)
            length = min(minutes or self.pause_max_minutes, self.pause_max_minutes)
            self.paused_until_ms = self.now_ms + length * MINUTE_MS
            return Status.model_validate(self._status())

    def resume(self) -> Status:
        with self.lock:
            self._record("resume")
            self.paused_until_ms = None
            return Status.model_validate(self._status())

    def discard(self, minutes: int) -> DiscardReport:
        with self.lock:
            self._record("discard", minutes)
            since = self.now_ms - minutes * MINUTE_MS
            hit = [b for b in self.batches if b.end_ms >= since and b.state != "discarded"]
            uploaded = [b for b in hit if b.state == "uploaded"]
            for batch in hit:
                if batch.state != "uploaded":
                    batch.state = "discarded"
            return DiscardReport(
                batches_deleted=len(hit) - len(uploaded),
                events_dropped=7,
                erasure_requested=bool(uploaded),
                erasure_range=(since, self.now_ms) if uploaded else None,
            )

    def consent_show(self) -> ConsentOffer:
        with self.lock:
            return ConsentOffer.model_validate(
                {
                    "policy_version": self.policy_version,
                    "needed": self.consent is None,
                    "widening": list(self.widening),
                    "previous": None,
                    "notice": self.notice,
                }
            )

    def _answer(self, policy_version: int, answer: str) -> Status:
        with self.lock:
            self._record(f"consent_{answer}", policy_version)
            if policy_version != self.policy_version:
                raise ControlError("not_allowed", "that is not the policy in force")
            self.consent = "accepted" if answer == "accept" else "declined"
            return Status.model_validate(self._status())

    def consent_accept(self, policy_version: int) -> Status:
        return self._answer(policy_version, "accept")

    def consent_decline(self, policy_version: int) -> Status:
        return self._answer(policy_version, "decline")

    def exemption_request(
        self, category: str, reason: str, duration_days: int
    ) -> ExemptionRequestSent:
        with self.lock:
            self._record("exemption_request", category, reason, duration_days)
            if not self.exemptions_available:
                raise ControlError("unavailable", "this agent has no collector to send it to")
            request_id = f"req-{len(self.requests) + 1}"
            self.requests.append(
                {
                    "request_id": request_id,
                    "category": category,
                    "reason": reason,
                    "duration_days": duration_days,
                    "status": "pending",
                    "decided_at": None,
                    "decision_reason": None,
                    "grant_expires": None,
                }
            )
            return ExemptionRequestSent(request_id=request_id, status="pending")

    def exemption_list(self) -> RequestedExemptions:
        with self.lock:
            self._record("exemption_list")
            if not self.exemptions_available:
                raise ControlError("unavailable", "this agent has no collector to ask")
            return RequestedExemptions.model_validate({"requests": self.requests})

    def ledger(self, days: int) -> LedgerReport:
        with self.lock:
            self._record("ledger", days)
            since = self.now_ms - days * DAY_MS
            batches = [b.to_json() for b in self.batches if b.end_ms >= since]
            daily = []
            for back in range(min(days, 7) - 1, -1, -1):
                day_ms = self.now_ms - back * DAY_MS
                day = _day(day_ms)
                sent = sum(
                    b.bytes
                    for b in self.batches
                    if b.uploaded_at_ms is not None and _day(b.uploaded_at_ms) == day
                )
                daily.append({"day": day, "bytes_uploaded": sent, "budget": 50 << 20})
            return LedgerReport.model_validate({"batches": batches, "daily": daily})


def _day(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def sample_batches(now_ms: int) -> list[FakeBatch]:
    """A week of batches: uploaded ones on most days (one day over budget), and
    a few recent ones still held."""
    out = []
    seq = 1
    for back, megabytes in ((6, 12), (5, 30), (4, 0), (3, 61), (2, 22), (1, 8)):
        if not megabytes:
            continue
        start = now_ms - back * DAY_MS
        for part in range(2):
            out.append(
                FakeBatch(
                    seq,
                    start + part * 600_000,
                    start + part * 600_000 + 300_000,
                    ["LibreOffice Writer", "Firefox"] if part else ["Thunderbird"],
                    {
                        "clicks": 40 + seq,
                        "text_spans": 12,
                        "screenshots": 5,
                        "path_samples": 900,
                        "paths": 30,
                    },
                    megabytes << 19,
                    state="uploaded",
                    uploaded_at_ms=start + 3_600_000,
                )
            )
            seq += 1
    for minutes_ago in (12, 3):
        out.append(
            FakeBatch(
                seq,
                now_ms - minutes_ago * MINUTE_MS - 120_000,
                now_ms - minutes_ago * MINUTE_MS,
                ["LibreOffice Writer"],
                {"clicks": 9, "shortcuts": 4, "screenshots": 2},
                180_000,
            )
        )
        seq += 1
    return out


class InProcessClient(ControlClient):
    """A ControlClient answered by ``handle_request`` on ``target``, no socket.

    ``running = False`` makes every call raise AgentNotRunning.
    """

    def __init__(self, target: ControlTarget) -> None:
        super().__init__(Path("/nonexistent/agent.sock"))
        self.target = target
        self.running = True

    def call(self, cmd: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if not self.running:
            raise AgentNotRunning(self.path, "no socket")
        line = encode_request(cmd, args).rstrip(b"\n")
        response = handle_request(self.target, line)
        if response["ok"]:
            result: dict[str, Any] = response["result"]
            return result
        raise ControlError(response["error"], response["message"])
