"""The capture notice as data: what a signed policy captures, in plain words.

This module owns :func:`consent_notice`, the notice an employee reads before
agreeing to capture (the ``notice`` of the control API's ``consent.show``,
shown by the tray and by ``overt consent``), and :func:`consent_needed`,
whether an answer on record still covers a policy. It takes an already
verified :class:`~policies.model.Policy` and returns JSON-ready values; it
does not verify, persist or display anything, and it reads no clock.

Everything in the notice comes from the signed policy, so what people agree
to is exactly what the gate enforces. The wording follows
``policies.summary`` (the IT view of the same policy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.pipeline.consent import ConsentRecord, capture_surface, surface_widening
from policies.model import AppRule, Category, KeyMode, Policy
from policies.summary import effect_words

#: The notice object's own format number, inside control API version 1.
NOTICE_FORMAT = 1

KEYSTROKE_WORDS = {
    KeyMode.NONE: "not captured",
    KeyMode.TIMING: "timing only (no keys)",
    KeyMode.SHORTCUTS: "shortcuts and editing keys (typed characters become a class token)",
    KeyMode.TEXT: "typed text, after redaction",
}

CATEGORY_WORDS = {
    Category.BANDWIDTH: "limited bandwidth (metered or slow internet at home)",
    Category.SENSITIVE: "you handle sensitive information",
    Category.BATTERY: "you often work on battery",
    Category.OTHER: "another reason, explained in your request",
}

_TITLE_RULE_WORDS = {
    "skip": "window not captured",
    "drop": "title dropped",
    "mask": "match masked",
}

HOW_TO_REQUEST_EXEMPTION = (
    "Ask from the tray menu, or run: overt exemption request --category CATEGORY "
    '--reason "why"; an admin reviews every request and you see the answer in '
    "overt exemption list."
)


def _when(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _app(rule: AppRule) -> dict[str, Any]:
    capture = rule.capture
    shots = capture.screenshots
    screenshots: dict[str, Any] | None = None
    if shots.enabled and not capture.actions_only:
        screenshots = {
            "max_per_minute": shots.max_per_minute,
            "min_interval_seconds": shots.min_interval_seconds,
            "max_width": shots.max_width,
            "words": (
                f"this window only, at most {shots.max_per_minute}/min and one every "
                f"{shots.min_interval_seconds:g} s, at most {shots.max_width} px wide"
            ),
        }
    return {
        "id": rule.id,
        "name": rule.name,
        "keystrokes": capture.keystrokes.value,
        "keystrokes_words": KEYSTROKE_WORDS[capture.keystrokes],
        "mouse": capture.mouse,
        "screenshots": screenshots,
        # Actions-only apps keep no title at all, whatever ``titles`` says.
        "titles": "none" if capture.actions_only else capture.titles.value,
        "title_rules": [
            {"pattern": r.pattern, "action": r.action, "words": _TITLE_RULE_WORDS[r.action]}
            for r in rule.title_rules
        ],
        "actions_only": capture.actions_only,
    }


def consent_notice(policy: Policy) -> dict[str, Any]:
    """The notice for ``policy``, as a JSON-ready object (docs/CONTROL.md).

    Apps come in policy order; an app whose rule is ``actions_only`` has no
    screenshots and ``"titles": "none"``. ``exemptions.categories`` lists
    every category with its effect and whether any admin key of the policy
    may grant it (``grantable``).
    """
    grantable = {c for key in policy.grant_signers for c in key.categories}
    return {
        "format": NOTICE_FORMAT,
        "policy": {
            "version": policy.version,
            "issued_at": _when(policy.issued_at),
            "expires": _when(policy.expires),
            "tenant": policy.scope.tenant,
        },
        "organisation": policy.notice.organisation,
        "contact": policy.notice.contact,
        "purpose": policy.notice.purpose,
        "apps": [_app(rule) for rule in policy.apps],
        "never_captured": [denied.name for denied in policy.never_capture],
        "redaction": {
            "builtin": list(policy.redaction.builtin),
            "custom": [p.name for p in policy.redaction.patterns],
        },
        "review_window_minutes": policy.review_window_minutes,
        "retention_days": policy.retention.days,
        "readers": list(policy.retention.readers),
        "dataset_key_id": policy.dataset_key.key_id,
        "pause_max_minutes": policy.pause.max_minutes,
        "upload": {
            "daily_bytes": policy.upload.daily_bytes,
            "ac_only": policy.upload.ac_only,
            "unmetered_only": policy.upload.unmetered_only,
        },
        "on_battery": {"screenshots": policy.battery.screenshots},
        "exemptions": {
            "how": HOW_TO_REQUEST_EXEMPTION,
            "categories": [
                {
                    "category": category.value,
                    "words": CATEGORY_WORDS[category],
                    "effect": effect_words(policy.exemptions[category]),
                    "grantable": category in grantable,
                }
                for category in Category
            ],
        },
    }


def consent_needed(record: ConsentRecord | None, policy: Policy) -> bool:
    """Whether the employee must be asked (again) about ``policy``.

    Yes when there is no answer on record, when an acceptance no longer
    covers what the policy captures, and when the answer on record was a
    decline of an earlier policy version (a new version may capture less).
    A decline of this very version is an answer: it is not asked again.
    """
    if record is None:
        return True
    if record.accepted:
        return bool(surface_widening(record.surface, capture_surface(policy)))
    return record.policy_version != policy.version


def consent_changes(record: ConsentRecord | None, policy: Policy) -> list[str]:
    """What ``policy`` captures beyond an acceptance on record, in words; empty
    when there is no acceptance to compare with."""
    if record is None or not record.accepted:
        return []
    return list(surface_widening(record.surface, capture_surface(policy)))
