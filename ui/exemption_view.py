"""The exemption request form and the list of earlier requests, without Qt.

Owns the categories as the employee reads them, the checks a request must
pass before it is sent (:func:`check_request`, the same limits the control
API enforces, so a person hears about a mistake before the agent refuses it)
and the wording of each earlier request's status (:func:`request_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

from overt.wire.control import MAX_EXEMPTION_DAYS, MAX_REASON_CHARS
from overt.wire.control_results import RequestedExemption

#: (wire value, label) in the order the form offers them. The wire values
#: are the control API's categories (a test holds them equal).
CATEGORIES = (
    ("bandwidth", "Limited bandwidth (metered or slow internet at home)"),
    ("sensitive", "I handle sensitive information"),
    ("battery", "I often work on battery"),
    ("other", "Another reason (explain below)"),
)
_LABELS = dict(CATEGORIES)
#: The same, short enough for a column.
SHORT_LABELS = {
    "bandwidth": "Limited bandwidth",
    "sensitive": "Sensitive information",
    "battery": "Often on battery",
    "other": "Other",
}

#: The control API's limits, which are the collector's; the form's default.
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, MAX_EXEMPTION_DAYS, 30

_STATUS_WORDS = {
    "pending": "waiting for a decision",
    "approved": "approved",
    "denied": "denied",
}


@dataclass(frozen=True, slots=True)
class RequestDraft:
    category: str
    reason: str
    duration_days: int


@dataclass(frozen=True, slots=True)
class RequestRow:
    request_id: str
    category: str
    reason: str
    duration: str
    status: str


def category_label(category: str) -> str:
    return _LABELS.get(category, category)


def check_request(category: str, reason: str, duration_days: int) -> RequestDraft:
    """A request ready to send, or ValueError with a sentence for the form."""
    if category not in _LABELS:
        raise ValueError("Choose why you ask for an exemption.")
    text = reason.strip()
    if not text:
        raise ValueError("Say in a few words why you need it: an admin reads this.")
    if len(text) > MAX_REASON_CHARS:
        raise ValueError(
            f"The reason is {len(text)} characters long; keep it under {MAX_REASON_CHARS}."
        )
    if not MIN_DAYS <= duration_days <= MAX_DAYS:
        raise ValueError(f"Ask for between {MIN_DAYS} and {MAX_DAYS} days.")
    return RequestDraft(category, text, duration_days)


def _status(request: RequestedExemption) -> str:
    words = _STATUS_WORDS.get(request.status, request.status)
    if request.status == "approved" and request.grant_expires:
        words += f" until {request.grant_expires[:10]}"
    if request.status == "denied" and request.decision_reason:
        words += f": {request.decision_reason}"
    if request.decided_at and request.status != "pending":
        words += f" (decided {request.decided_at[:10]})"
    return words


def request_rows(requests: tuple[RequestedExemption, ...]) -> list[RequestRow]:
    """Earlier requests, the undecided ones first, in the order the agent sent them."""
    ordered = sorted(requests, key=lambda r: r.status != "pending")
    return [
        RequestRow(
            request_id=r.request_id,
            category=SHORT_LABELS.get(r.category, r.category),
            reason=r.reason,
            duration="1 day" if r.duration_days == 1 else f"{r.duration_days} days",
            status=_status(r),
        )
        for r in ordered
    ]
