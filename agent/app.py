"""The capture agent: wires sources, the gate, the pipeline and a sink together.

This module owns the agent's threads and the capture lifecycle; every rule
about *what* may be captured lives in ``agent.pipeline`` (pure) and every OS
call in ``agent.sources``. Threads:

- **hook threads** (pynput's listeners) and the **focus watcher** (the window
  probe's) only put events on the bounded :class:`EventQueue`;
- the **pipeline thread** (``overt-capture``) takes events off the queue,
  asks the window probe where each one really went — the window the server
  delivered a key to, the top-level window under a press among all of them,
  whether a pointer move lies on the visible part of the focused window —
  asks the decision engine, feeds the pipeline and writes finished batches
  to the sink. An event the probe cannot place is dropped, never guessed.
  It alone touches the engine and the pipeline;
- the **grab thread** (``overt-grab``) carries out screenshot requests: it
  re-reads the window, asks the probe for the window's own visible region,
  grabs its client rectangle, keeps only that region (black elsewhere), and
  skips the frame if anything changed on screen between the question and the
  grab. The pipeline thread decides again (the title may have changed) and
  encodes it.

The policy comes from the trust store (the last good one) or from a signed
file that device management drops in place; the file is checked every few
seconds, and a new policy is verified, self-tested and held against the
recorded consent before anything is captured under it.

Hooks are installed only while capture may happen at all: with a valid
policy, consent, a passed filter self-test, and neither a pause nor a
capture-stopping exemption in force. Pausing removes the hooks and the focus
watcher and drops everything buffered but not yet batched; the pause ends by
itself at its deadline, and the hooks come back.

Public methods (``pause``, ``resume``, ``status``, ``stop``, ``set_consent``,
``discard``, ``reload_policy``, ``reload_grants``) may be called from any
thread; they take the agent's lock, which the pipeline thread holds while it
handles events. Delivery (sealing, the spool, upload, policy sync) and the
control API are wired around the agent by ``agent.service``; the agent only
tells it, through ``on_policy``, which policy is in force.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.config import AgentConfig
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
from agent.local_state import LocalState, LocalStateError
from agent.pipeline.batcher import Batcher
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import (
    CaptureState,
    DecisionEngine,
    Reason,
    capture_status,
    digest_paths,
)
from agent.pipeline.occlusion import keep_visible
from agent.pipeline.pause import PauseState
from agent.pipeline.pipeline import Action, BatchReady, Pipeline
from agent.pipeline.screens import GrabRequest
from agent.policy_source import PolicyInForce, load_policy
from agent.selftest import run_self_test
from agent.sinks.base import Sink, SinkError, SpoolFullError
from agent.sources.canary import Canary, open_canary
from agent.sources.errors import SourceError
from agent.sources.input import EventQueue, InputHooks
from agent.sources.screen import ScreenGrabber
from agent.sources.window import Unsubscribe, WindowProbe
from overt.wire.batch import Batch
from overt.wire.records import MarkerKind
from policies.errors import PolicyError
from policies.model import Grant, Policy
from policies.verify import verify_grant

log = logging.getLogger(__name__)

#: How often the pipeline thread wakes up with nothing to do, at most.
_IDLE_WAKE_S = 0.5
#: How long to wait before trying again to write batches the sink refused.
_WRITE_RETRY_S = 5.0
#: How often to look whether the policy file was replaced.
_POLICY_CHECK_S = 5.0


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


class Agent:
    """One desktop user's capture agent.

    The caller owns the probe, hooks and grabber it is given and closes them
    after ``stop`` (the probe's focus watcher keeps running until then).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        probe: WindowProbe,
        hooks: InputHooks,
        grabber: ScreenGrabber,
        sink: Sink,
        canary: Callable[[], Canary] = open_canary,
        queue_size: int = 10_000,
        on_policy: Callable[[Policy | None], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = config.clock
        self._probe = probe
        self._hooks = hooks
        self._grabber = grabber
        self._sink = sink
        self._canary = canary
        #: Told (under the agent's lock) whenever another policy comes into force.
        self._on_policy = on_policy
        self._local = LocalState(config.state_dir)
        self._queue = EventQueue(maxsize=queue_size, clock=self._clock)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._policy: Policy | None = None
        self._problem: str | None = None
        self._engine = DecisionEngine(CaptureState.build(None))
        self._pipeline: Pipeline | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._active: WindowInfo | None = None
        #: Where the pointer last was (screen), for telling when it got covered.
        self._pointer: tuple[int, int] | None = None
        #: Whether that spot was on the visible part of the focused window.
        self._pointer_shown = False
        #: The window each held button's press went to (its release goes there too).
        self._pressed: dict[str, WindowInfo | None] = {}
        self._unsubscribe_restack: Unsubscribe | None = None
        self._grabs = _GrabWorker(probe, grabber, self._clock, ready=self._queue.wake)
        self._thread: threading.Thread | None = None
        self._batches_written = 0
        self._events_seen = 0
        self._events_lost = 0
        self._errors = 0
        #: Finished batches the sink has not taken yet, oldest first.
        self._unwritten: deque[Batch] = deque()
        self._next_write_retry = 0.0
        #: Why the held batches cannot be written; None while writes succeed.
        self._write_problem: str | None = None
        self._batches_lost = 0
        #: Lost batches the next batch's gap marker has yet to mention.
        self._lost_unmarked = 0
        self._policy_file_seen: tuple[int, int] | None = None
        self._next_policy_check = 0.0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the policy and consent, run the self-test, start capturing if allowed."""
        now = self._clock()
        with self._lock:
            self._load(now)
            self._mark_lost(now)
            self._thread = threading.Thread(target=self._run, name="overt-capture", daemon=True)
            self._thread.start()
            self._grabs.start()

    def stop(self) -> None:
        """Remove the hooks, write what was captured, stop the threads."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._remove_hooks()
            if self._pipeline is not None:
                for batch in self._pipeline.stop_capture(self._clock()):
                    self._write(batch)
            if self._unwritten:
                self._write_held(self._clock())
            if self._unwritten:
                self._give_up_held()
        self._grabs.stop()

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ controls

    def pause(self, minutes: float | None = None) -> PauseState:
        """Pause capture for ``minutes`` (the policy's maximum by default, and at most)."""
        with self._lock:
            now = self._clock()
            state = self._engine.state.paused(now, minutes)
            self._engine.set_state(state)
            self._remove_hooks()
            if self._pipeline is not None:
                dropped = self._pipeline.drop_buffered()
                log.info("paused; %d buffered records dropped", dropped)
                self._handle(self._pipeline.marker(MarkerKind.PAUSE_START, now))
            return state.pause

    def report_lost_batches(self, count: int) -> None:
        """``count`` batches of an earlier run never reached the sink (their
        numbers were recorded as used, no spooled batch carries them): a gap
        marker ``batches_lost`` goes into the next batch, once a policy is in
        force. Called by ``agent.service`` before ``start``."""
        if count <= 0:
            return
        with self._lock:
            self._batches_lost += count
            self._lost_unmarked += count
            log.warning("%d batches of an earlier run were lost before they were spooled", count)

    def resume(self) -> None:
        """End a pause now."""
        with self._lock:
            self._end_pause(self._clock())

    @property
    def policy(self) -> Policy | None:
        with self._lock:
            return self._policy

    @property
    def device_id(self) -> str:
        return self._local.device_id()

    def capture_state(self) -> CaptureState:
        """The decision engine's state (policy, consent, grants...) as of now."""
        with self._lock:
            return self._engine.state

    def set_consent(self, accepted: bool) -> ConsentRecord:
        """Record the employee's answer to the notice of the policy in force."""
        with self._lock:
            now = self._clock()
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

    def discard(self, minutes: float) -> Discarded:
        """Drop what was captured in the last ``minutes`` and is still in memory.

        Buffered records and finished batches the sink has not taken yet are
        dropped; batches already in the spool are the caller's to delete
        (``agent.service`` asks the spool, and the collector for those
        already uploaded). A discard marker records that it happened.
        """
        if minutes <= 0:
            raise AgentError("discard needs a positive number of minutes")
        with self._lock:
            now = self._clock()
            since_ms = int((now - minutes * 60) * 1000)
            records = 0
            if self._pipeline is not None:
                records = self._pipeline.drop_buffered()
            before = len(self._unwritten)
            self._unwritten = deque(b for b in self._unwritten if b.header.end_ms < since_ms)
            batches = before - len(self._unwritten)
            if self._pipeline is not None:
                self._handle(self._pipeline.marker(MarkerKind.DISCARD, now))
                if self._hooks.installed:
                    # Start again from the focused window, as after a resume.
                    self._active = None
                    self._queue.put(FocusChange(now, self._probe.active()))
            log.info("discard: %d buffered records, %d unwritten batches", records, batches)
            return Discarded(since_ms, int(now * 1000), records, batches)

    def reload_policy(self) -> None:
        """Put the trust store's policy in force (policy sync stored a new one)."""
        with self._lock:
            now = self._clock()
            config = self._config
            loaded = load_policy(self._local.trust, config.trusted, config.device, now)
            self._apply_policy(loaded, now)

    def reload_grants(self) -> None:
        """Verify the stored exemption grants against the policy and apply them."""
        with self._lock:
            self._apply_grants(self._clock())

    def status(self) -> AgentStatus:
        with self._lock:
            now = self._clock()
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
            return AgentStatus(
                capturing=reason is Reason.CAPTURING,
                reason=reason,
                policy_version=None if self._policy is None else self._policy.version,
                problem=self._write_problem or self._problem,
                hooks_installed=self._hooks.installed,
                paused_until=state.pause.resumes_at if state.pause.is_paused(now) else None,
                batches_written=self._batches_written,
                events_seen=self._events_seen,
                events_lost=self._events_lost,
                batches_held=len(self._unwritten),
                current_app=app_name,
                current_app_allowed=app_allowed,
                grants=tuple(g for g in state.grants if g.expires.timestamp() > now),
                consent_needed=reason
                in (Reason.NO_CONSENT, Reason.CONSENT_OUTDATED, Reason.CONSENT_DECLINED),
                batches_lost=self._batches_lost,
            )

    def flush(self) -> None:
        """Write everything captured so far as batches now (tests, shutdown)."""
        self._drain()
        with self._lock:
            if self._pipeline is not None:
                for batch in self._pipeline.flush(self._clock()):
                    self._write(batch)

    # ------------------------------------------------------------ internals

    def _load(self, now: float) -> None:
        self._engine.set_state(CaptureState.build(None, consent=self._local.consent()))
        self._policy_file_seen = self._policy_file_signature()
        self._apply_policy(self._load_policy(now), now)

    def _load_policy(self, now: float) -> PolicyInForce:
        config = self._config
        loaded = load_policy(
            self._local.trust, config.trusted, config.device, now, config.policy_file
        )
        if loaded.problem:
            log.warning("policy problem: %s", loaded.problem)
        return loaded

    def _policy_file_signature(self) -> tuple[int, int] | None:
        path = self._config.policy_file
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _check_policy_file(self, now: float) -> None:
        """Take up a policy file that device management replaced in place."""
        if now < self._next_policy_check:
            return
        self._next_policy_check = now + _POLICY_CHECK_S
        seen = self._policy_file_signature()
        if seen is None or seen == self._policy_file_seen:
            return
        self._policy_file_seen = seen
        log.info("policy file changed; verifying it")
        self._apply_policy(self._load_policy(now), now)

    def _apply_policy(self, loaded: PolicyInForce, now: float) -> None:
        """Put a (verified) policy in force: self-test it, re-check consent, adapt."""
        policy, self._problem = loaded.policy, loaded.problem
        state = self._engine.state
        if policy is None:
            changed = self._policy is not None
            self._policy = None
            self._engine.set_state(state.with_policy(None))
            if changed and self._on_policy is not None:
                self._on_policy(None)
            self._sync_hooks(now)
            return
        if self._policy is not None and policy.version == self._policy.version:
            self._sync_hooks(now)
            return
        # Every new policy is self-tested before anything is captured under it.
        result = run_self_test(self._probe, policy, now, opener=self._canary)
        if not result.passed:
            self._problem = f"filter self-test failed: {result.detail}"
            log.error("filter self-test failed for policy version %d", policy.version)
        self._engine.set_state(state.with_policy(policy).with_self_test(passed=result.passed))
        if self._pipeline is None:
            batcher = Batcher(
                device_id=self._local.device_id(),
                policy_version=policy.version,
                dataset_key_id=policy.dataset_key.key_id,
                next_seq=self._local.next_sequence(),
                max_age_s=self._config.batch_max_age_seconds,
                max_bytes=self._config.batch_max_bytes,
            )
            self._pipeline = Pipeline(redaction=policy.redaction, batcher=batcher)
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
        self._apply_grants(now)

    def _apply_grants(self, now: float) -> None:
        """Verify the stored grants against the policy in force; apply the good ones."""
        policy = self._policy
        grants: list[Grant] = []
        if policy is not None:
            when = datetime.fromtimestamp(now, UTC)
            device_id = self._local.device_id()
            refused = 0
            for data in self._local.grants():
                try:
                    grants.append(verify_grant(data, policy, device_id, when))
                except PolicyError as exc:
                    refused += 1
                    log.info("exemption grant not applied (%s)", type(exc).__name__)
            if grants or refused:
                log.info("%d exemption grants in force, %d not applicable", len(grants), refused)
        self._engine.set_state(self._engine.state.with_grants(tuple(grants)))
        self._sync_hooks(now)

    def _sync_hooks(self, now: float) -> None:
        """Install the hooks when capture may happen at all, remove them when not."""
        allowed = (
            capture_status(self._engine.state, now) is Reason.CAPTURING
            and not self._stopping.is_set()
        )
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

    def _end_pause(self, now: float) -> None:
        state = self._engine.state
        if state.pause.resumes_at is None:
            return
        self._engine.set_state(state.resumed())
        if self._pipeline is not None:
            self._handle(self._pipeline.marker(MarkerKind.PAUSE_END, now))
        self._sync_hooks(now)
        log.info("capture resumed")

    def _run(self) -> None:
        while not self._stopping.is_set():
            event = self._queue.get(timeout=_IDLE_WAKE_S)
            with self._lock:
                try:
                    self._step(event)
                except Exception:
                    # A bug in handling one event must not stop capture control
                    # (pause, expiry) for the rest of the session.
                    self._errors += 1
                    log.exception("error while handling an event (%d so far)", self._errors)

    def _step(self, event: SourceEvent | None) -> None:
        now = self._clock()
        self._on_tick(now)
        if event is not None:
            self._on_event(event, now)
            for more in self._queue.drain():
                self._on_event(more, self._clock())
        for frame, window in self._grabs.take():
            self._on_frame(frame, window, self._clock())

    def _drain(self) -> None:
        """Handle everything queued now (used by ``flush``)."""
        with self._lock:
            now = self._clock()
            for event in self._queue.drain():
                self._on_event(event, now)
            for frame, window in self._grabs.take():
                self._on_frame(frame, window, now)

    def _on_tick(self, now: float) -> None:
        state = self._engine.state
        if state.pause.resumes_at is not None and not state.pause.is_paused(now):
            self._end_pause(now)
        if self._unwritten and now >= self._next_write_retry:
            self._write_held(now)
        self._mark_lost(now)
        self._check_policy_file(now)
        self._sync_hooks(now)
        if self._pipeline is not None:
            self._handle(self._pipeline.tick(now))

    def _on_event(self, event: SourceEvent, now: float) -> None:
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

    def _on_frame(self, frame: Frame, window: WindowInfo, now: float) -> None:
        if self._pipeline is None or not self._hooks.installed:
            return
        decision = self._engine.decide_window(window, now)
        self._handle(self._pipeline.feed_frame(frame, decision, now))

    def _handle(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, BatchReady):
                self._write(action.batch)
            elif isinstance(action, GrabRequest):
                self._grabs.request(action.window)

    def _write(self, batch: Batch) -> None:
        """Hold ``batch`` and write what is held, unless writes are failing:
        then it waits with the others for the next retry."""
        self._unwritten.append(batch)
        if self._write_problem is None:
            self._write_held(self._clock())

    def _write_held(self, now: float) -> None:
        """Write held batches in order; on failure keep them and stop capturing.

        Each batch's sequence number is recorded as used (``sequence.json``)
        just before the batch goes to the sink, so a number is taken only by
        a batch on its way to the spool: a crash may skip one, never reuse
        one. If recording the number or writing the batch fails — a full
        disk, a full spool, an I/O error anywhere in seal, spool and ledger —
        the batch stays held (nothing is dropped), capture stops with reason
        ``spool_full`` and a problem that names the cause, and every
        ``_WRITE_RETRY_S`` the held batches are tried again. Once they are
        all written, a gap marker (``spool_full``) records the stretch that
        was not captured, and capture resumes.
        """
        while self._unwritten:
            batch = self._unwritten[0]
            try:
                self._local.advance_sequence(batch.header.seq)
                self._sink.write(batch)
            except Exception as exc:
                self._write_failed(batch, exc, now)
                return
            self._unwritten.popleft()
            self._batches_written += 1
            log.info("batch seq %d written: %d bytes", batch.header.seq, batch.header.body_size)
        if self._write_problem is not None:
            log.info("batches can be written again; capture resumes")
            self._write_problem = None
            self._engine.set_state(self._engine.state.with_spool_full(full=False))
            if self._pipeline is not None:
                # The dataset must show that nothing was captured meanwhile.
                self._handle(self._pipeline.marker(MarkerKind.GAP, now, "spool_full"))
            self._sync_hooks(now)

    def _mark_lost(self, now: float) -> None:
        if self._lost_unmarked and self._pipeline is not None:
            self._lost_unmarked = 0
            self._handle(self._pipeline.marker(MarkerKind.GAP, now, "batches_lost"))

    def _give_up_held(self) -> None:
        """At exit: the sink refused the held batches to the end (a full disk,
        say), so they die with the process. Their numbers are recorded as used
        if the disk still allows it, so that the next start sees them missing
        from the spool and writes a gap marker; the log says which they were."""
        first, last = self._unwritten[0].header.seq, self._unwritten[-1].header.seq
        try:
            self._local.advance_sequence(last)
        except LocalStateError as exc:
            log.error("the sequence number of the lost batches cannot be recorded: %s", exc)
        log.error(
            "%d batches (seq %d to %d) could not be written before exit and are lost",
            len(self._unwritten),
            first,
            last,
        )

    def _write_failed(self, batch: Batch, exc: Exception, now: float) -> None:
        self._next_write_retry = now + _WRITE_RETRY_S
        problem = _write_problem(exc, self._config.state_dir)
        if not isinstance(exc, (SinkError, LocalStateError, OSError)):
            log.exception("batch seq %d: the sink failed unexpectedly", batch.header.seq)
        if problem == self._write_problem:
            return
        first = self._write_problem is None
        self._write_problem = problem
        if first:
            log.error(
                "batch seq %d could not be written (%s); capture stops, %d batches held",
                batch.header.seq,
                type(exc).__name__,
                len(self._unwritten),
            )
            self._engine.set_state(self._engine.state.with_spool_full(full=True))
            self._sync_hooks(now)
        else:
            log.error(
                "batch seq %d still cannot be written (%s)", batch.header.seq, type(exc).__name__
            )


def _write_problem(exc: BaseException, state_dir: object) -> str:
    """Why batches cannot be written, in words for the status's ``problem``."""
    if _disk_full(exc):
        return (
            f"the disk is full: captured batches cannot be stored in {state_dir}; "
            "capture resumes by itself once space is freed"
        )
    if isinstance(exc, SpoolFullError):
        return f"the spool is full ({exc}); capture resumes once uploads make room"
    if isinstance(exc, (SinkError, LocalStateError, OSError)):
        return f"batches cannot be written: {exc}"
    return f"batches cannot be written: {type(exc).__name__} (the agent's log says more)"


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SpoolFullError):
            return seen.reason == "disk"
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__
    return False


class _GrabWorker:
    """Carries out screenshot requests off the pipeline thread; the latest request wins."""

    def __init__(
        self,
        probe: WindowProbe,
        grabber: ScreenGrabber,
        clock: Callable[[], float],
        ready: Callable[[], None],
    ):
        self._probe = probe
        self._grabber = grabber
        self._clock = clock
        #: Called when a frame is ready, to wake the pipeline thread.
        self._ready = ready
        self._cond = threading.Condition()
        self._request: WindowInfo | None = None
        self._done: deque[tuple[Frame, WindowInfo]] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="overt-grab", daemon=True)
        self.failures = 0
        #: Frames thrown away because the screen changed while they were taken.
        self.skipped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def request(self, window: WindowInfo) -> None:
        with self._cond:
            self._request = window
            self._cond.notify()

    def cancel(self) -> None:
        """Forget pending requests and grabbed frames (pause, hooks removed)."""
        with self._cond:
            self._request = None
            self._done.clear()

    def take(self) -> list[tuple[Frame, WindowInfo]]:
        with self._cond:
            out = list(self._done)
            self._done.clear()
            return out

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self._stopping:
                    self._cond.wait()
                wanted = self._request
                if self._stopping or wanted is None:
                    return
                self._request = None
            result = self._grab(wanted)
            if result is not None:
                with self._cond:
                    self._done.append(result)
                self._ready()

    def _grab(self, wanted: WindowInfo) -> tuple[Frame, WindowInfo] | None:
        try:
            # Only the focused window is grabbed, as it is now: if focus moved on
            # or the window went away, the request is stale.
            window = self._probe.active()
            if window is None or window.window_id != wanted.window_id:
                return None
            visible = self._probe.visible_region(window)
            if visible is None:
                return None  # not visible, or in doubt: no frame
            frame = self._grabber.grab(window, self._clock())
            if frame is None or not self._probe.unchanged_since(visible):
                # Something moved, mapped or reshaped while the pixels were taken.
                self.skipped += frame is not None
                return None
        except SourceError:
            self.failures += 1
            log.warning("screen grab failed (%d so far)", self.failures)
            return None
        return keep_visible(frame, visible.rects), window
