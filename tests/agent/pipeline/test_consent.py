"""The capture surface and whether an earlier consent covers a new policy."""

from __future__ import annotations

import pytest

from agent.pipeline.consent import (
    ConsentRecord,
    SurfaceItem,
    capture_surface,
    surface_covers,
    surface_widening,
)
from policies.model import (
    AppMatch,
    AppRule,
    ExePath,
    KeyMode,
    Policy,
    RedactionPattern,
    TitleAction,
)

from ._build import DEFAULT_APPS, T0, app_rule, make_policy

BROWSER = app_rule("browser", process=("firefox",), keys=KeyMode.SHORTCUTS)


def _widening(before: Policy, after: Policy) -> tuple[str, ...]:
    return surface_widening(capture_surface(before), capture_surface(after))


def test_surface_ignores_rule_ids_names_and_order() -> None:
    a = app_rule("one", process=("firefox",))
    b = app_rule("two", wm=("Code",))
    renamed = app_rule("renamed", process=("FireFox",))
    assert capture_surface(make_policy(apps=(a, b))) == capture_surface(
        make_policy(apps=(b, renamed), version=2)
    )


def test_higher_keystroke_mode_implies_the_lower_ones() -> None:
    surface = capture_surface(
        make_policy(apps=(app_rule("b", process=("ff",), keys=KeyMode.TEXT),))
    )
    for aspect in ("keystrokes:timing", "keystrokes:shortcuts", "keystrokes:text"):
        assert SurfaceItem(aspect, "process_name=ff") in surface


def test_lowering_the_keystroke_mode_is_covered() -> None:
    text = make_policy(apps=(app_rule("b", process=("ff",), keys=KeyMode.TEXT),))
    timing = make_policy(apps=(app_rule("b", process=("ff",), keys=KeyMode.TIMING),), version=2)
    assert _widening(text, timing) == ()
    assert _widening(timing, text) == (
        "keyboard shortcuts in apps matching process name 'ff'",
        "typed text in apps matching process name 'ff'",
    )


def test_narrower_screenshots_are_covered_and_wider_ones_are_not() -> None:
    wide = make_policy(apps=(app_rule("b", process=("ff",), max_width=1920),))
    narrow = make_policy(apps=(app_rule("b", process=("ff",), max_width=800),), version=2)
    assert _widening(wide, narrow) == ()
    assert _widening(narrow, wide) == (
        "screenshots up to 1920 px wide in apps matching process name 'ff' (was 800 px)",
    )


def test_adding_a_matcher_to_an_app_widens_capture() -> None:
    before = make_policy(apps=(BROWSER,))
    after = make_policy(apps=(app_rule("browser", process=("firefox", "chrome")),), version=2)
    assert not surface_covers(capture_surface(before), capture_surface(after))
    assert all("'chrome'" in line for line in _widening(before, after))


def test_masked_titles_are_covered_by_full_titles_but_not_the_reverse() -> None:
    full = make_policy(apps=(app_rule("b", process=("ff",), titles=TitleAction.KEEP),))
    masked = make_policy(apps=(app_rule("b", process=("ff",), titles=TitleAction.MASK),))
    dropped = make_policy(apps=(app_rule("b", process=("ff",), titles=TitleAction.DROP),))
    assert _widening(full, masked) == ()
    assert _widening(masked, dropped) == ()
    assert _widening(masked, full) == ("full window titles in apps matching process name 'ff'",)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param((("secret", "skip"),), (("secret", "drop"),), id="skip-to-drop"),
        pytest.param((("secret", "drop"),), (("secret", "mask"),), id="drop-to-mask"),
        pytest.param((("secret", "mask"),), (), id="rule-removed"),
    ],
)
def test_weakening_a_title_rule_widens_capture(
    before: tuple[tuple[str, str], ...], after: tuple[tuple[str, str], ...]
) -> None:
    old = make_policy(apps=(app_rule("b", process=("ff",), title_rules=before),))
    new = make_policy(apps=(app_rule("b", process=("ff",), title_rules=after),), version=2)
    assert len(_widening(old, new)) == 1
    assert _widening(new, old) == ()


