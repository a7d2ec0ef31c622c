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
from policies.model import AppMatch, Category, KeyMode, TitleAction, UploadRules

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
