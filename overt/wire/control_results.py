"""The result objects of the control API (version 1): what each command answers.

This module owns the models of every command's result — the status object
and its parts, the discard report, the consent offer, exemption requests
and the ledger — and :data:`REASON_TEXT`, the reasons a status may give with
the sentence the agent sends for each. ``overt.wire.control`` ties each
model to its command; the agent answers with these models and the tray and
the CLI read them. ``docs/CONTROL.md`` is generated from the declarations
and their descriptions.

A result may carry fields this version does not know (a newer agent): they
are ignored. A known field that is missing or of the wrong type makes the
result unreadable, never defaulted — except the few marked with a default,
which an agent leaves out when it has nothing to say.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .notice import CaptureNotice

#: The categories of exemption (``policies.model.Category``'s values).
ExemptionCategory = Literal["bandwidth", "sensitive", "battery", "other"]
CATEGORIES: tuple[str, ...] = ("bandwidth", "sensitive", "battery", "other")

#: The reasons a status may give (the decision engine's), each with the
#: sentence the agent sends beside it as ``reason_text``. A newer agent may
#: send a reason not listed here; a client then shows its ``reason_text``.
REASON_TEXT: dict[str, str] = {
    "capturing": "Capturing in allow-listed apps",
    "no_policy": "No capture policy is installed, so nothing is captured",
    "policy_expired": "The capture policy has expired; nothing is captured until IT "
    "sends a new one",
    "no_consent": "Waiting for your consent to the capture notice",
    "consent_declined": "You declined the capture notice, so nothing is captured",
    "consent_outdated": "The policy now captures more than you agreed to; nothing is "
    "captured until you answer the new notice",
    "self_test_failed": "The privacy filter self-test failed, so nothing is captured",
    "paused": "Paused by you",
    "exempt": "You are exempt from capture",
    "spool_full": "Capture is stopped because captured batches cannot be stored",
    "no_window": "No window has focus",
    "not_allowed": "This app is not on the allow-list",
    "never_captured": "This app is never captured",
    "title_skipped": "This window is excluded by a title rule",
}


class Result(BaseModel):
    """Base of every result object: fields this version does not know are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


_Count = Annotated[StrictInt, Field(ge=0)]
_Ms = Annotated[StrictInt, Field(ge=0)]


class CurrentApp(Result):
    name: StrictStr = Field(description="the app's policy name, or a generic label")
    allowed: StrictBool = Field(description="whether it is captured")


class PolicySummary(Result):
    version: StrictInt = Field(ge=1, description="the policy in force")
    expires: StrictStr | None = Field(description="ISO 8601; null if the agent cannot show it")
    organisation: StrictStr | None = Field(description="null if the agent cannot show it")


class ExemptionInForce(Result):
    category: ExemptionCategory = Field(description="what the grant exempts from")
    expires: StrictStr = Field(description="ISO 8601 in UTC")


class SpoolSummary(Result):
    batches: _Count = Field(description="batches on this machine")
    bytes: _Count = Field(description="their size")
    budget: _Count = Field(description="the spool's size limit")
    held: _Count = Field(description="waiting out the review window")
    ready: _Count = Field(description="waiting to be uploaded")
    dead: _Count = Field(description="refused by the collector")
    quarantined: _Count = Field(description="failed their integrity check")


UploadStateName = Literal["idle", "uploading", "waiting", "not_enrolled", "blocked"]


class UploadSummary(Result):
    state: UploadStateName = Field(
        description="waiting: backing off, or a policy condition (AC power, an unmetered "
        "network) does not hold; blocked: cannot upload"
    )
    why: StrictStr = Field(description="why waiting or blocked, in words; else empty")
    last_success_ms: _Ms | None = Field(description="the last accepted upload")
    today_bytes: _Count = Field(description="uploaded today")
    daily_budget: _Count = Field(description="today's limit")
    next_attempt_ms: _Ms | None = Field(None, description="when the uploader tries again")


class StatusCounts(Result):
    batches_written: _Count = Field(description="batches handed to the spool")
    batches_held: _Count = Field(description="held while the spool could not take them")
    events_seen: _Count = Field(description="input events that reached the pipeline")
    events_lost: _Count = Field(description="input events lost before it (queue overflow)")


