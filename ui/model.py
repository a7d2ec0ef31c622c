"""The agent's answers as typed values, parsed from the control API's JSON.

This module owns the shapes of docs/CONTROL.md as the tray reads them:
``AgentStatus``, ``ConsentOffer``, ``DiscardResult``, ``ExemptionRequest``,
``Ledger``, and one ``parse_*`` function per command result. Each parser takes
the decoded ``result`` object and returns a frozen value or raises
:class:`~ui.errors.BadReply` naming the field that is wrong ("status.now_ms:
expected an integer, got str"). Unknown extra fields are ignored, so a newer
agent that adds fields still talks to this tray; missing required fields and
wrong types are errors, never silently defaulted.

It does not own the transport (``agent.control``) nor any wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ui.errors import BadReply

JSON = Any


class _Fields:
    """Typed access to one JSON object, with the path in every error."""

    def __init__(self, value: JSON, path: str) -> None:
        if not isinstance(value, Mapping):
            raise BadReply(f"{path}: expected an object, got {_kind(value)}")
        self._value: Mapping[str, JSON] = value
        self._path = path

    def _get(self, name: str, required: bool) -> JSON:
        if name not in self._value:
            if required:
                raise BadReply(f"{self._path}.{name}: missing")
            return None
        return self._value[name]

    def _wrong(self, name: str, expected: str, value: JSON) -> BadReply:
        return BadReply(f"{self._path}.{name}: expected {expected}, got {_kind(value)}")

    def integer(self, name: str, *, minimum: int | None = 0) -> int:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise BadReply(f"{self._path}.{name}: must be at least {minimum}, got {value}")
        return value

    def opt_integer(self, name: str) -> int | None:
        if self._get(name, False) is None:
            return None
        return self.integer(name)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self._get(name, default is None)
        if value is None and default is not None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false", value)
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value = self._get(name, default is None)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        return value

    def opt_text(self, name: str) -> str | None:
        if self._get(name, False) is None:
            return None
        return self.text(name)

    def items(self, name: str, *, required: bool = True) -> list[JSON]:
        value = self._get(name, required)
        if value is None and not required:
            return []
        if not isinstance(value, list):
            raise self._wrong(name, "a list", value)
        return value

    def obj(self, name: str) -> _Fields:
        return _Fields(self._get(name, True), f"{self._path}.{name}")

    def opt_obj(self, name: str) -> _Fields | None:
        value = self._get(name, False)
        return None if value is None else _Fields(value, f"{self._path}.{name}")

    def raw(self, name: str) -> JSON:
        return self._get(name, False)

    def path(self, name: str) -> str:
        return f"{self._path}.{name}"


def _kind(value: JSON) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _strings(values: list[JSON], path: str) -> tuple[str, ...]:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise BadReply(f"{path}[{i}]: expected a string, got {_kind(value)}")
    return tuple(values)


# -- status -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurrentApp:
    name: str
    allowed: bool


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    version: int
    expires: str
    organisation: str


@dataclass(frozen=True, slots=True)
class ExemptionInForce:
    category: str
    expires: str


@dataclass(frozen=True, slots=True)
class SpoolInfo:
    batches: int
    bytes: int
    budget: int
    held: int
    ready: int
    dead: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class UploadInfo:
    state: str
    why: str
    last_success_ms: int | None
    today_bytes: int
    daily_budget: int


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The control API's status object (docs/CONTROL.md, "The status object")."""

    capturing: bool
    reason: str
    reason_text: str
    now_ms: int
    pause_max_minutes: int
    paused_until_ms: int | None = None
    current_app: CurrentApp | None = None
    policy: PolicyInfo | None = None
    consent_needed: bool = False
    exemptions: tuple[ExemptionInForce, ...] = ()
    spool: SpoolInfo | None = None
    upload: UploadInfo | None = None
    #: What is wrong, in the agent's words (a full disk, a policy problem), if anything.
    problem: str | None = None

    @property
    def paused(self) -> bool:
        return self.paused_until_ms is not None and self.paused_until_ms > self.now_ms

    @property
    def pause_remaining_ms(self) -> int:
        if self.paused_until_ms is None:
            return 0
        return max(0, self.paused_until_ms - self.now_ms)


def parse_status(result: JSON) -> AgentStatus:
    f = _Fields(result, "status")
    current = f.opt_obj("current_app")
    policy = f.opt_obj("policy")
    spool = f.opt_obj("spool")
    upload = f.opt_obj("upload")
    exemptions = []
    for i, item in enumerate(f.items("exemptions", required=False)):
        e = _Fields(item, f"{f.path('exemptions')}[{i}]")
        exemptions.append(ExemptionInForce(e.text("category"), e.text("expires", "")))
    return AgentStatus(
        capturing=f.boolean("capturing"),
        reason=f.text("reason"),
        reason_text=f.text("reason_text", ""),
        now_ms=f.integer("now_ms"),
        pause_max_minutes=f.integer("pause_max_minutes", minimum=1),
        paused_until_ms=f.opt_integer("paused_until_ms"),
        current_app=None
        if current is None
        else CurrentApp(current.text("name"), current.boolean("allowed")),
        policy=None
        if policy is None
        else PolicyInfo(
            policy.integer("version"), policy.text("expires", ""), policy.text("organisation", "")
        ),
        consent_needed=f.boolean("consent_needed", False),
        problem=f.opt_text("problem"),
        exemptions=tuple(exemptions),
        spool=None
        if spool is None
        else SpoolInfo(
            batches=spool.integer("batches"),
            bytes=spool.integer("bytes"),
            budget=spool.integer("budget"),
            held=spool.integer("held"),
            ready=spool.integer("ready"),
            dead=spool.integer("dead"),
            quarantined=spool.integer("quarantined"),
        ),
        upload=None
        if upload is None
        else UploadInfo(
            state=upload.text("state"),
            why=upload.text("why", ""),
            last_success_ms=upload.opt_integer("last_success_ms"),
            today_bytes=upload.integer("today_bytes"),
            daily_budget=upload.integer("daily_budget"),
        ),
    )


