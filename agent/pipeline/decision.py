"""The decision engine: for each event, whether and how it may be captured.

(Being written: the Decision type below is the contract the rest of the
pipeline consumes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from policies.model import KeyMode, Screenshots, TitleAction


class Reason(StrEnum):
    """Why capture is on or off for an event."""

    CAPTURING = "capturing"
    NO_POLICY = "no_policy"
    POLICY_EXPIRED = "policy_expired"
    NO_CONSENT = "no_consent"
    CONSENT_OUTDATED = "consent_outdated"
    SELF_TEST_FAILED = "self_test_failed"
    PAUSED = "paused"
    EXEMPT = "exempt"
    SPOOL_FULL = "spool_full"
    NO_WINDOW = "no_window"
    NOT_ALLOWED = "not_allowed"  # the app is not on the allow-list
    NEVER_CAPTURED = "never_captured"  # the app is on the policy's never-capture list
    TITLE_SKIPPED = "title_skipped"  # a title rule excludes this window


@dataclass(frozen=True, slots=True)
class Decision:
    """What may be captured of an event in one window."""

    capture: bool
    reason: Reason
    app_id: str | None = None
    keys: KeyMode = KeyMode.NONE
    mouse: bool = False
    #: Screenshot settings when screenshots are allowed, else None.
    screenshots: Screenshots | None = None
    title: TitleAction = TitleAction.DROP
    #: Regular expressions whose matches in the title are replaced by a placeholder.
    title_masks: tuple[str, ...] = ()
    actions_only: bool = False
