"""The running agent as a control target: what ``overt status|pause|…`` reaches.

This module owns :class:`AgentControlTarget`, the adapter from the capture
:class:`~agent.app.Agent` to :class:`agent.control.ControlTarget`, and the
shape of the JSON objects it answers with (``docs/CONTROL.md``). It decides
no capture rule itself: pause lengths are clamped by the agent's pause state,
consent is judged by ``agent.pipeline.consent``, and the notice is
``agent.notice``.

What the Agent offers today is used directly (status, pause, resume). The
rest is injected through :class:`ControlParts`, one optional part per
concern, so that consent at run time, the spool, the uploader and the
collector client can be connected as they arrive; a command whose part is
missing is refused with ``ControlError("unavailable", …)`` and changes
nothing, and a status member whose part is missing is ``null``. Parts may
raise :class:`~agent.control.ControlError` to refuse; any other exception
becomes an ``internal`` answer at the server. A part that answers with an
object of the wrong shape is an ``internal`` error too (logged by key name),
never passed on to the tray.

The policy in force comes from the ``policy`` callable (the Agent's own);
it is used only when its version is the one the Agent's status reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.control import MAX_EXEMPTION_DAYS, ControlError, JSONObject, exemption_too_long
from agent.local_state import LocalStateError
from agent.notice import consent_changes, consent_needed, consent_notice
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.pipeline.pause import DEFAULT_MAX_MINUTES
from policies.model import Policy

if TYPE_CHECKING:
    from agent.app import AgentStatus
    from agent.pipeline.pause import PauseState

log = logging.getLogger(__name__)

_NO_COLLECTOR = (
    "Exemption requests go through the collector, and this agent is not connected to one."
)

#: The sentence shown for each reason (``reason_text`` of the status object).
REASON_TEXT: dict[Reason, str] = {
    Reason.CAPTURING: "Capturing in allow-listed apps",
    Reason.NO_POLICY: "No capture policy is installed, so nothing is captured",
    Reason.POLICY_EXPIRED: "The capture policy has expired; nothing is captured until IT "
    "sends a new one",
    Reason.NO_CONSENT: "Waiting for your consent to the capture notice",
    Reason.CONSENT_DECLINED: "You declined the capture notice, so nothing is captured",
    Reason.CONSENT_OUTDATED: "The policy now captures more than you agreed to; nothing is "
    "captured until you answer the new notice",
    Reason.SELF_TEST_FAILED: "The privacy filter self-test failed, so nothing is captured",
    Reason.PAUSED: "Paused by you",
    Reason.EXEMPT: "You are exempt from capture",
    Reason.SPOOL_FULL: "Capture is stopped because captured batches cannot be stored",
    Reason.NO_WINDOW: "No window has focus",
    Reason.NOT_ALLOWED: "This app is not on the allow-list",
    Reason.NEVER_CAPTURED: "This app is never captured",
    Reason.TITLE_SKIPPED: "This window is excluded by a title rule",
}


# ------------------------------------------------------------ the injected parts


@dataclass(frozen=True, slots=True)
class CurrentApp:
    """The app that has focus, by its policy name (or a generic label), and
    whether it is captured."""

    name: str
    allowed: bool


class RunningAgent(Protocol):
    """What the adapter uses of :class:`agent.app.Agent`."""

    def status(self) -> AgentStatus: ...

    def pause(self, minutes: float | None = None) -> PauseState: ...

    def resume(self) -> None: ...


#: The keys each wire-shaped part must answer with (docs/CONTROL.md).
SPOOL_KEYS = ("batches", "bytes", "budget", "held", "ready", "dead", "quarantined")
UPLOAD_KEYS = ("state", "why", "last_success_ms", "today_bytes", "daily_budget")
DISCARD_KEYS = ("batches_deleted", "events_dropped", "erasure_requested", "erasure_range")
EXEMPTION_REQUEST_KEYS = ("request_id", "status")
EXEMPTION_LIST_KEYS = ("requests",)
LEDGER_KEYS = ("batches", "daily")


@dataclass(frozen=True)
class ControlParts:
    """The agent's parts besides the Agent object; None means "not in this agent".

    The parts that answer with a JSON object answer with exactly the object
    docs/CONTROL.md gives for it (``Spool.stats(now).to_dict()``,
    ``UploadStatus.to_dict()``, ``Ledger.report(…)`` and the collector's
    exemption answers have those shapes); the adapter checks the keys and
    passes the object on.
    """

    #: Record an answer to the notice durably (``LocalState.save_consent``)
    #: and apply it to capture at once: the Agent's method for it.
    apply_consent: Callable[[ConsentRecord], None] | None = None
    #: The status object's ``spool`` member.
    spool_state: Callable[[], Mapping[str, Any]] | None = None
    #: The status object's ``upload`` member.
    upload_state: Callable[[], Mapping[str, Any]] | None = None
    #: ``discard`` (minutes) -> its result: spool, pipeline buffers, erasure request.
    discard: Callable[[int], Mapping[str, Any]] | None = None
    #: ``exemption.request`` (category, reason, duration_days) -> its result.
    request_exemption: Callable[[str, str, int], Mapping[str, Any]] | None = None
    #: ``exemption.list`` -> its result.
    list_exemptions: Callable[[], Mapping[str, Any]] | None = None
    #: ``ledger`` (days) -> its result.
    ledger: Callable[[int], Mapping[str, Any]] | None = None


def _checked(part: str, value: object, keys: Sequence[str]) -> JSONObject:
    """A part's answer as a dict, if it has the keys of its wire shape."""
    if not isinstance(value, Mapping):
        log.error("control part %s answered with %s, not an object", part, type(value).__name__)
        raise ControlError("internal", f"the agent's {part} gave a malformed answer")
    missing = [key for key in keys if key not in value]
    if missing:
        log.error("control part %s answered without %s", part, missing[0])
        raise ControlError("internal", f"the agent's {part} gave a malformed answer")
    return dict(value)