# -- discard ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscardResult:
    batches_deleted: int
    events_dropped: int
    erasure_requested: bool
    erasure_range: tuple[int, int] | None


def parse_discard(result: JSON) -> DiscardResult:
    f = _Fields(result, "discard")
    raw_range = f.raw("erasure_range")
    erasure_range: tuple[int, int] | None = None
    if raw_range is not None:
        ok = (
            isinstance(raw_range, list)
            and len(raw_range) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in raw_range)
        )
        if not ok:
            raise BadReply("discard.erasure_range: expected [start_ms, end_ms] or null")
        erasure_range = (raw_range[0], raw_range[1])
    return DiscardResult(
        batches_deleted=f.integer("batches_deleted"),
        events_dropped=f.integer("events_dropped"),
        erasure_requested=f.boolean("erasure_requested", False),
        erasure_range=erasure_range,
    )


# -- consent ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentOffer:
    """``consent.show``: the notice of the policy in force and whether to ask.

    ``widening`` lists, in words, what this policy captures beyond what was
    consented to before (empty for a first notice or when the agent only
    says that it widens without saying how; ``widens`` is the flag).
    ``notice`` is the notice object as sent: ``ui.notice_text`` reads it.
    """

    policy_version: int
    needed: bool
    widens: bool
    widening: tuple[str, ...]
    notice: Mapping[str, JSON]


def parse_consent_offer(result: JSON) -> ConsentOffer:
    f = _Fields(result, "consent")
    raw = f.raw("widening")
    widening: tuple[str, ...] = ()
    if raw is None or isinstance(raw, bool):
        widens = bool(raw)
    elif isinstance(raw, list):
        widening = _strings(raw, f.path("widening"))
        widens = bool(widening)
    else:
        raise BadReply(f"consent.widening: expected true/false or a list, got {_kind(raw)}")
    notice = f.raw("notice")
    if not isinstance(notice, Mapping):
        raise BadReply(f"consent.notice: expected an object, got {_kind(notice)}")
    return ConsentOffer(
        policy_version=f.integer("policy_version", minimum=1),
        needed=f.boolean("needed"),
        widens=widens,
        widening=widening,
        notice=notice,
    )


# -- exemptions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExemptionRequest:
    request_id: str
    category: str
    reason: str
    duration_days: int
    status: str
    decided_at: str | None
    decision_reason: str | None
    grant_expires: str | None


def parse_exemption_list(result: JSON) -> tuple[ExemptionRequest, ...]:
    f = _Fields(result, "exemptions")
    out = []
    for i, item in enumerate(f.items("requests")):
        r = _Fields(item, f"exemptions.requests[{i}]")
        out.append(
            ExemptionRequest(
                request_id=r.text("request_id"),
                category=r.text("category"),
                reason=r.text("reason", ""),
                duration_days=r.integer("duration_days"),
                status=r.text("status"),
                decided_at=r.opt_text("decided_at"),
                decision_reason=r.opt_text("decision_reason"),
                grant_expires=r.opt_text("grant_expires"),
            )
        )
    return tuple(out)


def parse_exemption_submitted(result: JSON) -> str:
    """``exemption.request``: the new request's id."""
    return _Fields(result, "exemption").text("request_id")


# -- ledger -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerBatch:
    seq: int
    batch_id: str
    start_ms: int
    end_ms: int
    apps: tuple[str, ...]
    counts: Mapping[str, int]
    bytes: int
    state: str
    uploaded_at_ms: int | None
    destination: str | None


@dataclass(frozen=True, slots=True)
class LedgerDay:
    day: str
    bytes_uploaded: int
    budget: int


@dataclass(frozen=True, slots=True)
class Ledger:
    batches: tuple[LedgerBatch, ...]
    daily: tuple[LedgerDay, ...]


def parse_ledger(result: JSON) -> Ledger:
    f = _Fields(result, "ledger")
    batches = []
    for i, item in enumerate(f.items("batches")):
        path = f"ledger.batches[{i}]"
        b = _Fields(item, path)
        counts_raw = b.raw("counts") or {}
        if not isinstance(counts_raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in counts_raw.items()
        ):
            raise BadReply(f"{path}.counts: expected an object of integers")
        batches.append(
            LedgerBatch(
                seq=b.integer("seq"),
                batch_id=b.text("batch_id"),
                start_ms=b.integer("start_ms"),
                end_ms=b.integer("end_ms"),
                apps=_strings(b.items("apps", required=False), f"{path}.apps"),
                counts=dict(counts_raw),
                bytes=b.integer("bytes"),
                state=b.text("state"),
                uploaded_at_ms=b.opt_integer("uploaded_at_ms"),
                destination=b.opt_text("destination"),
            )
        )
    daily = []
    for i, item in enumerate(f.items("daily", required=False)):
        d = _Fields(item, f"ledger.daily[{i}]")
        daily.append(LedgerDay(d.text("day"), d.integer("bytes_uploaded"), d.integer("budget")))
    return Ledger(tuple(batches), tuple(daily))
