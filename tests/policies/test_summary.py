"""``describe``: the plain-language summary names everything a policy decides."""

from __future__ import annotations

from typing import Any

import pytest

from policies.summary import describe, identity_warnings
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
    assert "Redaction of typed text: card, iban, national_id, email, phone, secret" in text
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


DIGEST = "ab" * 32


def _one_app(match: dict[str, Any], **overrides: object) -> str:
    apps = [{"id": "app", "name": "The app", "match": match}]
    return describe(parse_policy_payload(to_bytes(policy_doc(1, apps=apps, **overrides))))


def test_summary_shows_exe_paths_and_which_are_pinned() -> None:
    text = _one_app(
        {"exe_paths": ["/usr/bin/xterm", {"path": "/opt/t/term", "sha256": DIGEST}]},
        never_capture=[
            {
                "name": "KeePassXC",
                "match": {"exe_paths": ["/usr/bin/keepassxc"], "process_names": ["keepassxc"]},
            }
        ],
    )
    assert "The app [app] — matched by exe path /usr/bin/xterm, /opt/t/term (sha256 pinned)\n" in (
        text
    )
    assert "KeePassXC — matched by exe path /usr/bin/keepassxc; process keepassxc" in text


def test_summary_says_the_other_values_of_an_exe_path_rule_narrow_it() -> None:
    text = _one_app({"exe_paths": ["/usr/bin/xterm"], "wm_classes": ["xterm", "XTerm"]})
    assert (
        "matched by exe path /usr/bin/xterm; only where it also matches WM_CLASS xterm, XTerm"
        in (text)
    )


WARNINGS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "WM_CLASS only": (
        {"wm_classes": ["slack"]},
        (
            'app "app" matches only on values its windows declare themselves (WM_CLASS); '
            "any program can claim them — add exe_paths",
        ),
    ),
    "process name and WM_CLASS": (
        {"process_names": ["slack"], "wm_classes": ["Slack"]},
        (
            'app "app" matches only on values its windows declare themselves '
            "(WM_CLASS, process name); any program can claim them — add exe_paths",
        ),
    ),
    "bundle id": (
        {"bundle_ids": ["com.tinyspeck.slackmacgap"]},
        (
            'app "app" matches only on values its windows declare themselves (bundle id); '
            "any program can claim them — add exe_paths",
        ),
    ),
    "executable base name": (
        {"exe_names": ["slack"]},
        (
            'app "app" matches executables by base name only (slack); a program of that '
            "name anywhere on disk matches — add exe_paths",
        ),
    ),
    "base name and WM_CLASS": (
        {"exe_names": ["slack"], "wm_classes": ["Slack"]},
        (
            'app "app" matches on values its windows declare themselves (WM_CLASS); '
            "any program can claim them — add exe_paths",
        ),
    ),
    "exe path": ({"exe_paths": ["/usr/lib/slack/slack"]}, ()),
    "exe path narrowed by WM_CLASS": (
        {"exe_paths": ["/usr/lib/slack/slack"], "wm_classes": ["Slack"]},
        (),
    ),
    "pinned exe path": ({"exe_paths": [{"path": "/opt/s/slack", "sha256": DIGEST}]}, ()),
}


@pytest.mark.parametrize("name", list(WARNINGS), ids=list(WARNINGS))
def test_identity_warnings_name_allow_rules_a_program_could_claim(name: str) -> None:
    match, expected = WARNINGS[name]
    apps = [{"id": "app", "name": "The app", "match": match}]
    policy = parse_policy_payload(to_bytes(policy_doc(1, apps=apps)))
    assert identity_warnings(policy) == expected


def test_never_capture_entries_get_no_identity_warning() -> None:
    apps = [{"id": "app", "name": "The app", "match": {"exe_paths": ["/usr/bin/xterm"]}}]
    never = [{"name": "KeePassXC", "match": {"wm_classes": ["keepassxc"]}}]
    policy = parse_policy_payload(to_bytes(policy_doc(1, apps=apps, never_capture=never)))
    assert identity_warnings(policy) == ()


def test_every_allow_rule_without_exe_paths_gets_its_own_warning() -> None:
    policy = parse_policy_payload(to_bytes(policy_doc(1, apps=_APPS)))
    assert [w.split('"')[1] for w in identity_warnings(policy)] == ["editor", "chat", "shell"]
