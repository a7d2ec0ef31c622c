"""The exemption form's checks and the wording of earlier requests."""

from __future__ import annotations

import pytest

from overt.wire import control
from overt.wire.control_results import CATEGORIES as WIRE_CATEGORIES
from overt.wire.control_results import RequestedExemption
from ui.exemption_view import (
    CATEGORIES,
    MAX_DAYS,
    check_request,
    request_rows,
)


def test_the_form_offers_exactly_the_control_apis_categories() -> None:
    assert [value for value, _ in CATEGORIES] == list(WIRE_CATEGORIES)


def test_the_form_limits_are_the_control_apis() -> None:
    assert MAX_DAYS == control.MAX_EXEMPTION_DAYS
    check_request("battery", "x" * control.MAX_REASON_CHARS, 30)
    with pytest.raises(ValueError, match="characters long"):
        check_request("battery", "x" * (control.MAX_REASON_CHARS + 1), 30)


def test_a_good_request_is_trimmed() -> None:
    draft = check_request("battery", "  I work from trains  \n", 30)
    assert (draft.category, draft.reason, draft.duration_days) == (
        "battery",
        "I work from trains",
        30,
    )


@pytest.mark.parametrize(
    ("category", "reason", "days", "words"),
    [
        ("holiday", "x", 3, "Choose why"),
        ("other", "   ", 3, "Say in a few words"),
        ("other", "x" * (control.MAX_REASON_CHARS + 1), 3, "keep it under"),
        ("other", "x", 0, "between 1 and"),
        ("other", "x", MAX_DAYS + 1, "between 1 and"),
    ],
)
def test_a_bad_request_is_refused_in_words(
    category: str, reason: str, days: int, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        check_request(category, reason, days)


def _request(status: str, **kw: object) -> RequestedExemption:
    base: dict[str, object] = {
        "request_id": f"r-{status}", "category": "bandwidth", "reason": "metered home line",
        "duration_days": 30, "status": status, "decided_at": None, "decision_reason": None,
        "grant_expires": None,
    }  # fmt: skip
    base.update(kw)
    return RequestedExemption.model_validate(base)


def test_rows_say_what_became_of_each_request_pending_first() -> None:
    rows = request_rows(
        (
            _request("approved", decided_at="2026-11-20T10:00:00Z",
                     grant_expires="2026-12-20T10:00:00Z"),
            _request("denied", decided_at="2026-11-21T10:00:00Z",
                     decision_reason="not on a metered plan"),
            _request("pending", duration_days=1),
        )
    )  # fmt: skip
    assert [r.status for r in rows] == [
        "waiting for a decision",
        "approved until 2026-12-20 (decided 2026-11-20)",
        "denied: not on a metered plan (decided 2026-11-21)",
    ]
    assert rows[0].duration == "1 day"
    assert rows[1].category == "Limited bandwidth"
