"""The example policies shipped with the package are valid and say what they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.model import ALL_GROUPS, KeyMode, Policy
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


def test_test_workapp_example_captures_the_e2e_work_app() -> None:
    policy = _load("test-workapp.json")
    assert policy.scope.tenant == "example-corp"
    assert policy.scope.device_groups == (ALL_GROUPS,)
    (app,) = policy.apps
    assert app.id == "overt-workapp"
    assert app.match.wm_classes == ("overt-workapp",)
    assert app.capture.keystrokes is KeyMode.TEXT
    assert app.capture.screenshots.enabled
