"""The running agent as a control target: what ``overt status|pause|…`` reaches.

This module owns :class:`AgentControlTarget`, the adapter from the capture
:class:`~agent.app.Agent` to :class:`agent.control.ControlTarget`: it reads
the agent and its parts and answers with the result models of
``overt.wire.control_results``. It decides no capture rule itself: pause
lengths are clamped by the agent's pause state, consent is judged by
``agent.pipeline.consent``, and the notice is ``agent.notice``.

What the Agent offers is used directly (status, pause, resume). The rest is
injected through :class:`ControlParts`, one optional part per concern (the
spool, the uploader, the collector client, consent at run time); a command
whose part is missing is refused with ``ControlError("unavailable", …)`` and
changes nothing, and a status member whose part is missing is ``null``.
Parts may raise :class:`~agent.control.ControlError` to refuse; any other
exception becomes an ``internal`` answer at the server. A part that answers
with an object its result model does not accept is an ``internal`` error
too (logged by the field's name, never its value), never passed on to the
tray.

The policy in force comes from the ``policy`` callable (the Agent's own);
it is used only when its version is the one the Agent's status reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from agent.control import ControlError
from agent.local_state import LocalStateError
from agent.notice import consent_changes, consent_needed, consent_notice
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import Reason
from agent.pipeline.pause import DEFAULT_MAX_MINUTES
from overt.wire.control import MAX_EXEMPTION_DAYS, exemption_too_long
from overt.wire.control_results import (
    REASON_TEXT,
    ConsentOffer,
    ConsentOnRecord,
    CurrentApp,
    DiscardReport,
    ExemptionInForce,
    ExemptionRequestSent,
    LedgerReport,
    PolicySummary,
    RequestedExemptions,
    SpoolSummary,
    Status,
    StatusCounts,
    UploadSummary,
)
from overt.wire.notice import CaptureNotice
from policies.model import Policy

if TYPE_CHECKING:
    from agent.app import AgentStatus
    from agent.pipeline.pause import PauseState

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_NO_COLLECTOR = (
    "Exemption requests go through the collector, and this agent is not connected to one."
)


# ------------------------------------------------------------ the injected parts


class RunningAgent(Protocol):
    """What the adapter uses of :class:`agent.app.Agent`."""

    def status(self) -> AgentStatus: ...

    def pause(self, minutes: float | None = None) -> PauseState: ...

    def resume(self) -> None: ...


@dataclass(frozen=True)
class ControlParts:
    """The agent's parts besides the Agent object; None means "not in this agent".

    The parts answer with the JSON object of their result model
    (``Spool.stats(now).to_dict()``, ``UploadStatus.to_dict()``,
    ``Ledger.report(…)`` and the collector's exemption answers have those
    shapes); the adapter reads it with the model and answers with that.
    """

    #: Record an answer to the notice durably (``LocalState.save_consent``)
    #: and apply it to capture at once: the Agent's method for it.
    apply_consent: Callable[[ConsentRecord], None] | None = None
    #: The status object's ``spool`` member (``SpoolSummary``).
    spool_state: Callable[[], Mapping[str, Any]] | None = None
    #: The status object's ``upload`` member (``UploadSummary``).
    upload_state: Callable[[], Mapping[str, Any]] | None = None
    #: ``discard`` (minutes) -> its result: spool, pipeline buffers, erasure request.
    discard: Callable[[int], Mapping[str, Any]] | None = None
    #: ``exemption.request`` (category, reason, duration_days) -> its result.
    request_exemption: Callable[[str, str, int], Mapping[str, Any]] | None = None
    #: ``exemption.list`` -> its result.
    list_exemptions: Callable[[], Mapping[str, Any]] | None = None
    #: ``ledger`` (days) -> its result.
    ledger: Callable[[int], Mapping[str, Any]] | None = None


def _checked(part: str, value: object, model: type[M]) -> M:
    """A part's answer read with its model; ``internal`` if the model refuses it."""
    try:
        return model.model_validate(dict(value) if isinstance(value, Mapping) else value)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "its answer"
        # The field's name only: the value may be anything, even content.
        log.error("control part %s answered with a malformed %s", part, where)
        raise ControlError("internal", f"the agent's {part} gave a malformed answer") from None


