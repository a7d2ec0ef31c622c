"""The decision engine: fail-closed reasons, matching, title rules, exemptions,
uploads, and the cache agreeing with the pure function."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import AppIdentity, Rect, WindowInfo
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import (
    BLOCKING_REASONS,
    CaptureState,
    Decision,
    DecisionEngine,
    Reason,
    UploadReason,
    capture_status,
    daily_upload_budget,
    decide,
    decide_window,
    next_change,
    upload_allowed,
)
from agent.pipeline.matching import digest_paths
from policies.model import (
    AppMatch,
    AppRule,
    Category,
    ExePath,
    KeyMode,
    Policy,
    TitleAction,
    UploadRules,
)

from ._build import (
    DAY,
    DEFAULT_APPS,
    POLICY_EXPIRES,
    T0,
    app_rule,
    capturing_state,
    make_grant,
    make_policy,
)

FIREFOX = AppIdentity(process_name="firefox", wm_instance="Navigator", wm_class="firefox")
CODE = AppIdentity(process_name="code", exe_name="code", wm_class="Code")
SLACK = AppIdentity(process_name="slack", wm_instance="slack", wm_class="Slack")
KEEPASS = AppIdentity(process_name="keepassxc", wm_class="KeePassXC")
SPOTIFY = AppIdentity(process_name="spotify", wm_class="Spotify")
MIN = 60.0


def _reason(state: CaptureState, app: AppIdentity | None = FIREFOX, now: float = T0) -> Reason:
    return decide(state, app, "Inbox", now).reason


# --- fail closed ---------------------------------------------------------------


def test_capture_runs_with_policy_consent_and_self_test() -> None:
    decision = decide(capturing_state(), FIREFOX, "Inbox", T0)
    assert decision.capture
    assert decision.reason is Reason.CAPTURING
    assert decision.app_id == "browser"
    assert decision.keys is KeyMode.TEXT
    assert decision.mouse
    assert decision.screenshots is not None
    assert decision.title is TitleAction.KEEP


def test_no_policy_blocks_capture() -> None:
    assert _reason(CaptureState()) is Reason.NO_POLICY
    assert _reason(capturing_state().with_policy(None)) is Reason.NO_POLICY


def test_policy_expires_exactly_at_its_expiry() -> None:
    state = capturing_state()
    assert _reason(state, now=POLICY_EXPIRES - 0.001) is Reason.CAPTURING
    assert _reason(state, now=POLICY_EXPIRES) is Reason.POLICY_EXPIRED


def test_nan_clock_fails_closed() -> None:
    assert _reason(capturing_state(), now=float("nan")) is Reason.POLICY_EXPIRED


def test_failed_self_test_blocks_capture() -> None:
    assert _reason(capturing_state(self_test_passed=False)) is Reason.SELF_TEST_FAILED


def test_a_new_policy_needs_a_new_self_test() -> None:
    state = capturing_state().with_policy(make_policy(version=2))
    assert _reason(state) is Reason.SELF_TEST_FAILED
    assert _reason(state.with_self_test(passed=True)) is Reason.CAPTURING


def test_missing_consent_blocks_capture() -> None:
    assert _reason(capturing_state(consent=None)) is Reason.NO_CONSENT


def test_declined_consent_blocks_capture() -> None:
    policy = make_policy()
    declined = ConsentRecord.decline(policy, T0)
    assert _reason(capturing_state(policy, consent=declined)) is Reason.CONSENT_DECLINED


def test_consent_for_an_older_narrower_policy_blocks_a_wider_one() -> None:
    narrow = make_policy(version=1, apps=(app_rule("browser", process=("firefox",)),))
    wide = make_policy(
        version=2, apps=(app_rule("browser", process=("firefox",), keys=KeyMode.TEXT),)
    )
    state = capturing_state(wide, consent=ConsentRecord.accept(narrow, T0 - DAY))
    assert _reason(state) is Reason.CONSENT_OUTDATED


def test_consent_for_an_older_policy_that_captured_more_stays_valid() -> None:
    wide = make_policy(version=1)
    narrow = make_policy(version=2, apps=(app_rule("browser", process=("firefox",)),))
    state = capturing_state(narrow, consent=ConsentRecord.accept(wide, T0 - DAY))
    assert _reason(state) is Reason.CAPTURING


def test_stop_capture_exemption_blocks_capture() -> None:
    grant = make_grant(Category.SENSITIVE, expires=T0 + DAY)
    assert _reason(capturing_state(grants=(grant,))) is Reason.EXEMPT


def test_pause_blocks_capture_until_it_ends() -> None:
    state = capturing_state().paused(T0, 10)
    assert _reason(state, now=T0 + 10 * MIN - 1) is Reason.PAUSED
    assert _reason(state, now=T0 + 10 * MIN) is Reason.CAPTURING
    assert _reason(state.resumed(), now=T0 + MIN) is Reason.CAPTURING


def test_pause_is_clamped_to_the_policy_maximum() -> None:
    state = capturing_state(make_policy(pause_max_minutes=15)).paused(T0, 60)
    assert state.pause.resumes_at == T0 + 15 * MIN
    assert capturing_state().paused(T0).pause.resumes_at == T0 + 30 * MIN


def test_full_spool_blocks_capture() -> None:
    assert _reason(capturing_state(spool_full=True)) is Reason.SPOOL_FULL


def _all_blocks() -> list[tuple[Reason, CaptureState, float]]:
    """A state with every blocking reason present, then with each removed in
    order of precedence."""
    policy = make_policy(expires=T0 + 2 * DAY)
    outdated = ConsentRecord.accept(make_policy(apps=(app_rule("x", process=("x",)),)), T0)
    states: list[tuple[Reason, CaptureState, float]] = []
    base = dict(
        consent=None,
        self_test_passed=False,
        grants=(make_grant(Category.OTHER, expires=T0 + 10 * DAY),),
        spool_full=True,
    )
    state = CaptureState.build(None, **base).paused(T0 + 3 * DAY - 60)  # type: ignore[arg-type]
    states.append((Reason.NO_POLICY, state, T0 + 3 * DAY))
    state = dataclasses.replace(state, policy=CaptureState.build(policy).policy)
    states.append((Reason.POLICY_EXPIRED, state, T0 + 3 * DAY))
    state = state.with_policy(make_policy()).paused(T0)
    states.append((Reason.SELF_TEST_FAILED, state, T0))
    state = state.with_self_test(passed=True)
    states.append((Reason.NO_CONSENT, state, T0))
    state = state.with_consent(ConsentRecord.decline(make_policy(), T0))
    states.append((Reason.CONSENT_DECLINED, state, T0))
    state = state.with_consent(outdated)
    states.append((Reason.CONSENT_OUTDATED, state, T0))
    state = state.with_consent(ConsentRecord.accept(make_policy(), T0))
    states.append((Reason.EXEMPT, state, T0))
    state = state.with_grants(())
    states.append((Reason.PAUSED, state, T0))
    state = state.resumed()
    states.append((Reason.SPOOL_FULL, state, T0))
    state = state.with_spool_full(full=False)
    states.append((Reason.CAPTURING, state, T0))
    return states


def test_blocking_reasons_follow_the_documented_precedence() -> None:
    seen = [reason for reason, state, now in _all_blocks() if _reason(state, now=now) is reason]
    assert seen == [*BLOCKING_REASONS, Reason.CAPTURING]


def test_blocking_decisions_capture_nothing() -> None:
    for reason, state, now in _all_blocks():
        decision = decide(state, FIREFOX, "Inbox", now)
        if reason is not Reason.CAPTURING:
            assert decision == Decision(capture=False, reason=reason)
            assert capture_status(state, now) is reason


# --- matching ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_kwargs", "identity"),
    [
        pytest.param({"process": ("firefox",)}, AppIdentity(process_name="firefox"), id="process"),
        pytest.param({"wm": ("navigator",)}, AppIdentity(wm_instance="Navigator"), id="wm-inst"),
        pytest.param({"wm": ("firefox",)}, AppIdentity(wm_class="firefox"), id="wm-class"),
        pytest.param({"exe": ("firefox.exe",)}, AppIdentity(exe_name="firefox.exe"), id="exe"),
        pytest.param(
            {"bundle": ("org.mozilla.firefox",)},
            AppIdentity(bundle_id="org.mozilla.firefox"),
            id="bundle",
        ),
    ],
)
def test_app_is_allowed_by_each_identity_field(
    rule_kwargs: dict[str, tuple[str, ...]], identity: AppIdentity
) -> None:
    state = capturing_state(make_policy(apps=(app_rule("ff", **rule_kwargs),)))  # type: ignore[arg-type]
    assert decide(state, identity, "", T0).app_id == "ff"
    assert decide(state, AppIdentity(process_name="other"), "", T0).reason is Reason.NOT_ALLOWED


def test_matching_ignores_case() -> None:
    state = capturing_state(make_policy(apps=(app_rule("ff", process=("FireFox",)),)))
    assert decide(state, AppIdentity(process_name="FIREFOX"), "", T0).capture


def test_executables_match_by_base_name() -> None:
    state = capturing_state(make_policy(apps=(app_rule("ff", exe=("Firefox.EXE",)),)))
    identity = AppIdentity(exe_name=r"C:\Program Files\Mozilla\firefox.exe")
    assert decide(state, identity, "", T0).capture


def test_empty_identity_values_never_match() -> None:
    assert _reason(capturing_state(), app=AppIdentity()) is Reason.NOT_ALLOWED


def test_never_capture_wins_over_the_allow_list() -> None:
    policy = make_policy(never=(AppMatch(wm_classes=("firefox",)),))
    assert _reason(capturing_state(policy)) is Reason.NEVER_CAPTURED


def test_never_captured_app_is_not_captured() -> None:
    policy = make_policy(never=(AppMatch(process_names=("keepassxc",)),))
    assert _reason(capturing_state(policy), app=KEEPASS) is Reason.NEVER_CAPTURED


def test_app_off_the_allow_list_is_not_captured() -> None:
    assert _reason(capturing_state(), app=SPOTIFY) is Reason.NOT_ALLOWED


def test_no_focused_window_is_not_captured() -> None:
    assert _reason(capturing_state(), app=None) is Reason.NO_WINDOW
    assert decide_window(capturing_state(), None, T0).reason is Reason.NO_WINDOW


def test_first_matching_app_rule_wins() -> None:
    first = app_rule("first", wm=("firefox",), keys=KeyMode.TIMING)
    second = app_rule("second", process=("firefox",), keys=KeyMode.TEXT)
    decision = decide(capturing_state(make_policy(apps=(first, second))), FIREFOX, "", T0)
    assert decision.app_id == "first"
    assert decision.keys is KeyMode.TIMING


# --- matching by executable path ---------------------------------------------

XTERM = "/usr/bin/xterm"
WORKAPP = "/opt/workapp/bin/workapp"
DIGEST = "0123456789abcdef" * 4
OTHER_DIGEST = "f" * 64


def exe_rule(
    rule_id: str,
    *entries: str | ExePath,
    keys: KeyMode = KeyMode.SHORTCUTS,
    **hints: tuple[str, ...],
) -> AppRule:
    """An app rule matching ``entries`` (paths or ExePath), narrowed by ``hints``
    (AppMatch fields such as ``wm_classes``)."""
    paths = tuple(ExePath(path=e) if isinstance(e, str) else e for e in entries)
    return app_rule(rule_id, process=("unused",), keys=keys).model_copy(
        update={"match": AppMatch(exe_paths=paths, **hints)}
    )


def _exe_state(*apps: AppRule, never: tuple[AppMatch, ...] = ()) -> CaptureState:
    return capturing_state(make_policy(apps=apps, never=never))


def test_an_exe_path_rule_captures_the_executable_at_exactly_that_path() -> None:
    state = _exe_state(exe_rule("term", XTERM))
    assert decide(state, AppIdentity(exe_path=XTERM), "", T0).app_id == "term"
    for other in ("/usr/local/bin/xterm", "/usr/bin/xterm2", "/usr/bin/xter", "/tmp" + XTERM):
        assert _reason(state, app=AppIdentity(exe_path=other)) is Reason.NOT_ALLOWED


def test_exe_paths_are_compared_case_sensitively() -> None:
    state = _exe_state(exe_rule("chat", "/opt/Slack/slack"))
    assert decide(state, AppIdentity(exe_path="/opt/Slack/slack"), "", T0).capture
    for other in ("/opt/slack/slack", "/OPT/SLACK/SLACK", "/opt/Slack/Slack"):
        assert _reason(state, app=AppIdentity(exe_path=other)) is Reason.NOT_ALLOWED


def test_a_program_claiming_the_class_of_an_exe_path_rule_is_not_captured() -> None:
    # ``xterm -class overt-workapp``: every declared value is the work app's.
    state = _exe_state(exe_rule("workapp", WORKAPP, wm_classes=("overt-workapp",)))
    spoof = AppIdentity(
        process_name="workapp",
        wm_instance="overt-workapp",
        wm_class="overt-workapp",
        exe_name="workapp",
        exe_path=XTERM,
    )
    assert _reason(state, app=spoof) is Reason.NOT_ALLOWED
    assert _reason(state, app=dataclasses.replace(spoof, exe_path="")) is Reason.NOT_ALLOWED
    real = dataclasses.replace(spoof, exe_path=WORKAPP)
    assert decide(state, real, "", T0).app_id == "workapp"


def test_other_values_of_an_exe_path_rule_narrow_it() -> None:
    path = "/usr/lib/libreoffice/program/soffice.bin"
    state = _exe_state(
        exe_rule("writer", path, wm_classes=("libreoffice-writer",), process_names=("x",))
    )
    soffice = AppIdentity(exe_path=path)
    writer = dataclasses.replace(soffice, wm_instance="libreoffice", wm_class="LibreOffice-Writer")
    calc = dataclasses.replace(soffice, wm_instance="libreoffice", wm_class="libreoffice-calc")
    assert decide(state, writer, "", T0).app_id == "writer"
    assert _reason(state, app=calc) is Reason.NOT_ALLOWED
    assert _reason(state, app=soffice) is Reason.NOT_ALLOWED
    assert decide(state, dataclasses.replace(calc, process_name="X"), "", T0).app_id == "writer"


@pytest.mark.parametrize(
    ("exe_sha256", "captured"),
    [
        pytest.param(DIGEST, True, id="same digest"),
        pytest.param(DIGEST.upper(), True, id="same digest in upper case"),
        pytest.param(OTHER_DIGEST, False, id="other digest"),
        pytest.param("", False, id="no digest fails closed"),
        pytest.param(DIGEST[:-1], False, id="truncated digest"),
    ],
)
def test_a_pinned_exe_path_needs_the_pinned_digest(exe_sha256: str, captured: bool) -> None:
    state = _exe_state(exe_rule("workapp", ExePath(path=WORKAPP, sha256=DIGEST)))
    app = AppIdentity(wm_class="workapp", exe_path=WORKAPP, exe_sha256=exe_sha256)
    decision = decide(state, app, "", T0)
    assert decision.capture is captured
    assert decision.reason is (Reason.CAPTURING if captured else Reason.NOT_ALLOWED)


def test_a_digest_of_another_file_does_not_match_a_pinned_path() -> None:
    state = _exe_state(exe_rule("workapp", ExePath(path=WORKAPP, sha256=DIGEST)))
    app = AppIdentity(exe_path="/opt/workapp/bin/other", exe_sha256=DIGEST)
    assert _reason(state, app=app) is Reason.NOT_ALLOWED


def test_a_path_pinned_to_several_digests_matches_any_of_them() -> None:
    state = _exe_state(
        exe_rule(
            "workapp",
            ExePath(path=WORKAPP, sha256=DIGEST),
            ExePath(path=WORKAPP, sha256=OTHER_DIGEST),
        )
    )
    for digest in (DIGEST, OTHER_DIGEST):
        assert decide(state, AppIdentity(exe_path=WORKAPP, exe_sha256=digest), "", T0).capture
    assert _reason(state, app=AppIdentity(exe_path=WORKAPP, exe_sha256="e" * 64)) is (
        Reason.NOT_ALLOWED
    )


def test_an_unpinned_path_ignores_the_digest() -> None:
    state = _exe_state(exe_rule("term", XTERM))
    assert decide(state, AppIdentity(exe_path=XTERM, exe_sha256=OTHER_DIGEST), "", T0).capture


def test_never_capture_by_exe_path_wins_over_the_allow_list() -> None:
    keepass = AppIdentity(process_name="keepassxc", exe_path="/usr/bin/keepassxc")
    never = (AppMatch(exe_paths=(ExePath(path="/usr/bin/keepassxc"),)),)
    by_path = _exe_state(exe_rule("all", "/usr/bin/keepassxc"), never=never)
    by_name = _exe_state(app_rule("kp", process=("keepassxc",)), never=never)
    assert _reason(by_path, app=keepass) is Reason.NEVER_CAPTURED
    assert _reason(by_name, app=keepass) is Reason.NEVER_CAPTURED
    # The path alone decides: a renamed process at that path is still denied.
    assert _reason(by_path, app=AppIdentity(exe_path="/usr/bin/keepassxc")) is (
        Reason.NEVER_CAPTURED
    )
    elsewhere = AppIdentity(process_name="keepassxc", exe_path="/home/u/keepassxc")
    assert decide(by_name, elsewhere, "", T0).app_id == "kp"


def test_never_capture_counts_each_value_on_its_own() -> None:
    # Unlike an allow rule, a declared value alone is enough to keep a window out.
    never = (AppMatch(exe_paths=(ExePath(path="/usr/bin/keepassxc"),), wm_classes=("KeePassXC",)),)
    state = _exe_state(exe_rule("term", XTERM), never=never)
    faking = AppIdentity(wm_class="KeePassXC", exe_path=XTERM)
    assert _reason(state, app=faking) is Reason.NEVER_CAPTURED


def test_the_first_matching_exe_path_rule_wins() -> None:
    first = exe_rule("first", XTERM, keys=KeyMode.TIMING)
    second = exe_rule("second", XTERM, keys=KeyMode.TEXT)
    decision = decide(_exe_state(first, second), AppIdentity(exe_path=XTERM), "", T0)
    assert (decision.app_id, decision.keys) == ("first", KeyMode.TIMING)


def test_a_narrowed_rule_that_does_not_match_gives_way_to_the_next() -> None:
    narrowed = exe_rule("root-shell", XTERM, wm_classes=("root-xterm",))
    plain = exe_rule("shell", XTERM)
    state = _exe_state(narrowed, plain)
    xterm = AppIdentity(wm_class="XTerm", exe_path=XTERM)
    assert decide(state, xterm, "", T0).app_id == "shell"
    root = dataclasses.replace(xterm, wm_instance="root-xterm")
    assert decide(state, root, "", T0).app_id == "root-shell"


def test_rule_order_decides_between_an_exe_path_rule_and_a_declared_value_rule() -> None:
    by_class = app_rule("by-class", wm=("xterm",))
    by_path = exe_rule("by-path", XTERM)
    xterm = AppIdentity(wm_class="xterm", exe_path=XTERM)
    assert decide(_exe_state(by_class, by_path), xterm, "", T0).app_id == "by-class"
    assert decide(_exe_state(by_path, by_class), xterm, "", T0).app_id == "by-path"


def test_digest_paths_are_the_pinned_paths_of_app_rules() -> None:
    policy = make_policy(
        apps=(
            exe_rule("term", XTERM, ExePath(path="/opt/t/term", sha256=DIGEST)),
            exe_rule(
                "workapp",
                ExePath(path=WORKAPP, sha256=DIGEST),
                ExePath(path=WORKAPP, sha256=OTHER_DIGEST),
            ),
            app_rule("browser", process=("firefox",)),
        ),
        never=(AppMatch(exe_paths=(ExePath(path="/usr/bin/keepassxc"),)),),
    )
    assert digest_paths(policy) == frozenset({"/opt/t/term", WORKAPP})
    assert digest_paths(make_policy()) == frozenset()
    assert digest_paths(make_policy(apps=(exe_rule("term", XTERM),))) == frozenset()


# A reference matcher written straight from the rules in the module docstring,
# against which the prepared lookup tables are checked.


def _hint_matches(match: AppMatch, app: AppIdentity) -> bool:
    def base(value: str) -> str:
        return value.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()

    pairs = (
        (match.process_names, [app.process_name], str.lower),
        (match.wm_classes, [app.wm_instance, app.wm_class], str.lower),
        (match.exe_names, [app.exe_name], base),
        (match.bundle_ids, [app.bundle_id], str.lower),
    )
    return any(
        have and norm(have.strip()) == norm(want.strip())
        for wanted, haves, norm in pairs
        for want in wanted
        for have in haves
    )


def _path_matches(match: AppMatch, app: AppIdentity, *, pins: bool = True) -> bool:
    return any(
        app.exe_path == e.path
        and (not pins or e.sha256 is None or app.exe_sha256.lower() == e.sha256)
        for e in match.exe_paths
    )


def _reference_app_id(policy: Policy, app: AppIdentity) -> str | None:
    for denied in policy.never_capture:
        if _hint_matches(denied.match, app) or _path_matches(denied.match, app, pins=False):
            return None
    for rule in policy.apps:
        m = rule.match
        if m.exe_paths:
            if _path_matches(m, app) and (not m.hints or _hint_matches(m, app)):
                return rule.id
        elif _hint_matches(m, app):
            return rule.id
    return None


_PATHS = ("/usr/bin/xterm", "/usr/bin/XTerm", "/opt/a/app")
_DIGESTS = (DIGEST, OTHER_DIGEST)
_entry = st.builds(
    ExePath, path=st.sampled_from(_PATHS), sha256=st.none() | st.sampled_from(_DIGESTS)
)
_names = st.lists(st.sampled_from(("xterm", "XTerm", "app", "other")), max_size=2).map(tuple)


@st.composite
def _match(draw: st.DrawFn, *, pins: bool) -> AppMatch:
    entry = _entry if pins else _entry.map(lambda e: ExePath(path=e.path))
    entries = draw(st.lists(entry, max_size=3))
    unpinned = {e.path for e in entries if e.sha256 is None}
    entries = [e for e in entries if e.sha256 is None or e.path not in unpinned]
    hints = {
        "process_names": draw(_names),
        "wm_classes": draw(_names),
        "exe_names": draw(_names),
    }
    if not entries and not any(hints.values()):
        hints["wm_classes"] = ("app",)
    return AppMatch(exe_paths=tuple(entries), **hints)


_identity = st.builds(
    AppIdentity,
    process_name=st.sampled_from(("", "xterm", "APP", "other")),
    wm_instance=st.sampled_from(("", "xterm", "app")),
    wm_class=st.sampled_from(("", "XTerm", "Other")),
    exe_name=st.sampled_from(("", "xterm", "app")),
    exe_path=st.sampled_from(("", *_PATHS)),
    exe_sha256=st.sampled_from(("", *_DIGESTS, DIGEST.upper())),
)


@settings(max_examples=300, deadline=None)
@given(
    matches=st.lists(_match(pins=True), min_size=1, max_size=4),
    never=st.lists(_match(pins=False), max_size=2),
    identities=st.lists(_identity, min_size=1, max_size=8),
)
def test_matching_agrees_with_a_reference_matcher(
    matches: list[AppMatch], never: list[AppMatch], identities: list[AppIdentity]
) -> None:
    apps = tuple(
        app_rule(f"app{i}", process=("unused",)).model_copy(update={"match": m})
        for i, m in enumerate(matches)
    )
    policy = make_policy(apps=apps, never=tuple(never))
    state = capturing_state(policy)
    for app in identities:
        assert decide(state, app, "", T0).app_id == _reference_app_id(policy, app)


def test_decide_window_reads_the_window_identity_and_title() -> None:
    rule = app_rule("ff", process=("firefox",), title_rules=(("Bank", "skip"),))
    window = WindowInfo(1, FIREFOX, "My Bank", Rect(0, 0, 10, 10))
    state = capturing_state(make_policy(apps=(rule,)))
    assert decide_window(state, window, T0).reason is Reason.TITLE_SKIPPED


# --- title rules ---------------------------------------------------------------


def _title_state(*rules: tuple[str, str], titles: TitleAction = TitleAction.KEEP) -> CaptureState:
    rule = app_rule("ff", process=("firefox",), title_rules=rules, titles=titles)
    return capturing_state(make_policy(apps=(rule,)))


def test_skip_title_rule_excludes_the_window() -> None:
    state = _title_state(("(?i)private browsing", "skip"))
    decision = decide(state, FIREFOX, "Cats — Private Browsing", T0)
    assert decision == Decision(capture=False, reason=Reason.TITLE_SKIPPED, app_id="ff")
    assert decide(state, FIREFOX, "Cats", T0).capture


def test_drop_title_rule_keeps_events_but_drops_the_title() -> None:
    decision = decide(_title_state(("Payroll", "drop")), FIREFOX, "Payroll 2026", T0)
    assert decision.capture
    assert decision.title is TitleAction.DROP
    assert decision.title_masks == ()


def test_mask_title_rules_collect_their_patterns() -> None:
    state = _title_state((r"\d{4,}", "mask"), (r"[\w.]+@[\w.]+", "mask"), ("zzz", "mask"))
    decision = decide(state, FIREFOX, "Ticket 12345 from a@b.example", T0)
    assert decision.title is TitleAction.MASK
    assert decision.title_masks == (r"\d{4,}", r"[\w.]+@[\w.]+")


def test_skip_wins_over_an_earlier_drop_or_mask() -> None:
    state = _title_state(("Bank", "mask"), ("Bank", "drop"), ("Bank", "skip"))
    assert decide(state, FIREFOX, "Bank", T0).reason is Reason.TITLE_SKIPPED


def test_drop_wins_over_mask() -> None:
    decision = decide(_title_state(("a", "mask"), ("b", "drop")), FIREFOX, "ab", T0)
    assert (decision.title, decision.title_masks) == (TitleAction.DROP, ())


def test_app_that_drops_titles_never_keeps_one() -> None:
    decision = decide(_title_state(("a", "mask"), titles=TitleAction.DROP), FIREFOX, "a", T0)
    assert decision.title is TitleAction.DROP


# --- lighter capture -----------------------------------------------------------


def test_actions_only_app_gets_no_title_and_no_screenshots() -> None:
    decision = decide(capturing_state(), SLACK, "#general", T0)
    assert decision.capture
    assert decision.actions_only
    assert decision.title is TitleAction.DROP
    assert decision.screenshots is None
    assert decision.keys is KeyMode.TEXT


def test_battery_stops_screenshots_when_the_policy_says_so() -> None:
    state = capturing_state(on_battery=True)
    decision = decide(state, FIREFOX, "", T0)
    assert decision.capture
    assert decision.screenshots is None
    assert decide(state.with_power(on_battery=False), FIREFOX, "", T0).screenshots is not None


def test_battery_keeps_screenshots_when_the_policy_allows_them() -> None:
    state = capturing_state(make_policy(battery_screenshots=True), on_battery=True)
    assert decide(state, FIREFOX, "", T0).screenshots is not None


def test_app_with_screenshots_disabled_gets_none() -> None:
    rule = app_rule("ff", process=("firefox",), screenshots=False)
    assert decide(capturing_state(make_policy(apps=(rule,))), FIREFOX, "", T0).screenshots is None


def test_exemption_caps_the_keystroke_mode() -> None:
    policy = make_policy()
    effects = dict(policy.exemptions)
    effects[Category.BATTERY] = effects[Category.BATTERY].model_copy(
        update={"max_keystrokes": KeyMode.TIMING}
    )
    policy = policy.model_copy(update={"exemptions": effects})
    state = capturing_state(policy, grants=(make_grant(Category.BATTERY, T0 + DAY),))
    decision = decide(state, FIREFOX, "", T0)
    assert decision.capture
    assert decision.keys is KeyMode.TIMING
    assert decision.screenshots is None


def test_bandwidth_exemption_stops_screenshots_only() -> None:
    state = capturing_state(grants=(make_grant(Category.BANDWIDTH, T0 + DAY),))
    decision = decide(state, FIREFOX, "", T0)
    assert (decision.capture, decision.keys, decision.screenshots) == (True, KeyMode.TEXT, None)


def test_expired_grant_has_no_effect() -> None:
    state = capturing_state(grants=(make_grant(Category.SENSITIVE, T0 - 1),))
    assert _reason(state) is Reason.CAPTURING


# --- the engine and its cache --------------------------------------------------


def test_grant_expiry_restores_capture_in_the_same_engine() -> None:
    expiry = T0 + 2 * MIN
    engine = DecisionEngine(capturing_state(grants=(make_grant(Category.SENSITIVE, expiry),)))
    assert engine.decide(FIREFOX, "Inbox", T0).reason is Reason.EXEMPT
    assert engine.decide(FIREFOX, "Inbox", expiry - 0.001).reason is Reason.EXEMPT
    assert engine.decide(FIREFOX, "Inbox", expiry).reason is Reason.CAPTURING


def test_screenshot_exemption_expiry_restores_screenshots_in_the_same_engine() -> None:
    expiry = T0 + 2 * MIN
    engine = DecisionEngine(capturing_state(grants=(make_grant(Category.BANDWIDTH, expiry),)))
    assert engine.decide(FIREFOX, "Inbox", T0).screenshots is None
    assert engine.decide(FIREFOX, "Inbox", expiry).screenshots is not None


def test_pause_expiry_resumes_capture_in_the_same_engine() -> None:
    engine = DecisionEngine(capturing_state())
    assert engine.decide(FIREFOX, "Inbox", T0).capture
    engine.set_state(engine.state.paused(T0, 5))
    assert engine.decide(FIREFOX, "Inbox", T0 + 1).reason is Reason.PAUSED
    assert engine.decide(FIREFOX, "Inbox", T0 + 5 * MIN).reason is Reason.CAPTURING


def test_policy_expiry_stops_capture_in_the_same_engine() -> None:
    engine = DecisionEngine(capturing_state())
    assert engine.decide(FIREFOX, "Inbox", POLICY_EXPIRES - 1).capture
    assert engine.decide(FIREFOX, "Inbox", POLICY_EXPIRES).reason is Reason.POLICY_EXPIRED


def test_engine_follows_a_clock_that_steps_back() -> None:
    expiry = T0 + MIN
    engine = DecisionEngine(capturing_state(grants=(make_grant(Category.SENSITIVE, expiry),)))
    assert engine.decide(FIREFOX, "", expiry + 1).capture
    assert engine.decide(FIREFOX, "", expiry - 1).reason is Reason.EXEMPT


def test_replacing_the_state_replaces_cached_decisions() -> None:
    engine = DecisionEngine(capturing_state())
    assert engine.decide(FIREFOX, "", T0).screenshots is not None
    engine.set_state(engine.state.with_power(on_battery=True))
    assert engine.decide(FIREFOX, "", T0).screenshots is None
    engine.set_state(engine.state.with_policy(make_policy(apps=(app_rule("x", process=("x",)),))))
    assert engine.decide(FIREFOX, "", T0).reason is Reason.SELF_TEST_FAILED


def test_engine_cache_stays_bounded() -> None:
    engine = DecisionEngine(capturing_state(), max_entries=50)
    for i in range(500):
        engine.decide(FIREFOX, f"page {i}", T0 + i)
        assert engine.cache_size <= 50


def test_next_change_is_the_nearest_boundary() -> None:
    state = capturing_state(grants=(make_grant(Category.BANDWIDTH, T0 + DAY),)).paused(T0, 10)
    assert next_change(state, T0) == T0 + 10 * MIN
    assert next_change(state, T0 + 10 * MIN) == T0 + DAY
    assert next_change(state, POLICY_EXPIRES) is None


IDENTITIES = [FIREFOX, CODE, SLACK, KEEPASS, SPOTIFY, AppIdentity(wm_class="FIREFOX"), None]
TITLES = ["Inbox", "Bank login", "Payroll", "ticket 123456", "", "Private Browsing"]
CACHE_APPS = (
    app_rule(
        "browser",
        process=("firefox",),
        keys=KeyMode.TEXT,
        title_rules=(("Bank", "skip"), ("Payroll", "drop"), (r"\d{6}", "mask")),
    ),
    *DEFAULT_APPS[1:],
)

_step = st.tuples(
    st.sampled_from(["none", "pause", "resume", "grant", "ungrant", "battery", "ac", "spool"]),
    st.sampled_from(IDENTITIES),
    st.sampled_from(TITLES),
    st.floats(min_value=-30.0, max_value=400.0),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=60), max_entries=st.integers(1, 8))
def test_cached_decisions_equal_the_pure_function(
    steps: list[tuple[str, AppIdentity | None, str, float]], max_entries: int
) -> None:
    policy = make_policy(
        apps=CACHE_APPS, never=(AppMatch(process_names=("keepassxc",)),), expires=T0 + 3000
    )
    state = capturing_state(policy)
    engine = DecisionEngine(state, max_entries=max_entries)
    now = T0
    for op, app, title, dt in steps:
        now += dt
        if op == "pause":
            state = state.paused(now, 2)
        elif op == "resume":
            state = state.resumed()
        elif op == "grant":
            grants = (
                make_grant(Category.BANDWIDTH, now + 100, "a"),
                make_grant(Category.OTHER, now + 50, "b"),
            )
            state = state.with_grants(grants)
        elif op == "ungrant":
            state = state.with_grants(())
        elif op in ("battery", "ac"):
            state = state.with_power(on_battery=op == "battery")
        elif op == "spool":
            state = state.with_spool_full(full=not state.spool_full)
        if op != "none":
            engine.set_state(state)
        assert engine.decide(app, title, now) == decide(state, app, title, now)


# --- uploads -------------------------------------------------------------------


def test_upload_needs_a_policy() -> None:
    assert upload_allowed(CaptureState(), 0, T0) == (False, UploadReason.NO_POLICY)


def test_upload_stops_when_the_policy_expires() -> None:
    assert upload_allowed(capturing_state(), 0, POLICY_EXPIRES) == (
        False,
        UploadReason.POLICY_EXPIRED,
    )


def test_upload_is_allowed_on_an_unmetered_network_within_budget() -> None:
    assert upload_allowed(capturing_state(), 0, T0) == (True, UploadReason.ALLOWED)


def test_upload_waits_for_an_unmetered_network() -> None:
    state = capturing_state(metered=True)
    assert upload_allowed(state, 0, T0) == (False, UploadReason.METERED)
    permissive = capturing_state(
        make_policy(upload=UploadRules(unmetered_only=False)), metered=True
    )
    assert upload_allowed(permissive, 0, T0) == (True, UploadReason.ALLOWED)


def test_upload_waits_for_ac_power_when_the_policy_says_so() -> None:
    state = capturing_state(make_policy(upload=UploadRules(ac_only=True)), on_battery=True)
    assert upload_allowed(state, 0, T0) == (False, UploadReason.ON_BATTERY)
    assert upload_allowed(capturing_state(on_battery=True), 0, T0) == (True, UploadReason.ALLOWED)


def test_battery_grant_makes_uploads_wait_for_ac_power() -> None:
    state = capturing_state(on_battery=True, grants=(make_grant(Category.BATTERY, T0 + MIN),))
    assert upload_allowed(state, 0, T0) == (False, UploadReason.ON_BATTERY)
    assert upload_allowed(state, 0, T0 + MIN) == (True, UploadReason.ALLOWED)


def test_bandwidth_grant_requires_unmetered_and_lowers_the_daily_budget() -> None:
    permissive = make_policy(upload=UploadRules(unmetered_only=False, daily_bytes=100 * 2**20))
    grant = make_grant(Category.BANDWIDTH, T0 + DAY)
    state = capturing_state(permissive, grants=(grant,), metered=True)
    assert upload_allowed(state, 0, T0) == (False, UploadReason.METERED)
    unmetered = state.with_network(metered=False)
    assert daily_upload_budget(unmetered, T0) == 5 * 2**20
    assert upload_allowed(unmetered, 5 * 2**20 - 1, T0) == (True, UploadReason.ALLOWED)
    assert upload_allowed(unmetered, 5 * 2**20, T0) == (False, UploadReason.DAILY_BUDGET_SPENT)


def test_upload_stops_when_the_daily_budget_is_spent() -> None:
    budget = 50 * 2**20
    assert upload_allowed(capturing_state(), budget, T0) == (
        False,
        UploadReason.DAILY_BUDGET_SPENT,
    )


def test_pause_does_not_stop_uploads_of_sealed_batches() -> None:
    assert upload_allowed(capturing_state().paused(T0), 0, T0) == (True, UploadReason.ALLOWED)
