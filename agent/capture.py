"""Capture: what the agent does with each event, and when capture is on.

This module owns :class:`Capture`, the capture logic the agent's pipeline
thread and its control calls run, one at a time, under the agent's lock
(``agent.app`` holds the lock, the threads and the wiring). It starts no
thread, builds no source, reads no file but the consent on record, and
verifies nothing: policies and grants arrive verified from
``agent.trust``.

For each event it asks the window probe where the event really went — the
window the server delivered a key to, the top-level window under a press
among all of them, whether a pointer move lies on the visible part of the
focused window — asks the decision engine, feeds the pipeline and hands
finished batches to the :class:`~agent.batch_writer.BatchWriter`. An event
the probe cannot place is dropped, never guessed. A release goes where its
press went (the server's implicit grab); a pointer at rest that a restack
covers ends its rest at once. Screenshot requests go to the grab worker,
whose frames come back through :meth:`Capture.on_frame` and are decided
again (the title may have changed).

When capture is on at all: with a verified policy in force that passed the
filter self-test, consent to it, and neither a pause nor a capture-stopping
exemption nor batches the sink refuses. The input hooks and the focus and
restack subscriptions are installed exactly while that holds. Pausing
removes them and drops everything buffered but not yet batched; the pause
ends by itself at its deadline, and the hooks come back. Every new policy is
self-tested and held against the recorded consent before anything is
captured under it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.batch_writer import BatchWriter, WriteChange
from agent.events import (
    FocusChange,
    Frame,
    Gap,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    Restacked,
    SourceEvent,
    WindowInfo,
)
from agent.grab_worker import GrabWorker
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import (
    CaptureState,
    DecisionEngine,
    Reason,
    capture_status,
)
from agent.pipeline.matching import digest_paths
from agent.pipeline.pause import PauseState
from agent.pipeline.pipeline import Action, BatchReady, Pipeline
from agent.pipeline.screens import GrabRequest
from agent.selftest import run_self_test
from agent.sources.canary import Canary
from agent.sources.errors import SourceError
from agent.sources.input import EventQueue, InputHooks
from agent.sources.window import Unsubscribe, WindowProbe
from agent.trust import InForce
from overt.wire.batch import Batch
from overt.wire.records import MarkerKind
from policies.model import Grant, Policy

log = logging.getLogger(__name__)


class AgentError(Exception):
    """A control request the agent cannot carry out (e.g. consent with no policy)."""


@dataclass(frozen=True, slots=True)
class Discarded:
    """What ``Agent.discard`` removed from memory; the spool's part is the service's."""

    since_ms: int
    until_ms: int
    records_dropped: int
    batches_dropped: int


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """What the agent is doing and why, for people and for tests."""

    capturing: bool
    reason: Reason
    policy_version: int | None
    #: Why the policy or the self-test is not good, in words; None if all is well.
    problem: str | None
    hooks_installed: bool
    paused_until: float | None
    batches_written: int
    events_seen: int
    #: Events lost before they reached the pipeline (queue overflow).
    events_lost: int
    #: Finished batches waiting because the sink refused them.
    batches_held: int
    #: The window that has focus now, and whether the policy lets it be captured.
    current_app: str | None = None
    current_app_allowed: bool = False
    #: Exemption grants in force (verified against the policy).
    grants: tuple[Grant, ...] = ()
    #: Whether the policy in force needs (new) consent before capture.
    consent_needed: bool = False
    #: Batches of an earlier run that never reached the sink (a crash, or an
    #: exit while writes failed), as ``report_lost_batches`` was told.
    batches_lost: int = 0


class Capture:
    """One desktop user's capture state and per-event logic (see the module docstring).

    Every method must be called with the agent's lock held.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        local: LocalState,
        probe: WindowProbe,
        hooks: InputHooks,
        queue: EventQueue,
        grabs: GrabWorker,
        writer: BatchWriter,
        canary: Callable[[], Canary],
        make_pipeline: Callable[[Policy], Pipeline],
        stopping: Callable[[], bool],
        on_policy: Callable[[Policy | None], None] | None = None,
    ) -> None:
        self._clock = clock
        self._local = local
        self._probe = probe
        self._hooks = hooks
        self._queue = queue
        self._grabs = grabs
        self._writer = writer
        self._canary = canary
        self._make_pipeline = make_pipeline
        self._stopping = stopping
        #: Told (under the agent's lock) whenever another policy comes into force.
        self._on_policy = on_policy
        self._policy: Policy | None = None
        #: Why the trust holder has no good policy or refused a file; None if none.
        self._trust_problem: str | None = None
        #: Why the policy in force failed the filter self-test; None if it passed.
        self._self_test_problem: str | None = None
        self._engine = DecisionEngine(CaptureState.build(None))
        self._pipeline: Pipeline | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._unsubscribe_restack: Unsubscribe | None = None
        self._active: WindowInfo | None = None
        #: Where the pointer last was (screen), for telling when it got covered.
        self._pointer: tuple[int, int] | None = None
        #: Whether that spot was on the visible part of the focused window.
        self._pointer_shown = False
        #: The window each held button's press went to (its release goes there too).
        self._pressed: dict[str, WindowInfo | None] = {}
        self._events_seen = 0
        self._events_lost = 0
        self._batches_lost = 0
        #: Lost batches the next batch's gap marker has yet to mention.
        self._lost_unmarked = 0

    @property
    def policy(self) -> Policy | None:
        return self._policy

    @property
    def state(self) -> CaptureState:
        return self._engine.state

    def load_consent(self) -> None:
        """Take up the answer on record (at start, before any policy)."""
        self._engine.set_state(CaptureState.build(None, consent=self._local.consent()))

    # ------------------------------------------------------------ what is trusted

    def apply_trust(self, in_force: InForce, now: float) -> None:
        """Put what the trust holder handed on in force: self-test a new policy,
        re-check consent, apply the grants, adapt the hooks."""
        self._trust_problem = in_force.problem
        policy = in_force.policy
        if policy is None:
            changed = self._policy is not None
            self._policy = None
            self._engine.set_state(self._engine.state.with_policy(None).with_grants(()))
            if changed and self._on_policy is not None:
                self._on_policy(None)
            self._sync_hooks(now)
            return
        if self._policy is None or policy.version != self._policy.version:
            self._adopt(policy, now)
        self._engine.set_state(self._engine.state.with_grants(in_force.grants))
        self._sync_hooks(now)

    def _adopt(self, policy: Policy, now: float) -> None:
        # Every new policy is self-tested before anything is captured under it.
        result = run_self_test(self._probe, policy, now, opener=self._canary)
        self._self_test_problem = None
        if not result.passed:
            self._self_test_problem = f"filter self-test failed: {result.detail}"
            log.error("filter self-test failed for policy version %d", policy.version)
        state = self._engine.state
        self._engine.set_state(state.with_policy(policy).with_self_test(passed=result.passed))
        if self._pipeline is None:
            self._pipeline = self._make_pipeline(policy)
        else:
            self._handle(
                self._pipeline.policy_changed(
                    policy.redaction, policy.version, policy.dataset_key.key_id, now
                )
            )
        self._policy = policy
        self._probe.set_digest_paths(digest_paths(policy))
        log.info("policy version %d in force", policy.version)
        if self._on_policy is not None:
            self._on_policy(policy)

    # ------------------------------------------------------------ controls

    def pause(self, now: float, minutes: float | None) -> PauseState:
        state = self._engine.state.paused(now, minutes)
        self._engine.set_state(state)
        self._remove_hooks()
        if self._pipeline is not None:
            dropped = self._pipeline.drop_buffered()
            log.info("paused; %d buffered records dropped", dropped)
            self._handle(self._pipeline.marker(MarkerKind.PAUSE_START, now))
        return state.pause

    def resume(self, now: float) -> None:
        state = self._engine.state
        if state.pause.resumes_at is None:
            return
        self._engine.set_state(state.resumed())
        if self._pipeline is not None:
            self._handle(self._pipeline.marker(MarkerKind.PAUSE_END, now))
        self._sync_hooks(now)
        log.info("capture resumed")

    def report_lost_batches(self, count: int) -> None:
        self._batches_lost += count
        self._lost_unmarked += count
        log.warning("%d batches of an earlier run were lost before they were spooled", count)

    def set_consent(self, accepted: bool, now: float) -> ConsentRecord:
        if self._policy is None:
            raise AgentError("there is no policy in force to answer")
        make = ConsentRecord.accept if accepted else ConsentRecord.decline
        record = make(self._policy, now)
        self._local.save_consent(record)
        self._engine.set_state(self._engine.state.with_consent(record))
        if self._pipeline is not None:
            detail = "accepted" if accepted else "declined"
            self._handle(self._pipeline.marker(MarkerKind.CONSENT, now, detail))
        log.info(
            "consent %s for policy version %d",
            "given" if accepted else "declined",
            self._policy.version,
        )
        self._sync_hooks(now)
        return record

    def discard(self, minutes: float, now: float) -> Discarded:
        since_ms = int((now - minutes * 60) * 1000)
        records = 0
        if self._pipeline is not None:
            records = self._pipeline.drop_buffered()
        batches = self._writer.drop_since(since_ms)
        if self._pipeline is not None:
            self._handle(self._pipeline.marker(MarkerKind.DISCARD, now))
            if self._hooks.installed:
                # Start again from the focused window, as after a resume.
                self._active = None
                self._queue.put(FocusChange(now, self._probe.active()))
        log.info("discard: %d buffered records, %d unwritten batches", records, batches)
        return Discarded(since_ms, int(now * 1000), records, batches)

    def status(self, now: float) -> AgentStatus:
        state = self._engine.state
        reason = capture_status(state, now)
        active = self._active if self._hooks.installed else None
        if active is None and self._policy is not None:
            try:
                active = self._probe.active()
            except SourceError:
                active = None
        app_allowed, app_name = False, None
        if active is not None:
            decision = self._engine.decide_window(active, now)
            app_allowed = decision.capture
            identity = active.app
            app_name = decision.app_id or (
                identity.wm_class or identity.process_name or identity.exe_name or None
            )
        writer = self._writer
        return AgentStatus(
            capturing=reason is Reason.CAPTURING,
            reason=reason,
            policy_version=None if self._policy is None else self._policy.version,
            problem=writer.problem or self._self_test_problem or self._trust_problem,
            hooks_installed=self._hooks.installed,
            paused_until=state.pause.resumes_at if state.pause.is_paused(now) else None,
            batches_written=writer.written,
            events_seen=self._events_seen,
            events_lost=self._events_lost,
            batches_held=len(writer.held),
            current_app=app_name,
            current_app_allowed=app_allowed,
            grants=tuple(g for g in state.grants if g.expires.timestamp() > now),
            consent_needed=reason
            in (Reason.NO_CONSENT, Reason.CONSENT_OUTDATED, Reason.CONSENT_DECLINED),
            batches_lost=self._batches_lost,
        )

    def flush(self, now: float) -> None:
        if self._pipeline is not None:
            for batch in self._pipeline.flush(now):
                self._write(batch)

    def stop(self, now: float) -> None:
        """Remove the hooks, write what was captured, give up what cannot be."""
        self._remove_hooks()
        if self._pipeline is not None:
            for batch in self._pipeline.stop_capture(now):
                self._write(batch)
        if self._writer.held:
            self._react(self._writer.write_held(self._clock()), self._clock())
        self._writer.give_up()

    # ------------------------------------------------------------ the pipeline thread

    def tick(self, now: float) -> None:
        state = self._engine.state
        if state.pause.resumes_at is not None and not state.pause.is_paused(now):
            self.resume(now)
        if self._writer.retry_due(now):
            self._react(self._writer.write_held(now), now)
        self.mark_lost(now)
        self._sync_hooks(now)
        if self._pipeline is not None:
            self._handle(self._pipeline.tick(now))

    def mark_lost(self, now: float) -> None:
        if self._lost_unmarked and self._pipeline is not None:
            self._lost_unmarked = 0
            self._handle(self._pipeline.marker(MarkerKind.GAP, now, "batches_lost"))

    def on_event(self, event: SourceEvent, now: float) -> None:
        pipeline = self._pipeline
        if pipeline is None or not self._hooks.installed:
            return
        self._events_seen += 1
        window: WindowInfo | None
        if isinstance(event, FocusChange):
            if event.window is not None and event.window == self._active:
                return  # the watcher reporting the window we already know: no change
            self._active = event.window
            window = event.window
        elif isinstance(event, MouseMove):
            self._pointer = (event.x, event.y)
            window = self._window_under_move(event)
            if window is None:
                # Off the visible part of the focused window: not captured, and
                # a rest there ends now, not when the pointer comes back.
                if self._pointer_shown:
                    self._pointer_shown = False
                    self._handle(pipeline.pointer_hidden(event.t, now))
                return
            self._pointer_shown = True
        elif isinstance(event, MouseButton):
            if event.pressed:
                window = self._pointer_window(event)
                self._pressed[event.button] = window
            else:
                # A release goes where its press went (the server's implicit grab).
                window = self._pressed.pop(event.button, None)
        elif isinstance(event, MouseScroll):
            window = self._pointer_window(event)
        elif isinstance(event, Restacked):
            self._on_restack(pipeline, event.t, now)
            return
        elif isinstance(event, Gap):
            self._events_lost += event.count
            self._handle(pipeline.marker(MarkerKind.GAP, now, event.reason, event.count))
            return
        else:
            assert isinstance(event, KeyEvent)
            window = self._window_by_id(self._probe.key_receiver(event))
        decision = self._engine.decide_window(window, now)
        self._handle(pipeline.feed(event, decision, window, now))

    def on_frame(self, frame: Frame, window: WindowInfo, now: float) -> None:
        if self._pipeline is None or not self._hooks.installed:
            return
        decision = self._engine.decide_window(window, now)
        self._handle(self._pipeline.feed_frame(frame, decision, now))

    # ------------------------------------------------------------ where events went

    def _window_by_id(self, window_id: int | None) -> WindowInfo | None:
        """The window the probe named: the focused one as the watcher described it, or read now."""
        if window_id is None:
            return None
        active = self._active
        if active is not None and active.window_id == window_id:
            return active
        return self._probe.describe(window_id)

    def _pointer_window(self, event: MouseButton | MouseScroll) -> WindowInfo | None:
        """The window a press or scroll went to, if the point is inside its client area."""
        self._pointer = (event.x, event.y)
        window = self._window_by_id(self._probe.pointer_receiver(event))
        if window is None or not window.rect.contains(event.x, event.y):
            return None  # title bars and borders are the window manager's
        return window

    def _window_under_move(self, event: MouseMove) -> WindowInfo | None:
        """The focused window if the pointer is on a visible part of it, else None.

        Moves arrive at up to 1 kHz, too often to ask the X server each time:
        the probe answers from the stacking it keeps current from the
        server's events.
        """
        active = self._active
        if active is None or not active.rect.contains(event.x, event.y):
            return None
        if not self._probe.shows(active.window_id, event.x, event.y):
            return None
        return active

    def _on_restack(self, pipeline: Pipeline, at: float, now: float) -> None:
        """Windows moved at ``at``: a pointer at rest over the focused window may be covered."""
        active, pointer = self._active, self._pointer
        if active is None or pointer is None or not self._pointer_shown:
            return
        if not self._probe.shows(active.window_id, *pointer):
            self._pointer_shown = False
            self._handle(pipeline.pointer_hidden(at, now))

    # ------------------------------------------------------------ actions and writes

    def _handle(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, BatchReady):
                self._write(action.batch)
            elif isinstance(action, GrabRequest):
                self._grabs.request(action.window)

    def _write(self, batch: Batch) -> None:
        self._react(self._writer.write(batch), self._clock())

    def _react(self, change: WriteChange, now: float) -> None:
        """Stop capture while batches cannot be written; resume, with a gap
        marker for the stretch not captured, once they all are."""
        if change is WriteChange.FAILING:
            self._engine.set_state(self._engine.state.with_spool_full(full=True))
            self._sync_hooks(now)
        elif change is WriteChange.RECOVERED:
            self._engine.set_state(self._engine.state.with_spool_full(full=False))
            if self._pipeline is not None:
                # The dataset must show that nothing was captured meanwhile.
                self._handle(self._pipeline.marker(MarkerKind.GAP, now, "spool_full"))
            self._sync_hooks(now)

    # ------------------------------------------------------------ the hooks

    def _sync_hooks(self, now: float) -> None:
        """Install the hooks when capture may happen at all, remove them when not."""
        capturing = capture_status(self._engine.state, now) is Reason.CAPTURING
        allowed = capturing and not self._stopping()
        if allowed and not self._hooks.installed:
            self._install_hooks()
        elif not allowed and self._hooks.installed:
            self._remove_hooks()
            if self._pipeline is not None:
                for batch in self._pipeline.stop_capture(now):
                    self._write(batch)

    def _install_hooks(self) -> None:
        self._hooks.start(self._queue)
        queue, clock = self._queue, self._clock

        def on_focus(window: WindowInfo | None) -> None:
            queue.put(FocusChange(clock(), window))

        def on_restack() -> None:
            queue.put(Restacked(clock()))

        self._unsubscribe = self._probe.subscribe(on_focus)
        self._unsubscribe_restack = self._probe.subscribe_restack(on_restack)
        # Start from the window that has focus now, as if focus had just moved there.
        self._active = None
        self._pointer = None
        self._pointer_shown = False
        self._pressed.clear()
        self._queue.put(FocusChange(self._clock(), self._probe.active()))
        log.info("input hooks installed")

    def _remove_hooks(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unsubscribe_restack is not None:
            self._unsubscribe_restack()
            self._unsubscribe_restack = None
        if self._hooks.installed:
            self._hooks.stop()
            log.info("input hooks removed")
        self._grabs.cancel()
        # Whatever the hooks queued before they went is not captured either.
        self._queue.drain()
