"""The example policies shipped with the package are valid and say what they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.model import ALL_GROUPS, KeyMode, Policy
from policies.summary import identity_warnings
from policies.verify import parse_policy_payload

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def _load(name: str) -> Policy:
    return parse_policy_payload((EXAMPLES / name).read_bytes())


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_every_example_is_a_valid_policy(name: str) -> None:
    assert _load(name).version >= 1


def test_office_example_is_the_realistic_office_policy() -> None:
    policy = _load("office.json")
    assert policy.scope.tenant == "example-corp"
    assert policy.scope.device_groups == ("office",)
    apps = {app.id: app for app in policy.apps}
    assert apps["chat"].capture.actions_only
    assert apps["terminal"].capture.keystrokes in {KeyMode.TIMING, KeyMode.SHORTCUTS}
    assert not apps["terminal"].capture.screenshots.enabled
    assert any(rule.action == "skip" for rule in apps["browser"].title_rules)
    denied = {name for d in policy.never_capture for name in d.match.process_names}
    assert {"keepassxc", "1password", "bitwarden"} <= denied
    assert policy.dataset_key.key_id == "example-dataset-2026"


def test_office_example_names_every_app_by_the_path_of_its_executable() -> None:
    policy = _load("office.json")
    for app in policy.apps:
        assert app.match.exe_paths, app.id
        # Nothing a window declares about itself: those values could only narrow.
        assert app.match.hints == (), app.id
    for denied in policy.never_capture:
        assert denied.match.exe_paths, denied.name
    entries = [e for a in policy.apps for e in a.match.exe_paths]
    # A digest changes with every package update; the example pins none.
    assert all(e.sha256 is None for e in entries)
    paths = {e.path for e in entries}
    assert {
        "/usr/lib/firefox-esr/firefox-esr",
        "/usr/lib/chromium/chromium",
        "/usr/lib/thunderbird/thunderbird",
        "/usr/lib/libreoffice/program/soffice.bin",
        "/usr/share/code/code",
        "/usr/bin/xterm",
        "/usr/libexec/gnome-terminal-server",
    } <= paths
    assert identity_warnings(policy) == ()


def test_test_workapp_example_captures_the_e2e_work_app() -> None:
    policy = _load("test-workapp.json")
    assert policy.scope.tenant == "example-corp"
    assert policy.scope.device_groups == (ALL_GROUPS,)
    (app,) = policy.apps
    assert app.id == "overt-workapp"
    assert app.match.wm_classes == ("overt-workapp",)
    assert app.match.exe_paths == ()
    assert len(identity_warnings(policy)) == 1
    assert app.capture.keystrokes is KeyMode.TEXT
    assert app.capture.screenshots.enabled