def test_removing_a_never_capture_entry_widens_capture() -> None:
    guarded = make_policy(never=(AppMatch(process_names=("keepassxc",)),))
    open_ = make_policy(version=2)
    assert _widening(guarded, open_) == (
        "apps matching process name 'keepassxc' are no longer on the never-capture list",
    )
    assert _widening(open_, guarded) == ()


def test_dropping_actions_only_widens_capture() -> None:
    chat = make_policy(apps=(app_rule("chat", wm=("slack",), actions_only=True),))
    full = make_policy(apps=(app_rule("chat", wm=("slack",)),), version=2)
    widened = _widening(chat, full)
    assert "apps matching window class 'slack' are no longer limited to your own actions" in widened
    assert "full window titles in apps matching window class 'slack'" in widened


def test_removing_a_redaction_widens_capture() -> None:
    base = make_policy()
    fewer = base.model_copy(update={"redaction": base.redaction.model_copy(update={"builtin": ()})})
    extra = base.model_copy(
        update={
            "redaction": base.redaction.model_copy(
                update={"patterns": (RedactionPattern(name="ticket", pattern=r"T-\d+"),)}
            )
        }
    )
    assert "typed text is no longer redacted for card" in _widening(base, fewer)
    assert _widening(base, extra) == ()


def test_retention_readers_and_dataset_key_are_part_of_the_surface() -> None:
    base = make_policy()
    assert _widening(base, make_policy(retention_days=10)) == ()
    assert _widening(base, make_policy(retention_days=90)) == ("data is kept for 90 days (was 30)",)
    assert _widening(base, make_policy(readers=("the data team", "a vendor"))) == (
        "data can be read by a vendor",
    )
    assert _widening(base, make_policy(dataset_key_id="dataset-2027")) == (
        "data is sealed to a new dataset key 'dataset-2027'",
    )


def test_identical_policies_do_not_widen() -> None:
    assert _widening(make_policy(apps=DEFAULT_APPS), make_policy(apps=DEFAULT_APPS)) == ()


def test_consent_record_round_trips_through_a_dict() -> None:
    record = ConsentRecord.accept(make_policy(version=3), T0)
    assert ConsentRecord.from_dict(record.to_dict()) == record
    declined = ConsentRecord.decline(make_policy(), T0)
    assert not ConsentRecord.from_dict(declined.to_dict()).accepted


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"accepted": "yes", "policy_version": 1, "at": 0.0, "surface": []},
        {"accepted": True, "policy_version": 1, "at": 0.0, "surface": [["a", "b"]]},
        {"accepted": True, "policy_version": 1, "at": "now", "surface": []},
        {"accepted": True, "policy_version": 1, "at": 0.0, "surface": "all"},
    ],
)
def test_malformed_consent_record_is_a_value_error(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="malformed consent record"):
        ConsentRecord.from_dict(data)


def test_removing_an_app_with_its_protections_does_not_widen_capture() -> None:
    guarded = app_rule("chat", wm=("slack",), actions_only=True, title_rules=(("DM", "skip"),))
    before = make_policy(apps=(BROWSER, guarded))
    after = make_policy(apps=(BROWSER,), version=2)
    assert _widening(before, after) == ()


def test_adding_an_app_lists_everything_it_captures() -> None:
    before = make_policy(apps=(BROWSER,))
    after = make_policy(apps=(BROWSER, app_rule("mail", process=("thunderbird",))), version=2)
    assert _widening(before, after) == (
        "app names and window positions in apps matching process name 'thunderbird'",
        "full window titles in apps matching process name 'thunderbird'",
        "keyboard shortcuts in apps matching process name 'thunderbird'",
        "keystroke timing in apps matching process name 'thunderbird'",
        "mouse clicks and movement in apps matching process name 'thunderbird'",
        "screenshots up to 1280 px wide in apps matching process name 'thunderbird'",
    )


# --- executable paths --------------------------------------------------------

XTERM = "/usr/bin/xterm"
DIGEST = "0123456789abcdef" * 4