# ------------------------------------------------------------ the adapter


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _utc(value: datetime) -> str:
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

    def status(self) -> Status:
        agent_status = self._agent.status()
        now = self._clock()
        policy = self._policy_in_force(agent_status.policy_version)
        parts = self._parts
        spool = upload = None
        if parts.spool_state is not None:
            spool = _checked("spool", parts.spool_state(), SpoolSummary)
        if parts.upload_state is not None:
            upload = _checked("uploader", parts.upload_state(), UploadSummary)
        reason = agent_status.reason
        return Status(
            capturing=agent_status.capturing,
            reason=reason.value,
            reason_text=REASON_TEXT.get(reason.value, reason.value),
            problem=agent_status.problem,
            current_app=(
                None
                if agent_status.current_app is None
                else CurrentApp(
                    name=agent_status.current_app, allowed=agent_status.current_app_allowed
                )
            ),
            paused_until_ms=(
                None if agent_status.paused_until is None else _ms(agent_status.paused_until)
            ),
            pause_max_minutes=DEFAULT_MAX_MINUTES if policy is None else policy.pause.max_minutes,
            policy=self._policy_summary(agent_status.policy_version, policy),
            consent_needed=self._consent_needed(reason, policy),
            exemptions=tuple(
                ExemptionInForce(category=g.category.value, expires=_utc(g.expires))
                for g in agent_status.grants
                if now < g.expires.timestamp()
            ),
            spool=spool,
            upload=upload,
            counts=StatusCounts(
                batches_written=agent_status.batches_written,
                batches_held=agent_status.batches_held,
                events_seen=agent_status.events_seen,
                events_lost=agent_status.events_lost,
            ),
            now_ms=_ms(now),
        )

    def pause(self, minutes: int | None) -> Status:
        self._agent.pause(None if minutes is None else float(minutes))
        log.info("paused through the control API")
        return self.status()

    def resume(self) -> Status:
        self._agent.resume()
        log.info("resumed through the control API")
        return self.status()

    def discard(self, minutes: int) -> DiscardReport:
        discard = self._parts.discard
        if discard is None:
            raise ControlError(
                "unavailable",
                "This agent keeps no spool to discard from yet. Nothing was discarded.",
            )
        result = _checked("spool", discard(minutes), DiscardReport)
        log.info("discarded the last %d minutes", minutes)
        return result

    def consent_show(self) -> ConsentOffer:
        policy = self._require_policy()
        record = self._record()
        previous = None
        if record is not None:
            previous = ConsentOnRecord(
                accepted=record.accepted, policy_version=record.policy_version, at_ms=_ms(record.at)
            )
        return ConsentOffer(
            policy_version=policy.version,
            needed=consent_needed(record, policy),
            widening=tuple(consent_changes(record, policy)),
            previous=previous,
            notice=_checked("notice", consent_notice(policy), CaptureNotice),
        )

    def consent_accept(self, policy_version: int) -> Status:
        return self._answer(policy_version, accepted=True)

    def consent_decline(self, policy_version: int) -> Status:
        return self._answer(policy_version, accepted=False)

    def exemption_request(
        self, category: str, reason: str, duration_days: int
    ) -> ExemptionRequestSent:
        request = self._parts.request_exemption
        if request is None:
            raise ControlError("unavailable", _NO_COLLECTOR)
        if duration_days > MAX_EXEMPTION_DAYS:
            # The server refuses it first; this guards other callers.
            raise ControlError("bad_request", exemption_too_long(duration_days))
        result = _checked(
            "collector client", request(category, reason, duration_days), ExemptionRequestSent
        )
        log.info("exemption request sent")
        return result

    def exemption_list(self) -> RequestedExemptions:
        listing = self._parts.list_exemptions
        if listing is None:
            raise ControlError("unavailable", _NO_COLLECTOR)
        return _checked("collector client", listing(), RequestedExemptions)

    def ledger(self, days: int) -> LedgerReport:
        ledger = self._parts.ledger
        if ledger is None:
            raise ControlError("unavailable", "This agent keeps no ledger yet: it has no spool.")
        return _checked("ledger", ledger(days), LedgerReport)

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
    def _policy_summary(version: int | None, policy: Policy | None) -> PolicySummary | None:
        if version is None:
            return None
        if policy is None:
            return PolicySummary(version=version, expires=None, organisation=None)
        return PolicySummary(
            version=policy.version,
            expires=_utc(policy.expires),
            organisation=policy.notice.organisation,
        )

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

    def _answer(self, policy_version: int, *, accepted: bool) -> Status:
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
