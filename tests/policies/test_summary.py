"""``describe``: the plain-language summary names everything a policy decides."""

from __future__ import annotations

from policies.summary import describe
from policies.verify import parse_policy_payload

from ._build import policy_doc, pub, rotation_doc, to_bytes

_APPS = [
    {
        "id": "editor",
        "name": "Text editor",
        "match": {"process_names": ["gedit"]},
        "capture": {
            "keystrokes": "text",
            "screenshots": {"enabled": True, "max_per_minute": 4, "max_width": 960},
            "titles": "mask",
        },
        "title_rules": [{"pattern": "(?i)bank", "action": "skip"}],
    },
    {
        "id": "chat",
        "name": "Team chat",
        "match": {"wm_classes": ["slack"]},
        "capture": {"keystrokes": "shortcuts", "actions_only": True},
    },
    {
        "id": "shell",
        "name": "Terminal",
        "match": {"wm_classes": ["xterm"]},
        "capture": {"keystrokes": "timing", "mouse": False, "screenshots": {"enabled": False}},
    },
]


def _text(**overrides: object) -> str:
    return describe(parse_policy_payload(to_bytes(policy_doc(4, apps=_APPS, **overrides))))


def test_summary_covers_scope_version_and_validity() -> None:
    text = _text()
    assert "Policy version 4 for tenant example-corp (device groups office)" in text
    assert "Valid from 2026-11-21T12:00:00Z until 2026-12-22T12:00:00Z" in text


def test_summary_describes_each_app_and_its_signals() -> None:
    text = _text()
    assert "Text editor [editor]" in text
    assert "keystrokes: typed text, after redaction" in text
    assert "at most 4/min" in text
    assert "at most 960 px wide" in text
    assert "window titles: mask" in text
    assert "/(?i)bank/ → window not captured" in text
    assert "actions only" in text
    assert "keystrokes: timing only" in text
    assert "mouse: no" in text


def test_summary_covers_limits_retention_and_exemptions() -> None:
    text = _text(
        never_capture=[{"name": "KeePassXC", "match": {"process_names": ["keepassxc"]}}],
        pause={"max_minutes": 20},
    )
    assert "Never captured" in text
    assert "KeePassXC" in text
    assert "Redaction of typed text: card, national_id, email, phone, secret" in text
    assert "Pause: up to 20 minutes" in text
    assert "Review window: batches wait 15 minutes" in text
    assert "Upload: at most 50 MiB/day, only on unmetered networks" in text
    assert "Spool budget: 256 MiB" in text
    assert "Retention: 30 days; readable by the data team" in text
    assert "sensitive: capture stops" in text
    assert "battery: no screenshots, upload on AC power only" in text


def test_summary_names_grant_signers_and_rotation() -> None:
    plain = _text()
    assert "Signer rotation: none" in plain
    assert f"{pub('ADMIN_BATTERY').keyid[:16]}… (ADMIN_BATTERY): battery" in plain

    doc = rotation_doc(5, ["B", "C"], 2)
    rotated = describe(parse_policy_payload(to_bytes(doc)))
    assert "Signer rotation: later policies must be signed by 2 of 2" in rotated


def test_summary_without_grant_signers_says_no_exemption_can_be_granted() -> None:
    assert "no exemption can be granted" in _text(grant_signers=[])