# ------------------------------------------------------------ the adapter


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AgentControlTarget:
    """Answers control commands from a running :class:`~agent.app.Agent`.

    ``policy`` returns the verified policy in force (or None), ``consent``
    the answer on record (or None; it may raise ``LocalStateError``), and
    ``clock`` the agent's wall clock in epoch seconds.
    """

    def __init__(
        self,
        agent: RunningAgent,
        *,
        policy: Callable[[], Policy | None],
        consent: Callable[[], ConsentRecord | None],
        clock: Callable[[], float],
        parts: ControlParts | None = None,
    ) -> None:
        self._agent = agent
        self._policy = policy
        self._consent = consent
        self._clock = clock
        self._parts = parts if parts is not None else ControlParts()

    # ------------------------------------------------------------ commands

    def status(self) -> JSONObject:
        agent_status = self._agent.status()
        now = self._clock()
        policy = self._policy_in_force(agent_status.policy_version)
        parts = self._parts
        current = (
            None
            if agent_status.current_app is None
            else CurrentApp(agent_status.current_app, agent_status.current_app_allowed)
        )
        exemptions = [
            {"category": g.category.value, "expires": _iso(g.expires)}
            for g in agent_status.grants
            if now < g.expires.timestamp()
        ]
        spool = upload = None
        if parts.spool_state is not None:
            spool = _checked("spool", parts.spool_state(), SPOOL_KEYS)
        if parts.upload_state is not None:
            upload = _checked("uploader", parts.upload_state(), UPLOAD_KEYS)
        reason = agent_status.reason
        return {
            "capturing": agent_status.capturing,
            "reason": reason.value,
            "reason_text": REASON_TEXT.get(reason, reason.value),
            "problem": agent_status.problem,
            "current_app": (
                None if current is None else {"name": current.name, "allowed": current.allowed}
            ),
            "paused_until_ms": (
                None if agent_status.paused_until is None else _ms(agent_status.paused_until)
            ),
            "pause_max_minutes": (
                DEFAULT_MAX_MINUTES if policy is None else policy.pause.max_minutes
            ),
            "policy": self._policy_summary(agent_status.policy_version, policy),
            "consent_needed": self._consent_needed(reason, policy),
            "exemptions": exemptions,
            "spool": spool,
            "upload": upload,
            "counts": {
                "batches_written": agent_status.batches_written,
                "batches_held": agent_status.batches_held,
                "events_seen": agent_status.events_seen,
                "events_lost": agent_status.events_lost,
            },
            "now_ms": _ms(now),
        }

    def pause(self, minutes: int | None) -> JSONObject:
        self._agent.pause(None if minutes is None else float(minutes))
        log.info("paused through the control API")
        return self.status()

    def resume(self) -> JSONObject:
        self._agent.resume()
        log.info("resumed through the control API")
        return self.status()

    def discard(self, minutes: int) -> JSONObject:
        discard = self._parts.discard
        if discard is None:
            raise ControlError(
                "unavailable",
                "This agent keeps no spool to discard from yet. Nothing was discarded.",
            )
        result = _checked("spool", discard(minutes), DISCARD_KEYS)
        log.info("discarded the last %d minutes", minutes)
        return result

    def consent_show(self) -> JSONObject:
        policy = self._require_policy()
        record = self._record()
        previous = None
        if record is not None:
            previous = {
                "accepted": record.accepted,
                "policy_version": record.policy_version,
                "at_ms": _ms(record.at),
            }
        return {
            "policy_version": policy.version,
            "needed": consent_needed(record, policy),
            "widening": consent_changes(record, policy),
            "previous": previous,
            "notice": consent_notice(policy),
        }

    def consent_accept(self, policy_version: int) -> JSONObject:
        return self._answer(policy_version, accepted=True)

    def consent_decline(self, policy_version: int) -> JSONObject:
        return self._answer(policy_version, accepted=False)

    def exemption_request(self, category: str, reason: str, duration_days: int) -> JSONObject:
        request = self._parts.request_exemption
        if request is None:
            raise ControlError("unavailable", _NO_COLLECTOR)
        if duration_days > MAX_EXEMPTION_DAYS:
            # The server refuses it first; this guards other callers.
            raise ControlError("bad_request", exemption_too_long(duration_days))
        result = _checked(
            "collector client",
            request(category, reason, duration_days),
            EXEMPTION_REQUEST_KEYS,
        )
        log.info("exemption request sent")
        return result

    def exemption_list(self) -> JSONObject:
        listing = self._parts.list_exemptions
        if listing is None:
            raise ControlError("unavailable", _NO_COLLECTOR)
        return _checked("collector client", listing(), EXEMPTION_LIST_KEYS)

    def ledger(self, days: int) -> JSONObject:
        ledger = self._parts.ledger
        if ledger is None:
            raise ControlError("unavailable", "This agent keeps no ledger yet: it has no spool.")
        return _checked("ledger", ledger(days), LEDGER_KEYS)

    # ------------------------------------------------------------ internals

    def _policy_in_force(self, version: int | None) -> Policy | None:
        """The policy object for the version the agent reports, if it can be read."""
        if version is None:
            return None
        policy = self._policy()
        if policy is None or policy.version != version:
            return None
        return policy

    def _require_policy(self) -> Policy:
        policy = self._policy_in_force(self._agent.status().policy_version)
        if policy is None:
            raise ControlError(
                "unavailable", "No capture policy is in force, so there is no notice to answer."
            )
        return policy

    def _record(self) -> ConsentRecord | None:
        try:
            return self._consent()
        except LocalStateError as exc:
            raise ControlError("unavailable", f"Your consent record cannot be read: {exc}") from exc

    @staticmethod
    def _policy_summary(version: int | None, policy: Policy | None) -> JSONObject | None:
        if version is None:
            return None
        if policy is None:
            return {"version": version, "expires": None, "organisation": None}
        return {
            "version": policy.version,
            "expires": _iso(policy.expires),
            "organisation": policy.notice.organisation,
        }

    def _consent_needed(self, reason: Reason, policy: Policy | None) -> bool:
        if reason in (Reason.NO_CONSENT, Reason.CONSENT_OUTDATED):
            return True
        if policy is None:
            return False
        try:
            return consent_needed(self._consent(), policy)
        except LocalStateError:
            log.warning("the consent record cannot be read")
            return True

    def _answer(self, policy_version: int, *, accepted: bool) -> JSONObject:
        policy = self._require_policy()
        if policy_version != policy.version:
            raise ControlError(
                "not_allowed",
                f"The notice you answered is for policy version {policy_version}, but version "
                f"{policy.version} is in force: read the current notice and answer again.",
            )
        apply = self._parts.apply_consent
        if apply is None:
            raise ControlError(
                "unavailable",
                "This agent cannot take consent while it runs yet: give it with "
                "`overt agent consent` and restart the agent. Nothing was recorded.",
            )
        make = ConsentRecord.accept if accepted else ConsentRecord.decline
        apply(make(policy, self._clock()))
        answer = "accepted" if accepted else "declined"
        log.info("consent %s for policy version %d", answer, policy.version)
        return self.status()
