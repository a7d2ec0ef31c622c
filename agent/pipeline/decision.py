"""The decision engine: for each event, whether and how it may be captured.

This module owns the gate at the head of the pipeline. Given the capture state
(policy, consent, pause, exemption grants, power, network, filter self-test,
spool) and an event's context (the focused app's identity and window title) it
returns a ``Decision``: drop, or capture with which keystroke mode, mouse or
not, which screenshot settings, and what to do with the title. It also answers
whether uploading is allowed (``upload_allowed``).

It does not own where the state comes from (policy sync, the control API,
power and network probes, the spool), signature checks on policies and grants
(done before they get here), nor what the later stages do with a decision.
Everything here is a pure function of ``(state, context, now)`` with ``now`` in
float epoch seconds; ``DecisionEngine`` only adds a cache.

Fail closed, and why
--------------------
Capture stops for every window, with the first reason that applies, in this
order (``BLOCKING_REASONS``)::

    NO_POLICY > POLICY_EXPIRED > SELF_TEST_FAILED > NO_CONSENT
    > CONSENT_DECLINED > CONSENT_OUTDATED > EXEMPT > PAUSED > SPOOL_FULL

Problems with the policy and the filter come first: without them nothing else
can even be judged, and IT has to act. Consent comes next because only the
employee can fix it, and the tray must ask for it. An exemption outranks a
pause because it is the longer-lasting fact. A full spool comes last: it is
the only reason that clears by itself. Then, per window::

    NO_WINDOW > NEVER_CAPTURED > NOT_ALLOWED > TITLE_SKIPPED

Which app rule admits a window (and why a program can fake its way out of a
rule but not into one) is :mod:`agent.pipeline.matching`.

Time
----
The decision depends on ``now`` only through comparisons with a few instants
of the state (``CaptureState.boundaries``): the end of the pause, the policy's
expiry and each grant's expiry. Between two consecutive boundaries the answer
for a context is constant, which is what lets ``DecisionEngine`` cache it.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from agent.events import AppIdentity, WindowInfo
from policies.model import (
    ExemptionEffect,
    Grant,
    KeyMode,
    Policy,
    Screenshots,
    TitleAction,
    weaker_key_mode,
)

from .consent import ConsentRecord, SurfaceItem, surface_covers
from .matching import CompiledPolicy, first_rule, identity_keys
from .pause import DEFAULT_MAX_MINUTES, RUNNING, PauseState


class Reason(StrEnum):
    """Why capture is on or off for an event."""

    CAPTURING = "capturing"
    NO_POLICY = "no_policy"
    POLICY_EXPIRED = "policy_expired"
    NO_CONSENT = "no_consent"
    CONSENT_DECLINED = "consent_declined"  # the employee answered the notice with no
    CONSENT_OUTDATED = "consent_outdated"
    SELF_TEST_FAILED = "self_test_failed"
    PAUSED = "paused"
    EXEMPT = "exempt"
    SPOOL_FULL = "spool_full"
    NO_WINDOW = "no_window"
    NOT_ALLOWED = "not_allowed"  # the app is not on the allow-list
    NEVER_CAPTURED = "never_captured"  # the app is on the policy's never-capture list
    TITLE_SKIPPED = "title_skipped"  # a title rule excludes this window


#: Reasons that stop capture for every window, strongest first.
BLOCKING_REASONS = (
    Reason.NO_POLICY,
    Reason.POLICY_EXPIRED,
    Reason.SELF_TEST_FAILED,
    Reason.NO_CONSENT,
    Reason.CONSENT_DECLINED,
    Reason.CONSENT_OUTDATED,
    Reason.EXEMPT,
    Reason.PAUSED,
    Reason.SPOOL_FULL,
)


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


_DROP = {reason: Decision(capture=False, reason=reason) for reason in Reason}


# --- the capture state -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaptureState:
    """Everything the gate needs to know besides the event, as one value.

    Build it once and replace it (the ``with_*`` methods) whenever something
    changes; never mutate. ``policy`` is the verified policy in force, already
    compiled (``CaptureState.build`` does that for you). ``grants`` are
    signature-verified exemption grants; expired ones are ignored here, so the
    holder need not prune them. The defaults are fail-closed: no policy and no
    passed self-test.
    """

    policy: CompiledPolicy | None = None
    consent: ConsentRecord | None = None
    pause: PauseState = RUNNING
    grants: tuple[Grant, ...] = ()
    on_battery: bool = False
    metered: bool = False
    self_test_passed: bool = False
    spool_full: bool = False
    #: Why consent blocks capture under this policy, or None.
    consent_block: Reason | None = field(init=False, repr=False, compare=False)
    #: (expiry timestamp, effect) of every grant, for the policy in force.
    grant_effects: tuple[tuple[float, ExemptionEffect], ...] = field(
        init=False, repr=False, compare=False
    )
    #: The sorted instants at which the decision may change (see module doc).
    boundaries: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = self.policy
        block: Reason | None = None
        effects: tuple[tuple[float, ExemptionEffect], ...] = ()
        instants: set[float] = set()
        if compiled is not None:
            block = _consent_block(self.consent, compiled.surface)
            effects = tuple((g.expires.timestamp(), compiled.effect(g)) for g in self.grants)
            instants.add(compiled.expires_at)
            instants.update(expiry for expiry, _ in effects)
        if self.pause.resumes_at is not None:
            instants.add(self.pause.resumes_at)
        object.__setattr__(self, "consent_block", block)
        object.__setattr__(self, "grant_effects", effects)
        object.__setattr__(self, "boundaries", tuple(sorted(instants)))

    @classmethod
    def build(
        cls,
        policy: Policy | None,
        *,
        consent: ConsentRecord | None = None,
        pause: PauseState = RUNNING,
        grants: tuple[Grant, ...] = (),
        on_battery: bool = False,
        metered: bool = False,
        self_test_passed: bool = False,
        spool_full: bool = False,
    ) -> CaptureState:
        return cls(
            policy=None if policy is None else CompiledPolicy.of(policy),
            consent=consent,
            pause=pause,
            grants=tuple(grants),
            on_battery=on_battery,
            metered=metered,
            self_test_passed=self_test_passed,
            spool_full=spool_full,
        )

    @property
    def max_pause_minutes(self) -> int:
        return DEFAULT_MAX_MINUTES if self.policy is None else self.policy.policy.pause.max_minutes

    def with_policy(self, policy: Policy | None) -> CaptureState:
        """A new policy. The filter self-test must pass again under it, so
        ``self_test_passed`` is reset to False."""
        compiled = None if policy is None else CompiledPolicy.of(policy)
        return dataclasses.replace(self, policy=compiled, self_test_passed=False)

    def with_consent(self, consent: ConsentRecord | None) -> CaptureState:
        return dataclasses.replace(self, consent=consent)

    def paused(self, now: float, minutes: float | None = None) -> CaptureState:
        """Pause for ``minutes`` (the policy's maximum when None; clamped to it)."""
        pause = self.pause.pause(now, minutes, self.max_pause_minutes)
        return dataclasses.replace(self, pause=pause)

    def resumed(self) -> CaptureState:
        return dataclasses.replace(self, pause=self.pause.resume())

    def with_grants(self, grants: tuple[Grant, ...]) -> CaptureState:
        return dataclasses.replace(self, grants=tuple(grants))

    def with_power(self, *, on_battery: bool) -> CaptureState:
        return dataclasses.replace(self, on_battery=on_battery)

    def with_network(self, *, metered: bool) -> CaptureState:
        return dataclasses.replace(self, metered=metered)

    def with_self_test(self, *, passed: bool) -> CaptureState:
        return dataclasses.replace(self, self_test_passed=passed)

    def with_spool_full(self, *, full: bool) -> CaptureState:
        return dataclasses.replace(self, spool_full=full)


def _consent_block(consent: ConsentRecord | None, surface: frozenset[SurfaceItem]) -> Reason | None:
    if consent is None:
        return Reason.NO_CONSENT
    if not consent.accepted:
        return Reason.CONSENT_DECLINED
    if not surface_covers(consent.surface, surface):
        return Reason.CONSENT_OUTDATED
    return None


# --- the pure decision -------------------------------------------------------


class Period(NamedTuple):
    """What holds for every ``now`` in ``[start, end)`` under one state."""

    start: float
    end: float
    #: Why nothing is captured, or None when windows are judged one by one.
    block: Reason | None
    #: The strongest keystroke mode the active grants allow.
    max_keys: KeyMode
    #: Whether the active grants allow screenshots.
    screenshots: bool


def period(state: CaptureState, now: float) -> Period:
    """The span of time around ``now`` in which ``state`` decides alike."""
    bounds = state.boundaries
    i = bisect.bisect_right(bounds, now)
    start = bounds[i - 1] if i > 0 else -math.inf
    end = bounds[i] if i < len(bounds) else math.inf
    max_keys, screenshots, stop = KeyMode.TEXT, True, False
    for expires_at, effect in state.grant_effects:
        if now < expires_at:
            stop = stop or effect.stop_capture
            screenshots = screenshots and effect.screenshots
            max_keys = weaker_key_mode(max_keys, effect.max_keystrokes)
    return Period(start, end, _block(state, now, stop), max_keys, screenshots)


def _block(state: CaptureState, now: float, exempt: bool) -> Reason | None:
    if state.policy is None:
        return Reason.NO_POLICY
    if not now < state.policy.expires_at:  # written so that a NaN ``now`` fails closed
        return Reason.POLICY_EXPIRED
    if not state.self_test_passed:
        return Reason.SELF_TEST_FAILED
    if state.consent_block is not None:
        return state.consent_block
    if exempt:
        return Reason.EXEMPT
    if state.pause.is_paused(now):
        return Reason.PAUSED
    if state.spool_full:
        return Reason.SPOOL_FULL
    return None


def capture_status(state: CaptureState, now: float) -> Reason:
    """Why capture is off everywhere, or CAPTURING when windows are judged
    one by one (for the tray and the control API)."""
    return period(state, now).block or Reason.CAPTURING


def next_change(state: CaptureState, now: float) -> float | None:
    """The next instant after ``now`` at which decisions may change by
    themselves (a pause ends, the policy or a grant expires), or None."""
    end = period(state, now).end
    return None if math.isinf(end) else end


def decide(state: CaptureState, app: AppIdentity | None, title: str, now: float) -> Decision:
    """The decision for an event in the window of ``app`` titled ``title``
    (``app`` is None when no window has focus)."""
    span = period(state, now)
    if span.block is not None:
        return _DROP[span.block]
    assert state.policy is not None  # no block implies a policy
    return _decide_window(state.policy, state.on_battery, span, app, title)


def decide_window(state: CaptureState, window: WindowInfo | None, now: float) -> Decision:
    """``decide`` for a focused window (None when nothing has focus)."""
    if window is None:
        return decide(state, None, "", now)
    return decide(state, window.app, window.title, now)


def _decide_window(
    compiled: CompiledPolicy,
    on_battery: bool,
    span: Period,
    app: AppIdentity | None,
    title: str,
) -> Decision:
    if app is None:
        return _DROP[Reason.NO_WINDOW]
    keys = identity_keys(app)
    if not compiled.never.isdisjoint(keys):
        return _DROP[Reason.NEVER_CAPTURED]
    position = first_rule(compiled, keys)
    if position is None:
        return _DROP[Reason.NOT_ALLOWED]
    rule = compiled.apps[position]

    masks: list[str] = []
    drop_title = False
    for title_rule in rule.title_rules:
        if title_rule.regex.search(title) is None:
            continue
        if title_rule.action == "skip":
            return Decision(capture=False, reason=Reason.TITLE_SKIPPED, app_id=rule.id)
        if title_rule.action == "drop":
            drop_title = True
        elif title_rule.pattern not in masks:
            masks.append(title_rule.pattern)

    cap = rule.capture
    policy = compiled.policy
    shots_ok = (
        cap.screenshots.enabled
        and not cap.actions_only
        and span.screenshots
        and (policy.battery.screenshots or not on_battery)
    )
    title_masks: tuple[str, ...] = ()
    if cap.actions_only or drop_title or cap.titles is TitleAction.DROP:
        title_action = TitleAction.DROP
    elif masks:
        title_action, title_masks = TitleAction.MASK, tuple(masks)
    else:
        title_action = cap.titles
    return Decision(
        capture=True,
        reason=Reason.CAPTURING,
        app_id=rule.id,
        keys=weaker_key_mode(cap.keystrokes, span.max_keys),
        mouse=cap.mouse,
        screenshots=cap.screenshots if shots_ok else None,
        title=title_action,
        title_masks=title_masks,
        actions_only=cap.actions_only,
    )


# --- the cache -----------------------------------------------------------------


class DecisionEngine:
    """``decide`` with a cache, for the hot path (one call per input event).

    Holds the current ``CaptureState``; replace it with ``set_state``. Cached
    decisions are keyed by ``(app, title)`` and are valid while the state's
    window-relevant parts (policy object, power, grant effects) stay the same
    and ``now`` stays inside the current ``Period``; a hit costs a range check
    and a dict lookup. The cache is emptied when it reaches ``max_entries``
    (titles change a lot; a cold start costs little).

    Not thread-safe: one engine per pipeline thread.
    """

    __slots__ = ("_block", "_cache", "_end", "_max_entries", "_span", "_start", "_state", "_token")

    def __init__(self, state: CaptureState, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._cache: dict[tuple[AppIdentity | None, str], Decision] = {}
        self._token: tuple[object, ...] = ()
        self._state = state
        self._span: Period | None = None
        self._block: Decision | None = None
        # An empty range: the first call computes the period.
        self._start, self._end = math.inf, -math.inf

    @property
    def state(self) -> CaptureState:
        return self._state

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def set_state(self, state: CaptureState) -> None:
        """Replace the state; decisions are recomputed from the next call."""
        self._state = state
        self._start, self._end = math.inf, -math.inf

    def decide(self, app: AppIdentity | None, title: str, now: float) -> Decision:
        """Equal to ``decide(self.state, app, title, now)``."""
        if not self._start <= now < self._end:
            self._enter_period(now)
        if self._block is not None:
            return self._block
        key = (app, title)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        span = self._span
        policy = self._state.policy
        # Both are set when _enter_period finds no block.
        assert span is not None
        assert policy is not None
        decision = _decide_window(policy, self._state.on_battery, span, app, title)
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def decide_window(self, window: WindowInfo | None, now: float) -> Decision:
        if window is None:
            return self.decide(None, "", now)
        return self.decide(window.app, window.title, now)

    def _enter_period(self, now: float) -> None:
        state = self._state
        span = period(state, now)
        self._span = span
        self._start, self._end = span.start, span.end
        self._block = None if span.block is None else _DROP[span.block]
        # Window decisions depend on nothing else; keep them across pause
        # toggles and consent changes.
        token = (state.policy, state.on_battery, span.max_keys, span.screenshots)
        if token != self._token:
            self._cache.clear()
            self._token = token


# --- uploads -------------------------------------------------------------------


class UploadReason(StrEnum):
    """Why uploading is allowed or not right now."""

    ALLOWED = "allowed"
    NO_POLICY = "no_policy"
    POLICY_EXPIRED = "policy_expired"
    ON_BATTERY = "on_battery"
    METERED = "metered"
    DAILY_BUDGET_SPENT = "daily_budget_spent"


def daily_upload_budget(state: CaptureState, now: float) -> int:
    """Bytes that may be uploaded per day: the policy's budget, lowered by any
    active grant's ``daily_upload_bytes``; 0 without a policy."""
    if state.policy is None:
        return 0
    budget = state.policy.policy.upload.daily_bytes
    for expires_at, effect in state.grant_effects:
        if now < expires_at and effect.daily_upload_bytes is not None:
            budget = min(budget, effect.daily_upload_bytes)
    return budget


def upload_allowed(
    state: CaptureState, uploaded_today_bytes: int, now: float
) -> tuple[bool, UploadReason]:
    """Whether sealed batches may be uploaded now, and why (not).

    Fails closed without a valid policy (its limits are unknown or stale).
    Pauses, consent and stop-capture exemptions do not stop uploads of what
    was already captured and sealed; the spool's review window and discard
    handle that. Conditions are checked in the order of ``UploadReason``.
    """
    if state.policy is None:
        return False, UploadReason.NO_POLICY
    if not now < state.policy.expires_at:
        return False, UploadReason.POLICY_EXPIRED
    rules = state.policy.policy.upload
    ac_only, unmetered_only = rules.ac_only, rules.unmetered_only
    for expires_at, effect in state.grant_effects:
        if now < expires_at:
            ac_only = ac_only or effect.upload_ac_only
            unmetered_only = unmetered_only or effect.upload_unmetered_only
    if ac_only and state.on_battery:
        return False, UploadReason.ON_BATTERY
    if unmetered_only and state.metered:
        return False, UploadReason.METERED
    if uploaded_today_bytes >= daily_upload_budget(state, now):
        return False, UploadReason.DAILY_BUDGET_SPENT
    return True, UploadReason.ALLOWED