def exe_rule(rule_id: str, *entries: str | ExePath, **hints: tuple[str, ...]) -> AppRule:
    paths = tuple(ExePath(path=e) if isinstance(e, str) else e for e in entries)
    return app_rule(rule_id, process=("unused",)).model_copy(
        update={"match": AppMatch(exe_paths=paths, **hints)}
    )


def _apps(*apps: AppRule, version: int = 1) -> Policy:
    return make_policy(apps=apps, version=version)


def test_an_exe_path_rule_is_described_by_its_paths_as_written() -> None:
    surface = capture_surface(_apps(exe_rule("chat", "/opt/Slack/slack", wm_classes=("Slack",))))
    subjects = {item.subject for item in surface if item.aspect == "app"}
    assert subjects == {"exe_path=/opt/Slack/slack"}


def test_adding_an_exe_path_widens_capture() -> None:
    server = "/usr/libexec/gnome-terminal-server"
    before = _apps(exe_rule("term", XTERM))
    after = _apps(exe_rule("term", XTERM, server), version=2)
    widened = _widening(before, after)
    assert f"app names and window positions in apps matching executable path '{server}'" in widened
    assert all(f"executable path '{server}'" in line for line in widened)
    assert _widening(after, before) == ()


def test_an_exe_path_differing_only_in_case_is_another_path() -> None:
    before = _apps(exe_rule("chat", "/opt/slack/slack"))
    after = _apps(exe_rule("chat", "/opt/Slack/slack"), version=2)
    assert not surface_covers(capture_surface(before), capture_surface(after))


def test_moving_a_rule_from_declared_values_to_exe_paths_asks_again() -> None:
    before = _apps(app_rule("term", wm=("xterm",)))
    after = _apps(exe_rule("term", XTERM, wm_classes=("xterm",)), version=2)
    widened = _widening(before, after)
    assert "keyboard shortcuts in apps matching executable path '/usr/bin/xterm'" in widened
    assert not any("window class" in line for line in widened)


def test_narrowing_an_exe_path_rule_or_lifting_the_narrowing_is_covered() -> None:
    # The consent was for the program at that path; its other values only narrow it.
    plain = _apps(exe_rule("term", XTERM))
    narrowed = _apps(exe_rule("term", XTERM, wm_classes=("xterm",)), version=2)
    assert _widening(plain, narrowed) == ()
    assert _widening(narrowed, plain) == ()


def test_pinning_or_changing_a_digest_does_not_ask_again() -> None:
    plain = _apps(exe_rule("term", XTERM))
    pinned = _apps(exe_rule("term", ExePath(path=XTERM, sha256=DIGEST)), version=2)
    updated = _apps(exe_rule("term", ExePath(path=XTERM, sha256="f" * 64)), version=3)
    assert capture_surface(plain) == capture_surface(pinned) == capture_surface(updated)


def test_removing_an_exe_path_from_never_capture_widens_capture() -> None:
    keepass = AppMatch(
        exe_paths=(ExePath(path="/usr/bin/keepassxc"),), process_names=("keepassxc",)
    )
    guarded = make_policy(never=(keepass,))
    by_name = make_policy(never=(AppMatch(process_names=("keepassxc",)),), version=2)
    assert _widening(guarded, by_name) == (
        "apps matching executable path '/usr/bin/keepassxc' are no longer on the "
        "never-capture list",
    )
    assert _widening(by_name, guarded) == ()


def test_a_path_with_an_equals_sign_is_described_whole() -> None:
    before = _apps(exe_rule("term", XTERM))
    after = _apps(exe_rule("term", XTERM, "/opt/a=b/app"), version=2)
    assert "mouse clicks and movement in apps matching executable path '/opt/a=b/app'" in (
        _widening(before, after)
    )


def test_consent_with_exe_paths_round_trips_through_a_dict() -> None:
    record = ConsentRecord.accept(_apps(exe_rule("term", XTERM, "/opt/a=b/App")), T0)
    assert ConsentRecord.from_dict(record.to_dict()) == record