class Status(Result):
    """The status object: is capture on, where, and why not."""

    capturing: StrictBool = Field(description="capture is on for some window")
    reason: StrictStr = Field(description="one of the reasons below (a newer agent may add one)")
    reason_text: StrictStr = Field(description="the reason as a sentence to show a person")
    problem: StrictStr | None = Field(
        description="what is wrong with the policy, the self-test or the batch store, in words"
    )
    current_app: CurrentApp | None = Field(description="null: no window has focus")
    paused_until_ms: _Ms | None = Field(description="the agent's clock; null: not paused")
    pause_max_minutes: StrictInt = Field(ge=1, description="the longest pause the policy allows")
    policy: PolicySummary | None = Field(description="null: no policy in force")
    consent_needed: StrictBool = Field(description="the person's answer to the notice is needed")
    exemptions: tuple[ExemptionInForce, ...] = Field(description="grants in force; [] for none")
    spool: SpoolSummary | None = Field(description="null: this agent does not report it")
    upload: UploadSummary | None = Field(description="null: this agent does not report it")
    counts: StatusCounts = Field(description="since the agent started")
    now_ms: _Ms = Field(description="the agent's clock")

    @property
    def paused(self) -> bool:
        return self.paused_until_ms is not None and self.paused_until_ms > self.now_ms

    @property
    def pause_remaining_ms(self) -> int:
        """The remaining pause by the agent's clock (0 when not paused)."""
        if self.paused_until_ms is None:
            return 0
        return max(0, self.paused_until_ms - self.now_ms)


class DiscardReport(Result):
    batches_deleted: _Count = Field(description="batches deleted before upload")
    events_dropped: _Count = Field(description="events still in the agent's buffers")
    erasure_requested: StrictBool = Field(description="the collector was asked to erase a range")
    erasure_range: tuple[_Ms, _Ms] | None = Field(
        description="[start_ms, end_ms] of what had been uploaded; null: nothing"
    )


class ConsentOnRecord(Result):
    accepted: StrictBool = Field(description="accepted, or declined")
    policy_version: StrictInt = Field(ge=1, description="the version answered")
    at_ms: _Ms = Field(description="when")


class ConsentOffer(Result):
    """``consent.show``: the notice of the policy in force and whether to ask."""

    policy_version: StrictInt = Field(ge=1, description="answer with this version")
    needed: StrictBool = Field(description="the person must be asked (again)")
    widening: tuple[StrictStr, ...] = Field(
        description="what the policy captures beyond the acceptance on record, in words"
    )
    previous: ConsentOnRecord | None = Field(description="the answer on record; null: none")
    notice: CaptureNotice = Field(description="the notice object below")

    @property
    def widens(self) -> bool:
        return bool(self.widening)


ExemptionStatus = Literal["pending", "approved", "denied"]


class ExemptionRequestSent(Result):
    request_id: StrictStr = Field(description="the collector's id of the request")
    status: Literal["pending"] = Field(description="a new request waits for an admin")


class RequestedExemption(Result):
    request_id: StrictStr = Field(description="the collector's id of the request")
    category: ExemptionCategory = Field(description="as asked")
    reason: StrictStr = Field(description="as asked")
    duration_days: StrictInt = Field(ge=1, description="as asked")
    status: ExemptionStatus = Field(description="the admin's answer so far")
    created_at: StrictStr | None = Field(None, description="ISO 8601")
    decided_at: StrictStr | None = Field(description="ISO 8601; null while pending")
    decision_reason: StrictStr | None = Field(description="the admin's words, if any")
    grant_expires: StrictStr | None = Field(description="ISO 8601, for an approval")


class RequestedExemptions(Result):
    requests: tuple[RequestedExemption, ...] = Field(description="this device's requests")


LedgerState = Literal["held", "ready", "uploaded", "discarded", "dead", "quarantined"]


class LedgerBatch(Result):
    seq: _Count = Field(description="the batch's number on this device")
    batch_id: StrictStr = Field(description="its id")
    start_ms: _Ms = Field(description="its first event")
    end_ms: _Ms = Field(description="its last event")
    apps: tuple[StrictStr, ...] = Field(description="the apps it holds events of")
    counts: dict[StrictStr, _Count] = Field(description="records by signal")
    bytes: _Count = Field(description="its sealed size")
    state: LedgerState = Field(description="what became of it")
    uploaded_at_ms: _Ms | None = Field(description="when the collector accepted it")
    destination: StrictStr | None = Field(description="the collector it went to")


class LedgerDay(Result):
    day: StrictStr = Field(description="YYYY-MM-DD, local")
    bytes_uploaded: _Count = Field(description="accepted by the collector that day")
    budget: _Count = Field(description="the day's upload limit")


class LedgerReport(Result):
    batches: tuple[LedgerBatch, ...] = Field(description="newest last")
    daily: tuple[LedgerDay, ...] = Field(description="upload totals per day")
