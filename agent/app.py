"""The capture agent: sources, trust, capture and a sink wired together.

This module owns the capture side's wiring and threads; every rule about
*what* may be captured lives in ``agent.pipeline`` (pure), what each event
means for capture in ``agent.capture``, what is trusted in ``agent.trust``,
and every OS call in ``agent.sources``. :class:`Agent` builds the event
queue, the grab worker, the batch writer and the :class:`~agent.capture.Capture`
they serve, subscribes capture to the trust holder, and runs:

- **hook threads** (pynput's listeners) and the **focus watcher** (the window
  probe's), which only put events on the bounded :class:`EventQueue`;
- the **pipeline thread** (``overt-capture``), which takes events off the
  queue and hands them, the clock's ticks and the grabbed frames to capture;
  it alone feeds capture events;
- the **grab thread** (``overt-grab``, ``agent.grab_worker``), which carries
  out screenshot requests;
- with ``--policy FILE``, the **policy file watcher** (``overt-policy-file``,
  ``agent.policy_source``), which hands a replaced file to the trust holder.

The trust holder calls capture, under the agent's lock, with every verified
policy and grant list it accepts — from the policy file or from policy sync —
so the agent never reads or verifies a policy itself. An agent run on its own
(tests, benchmarks) builds its own state directory, trust holder and policy
file source from its configuration; ``agent.service`` passes the process's
one :class:`~agent.local_state.LocalState` and trust holder instead.

Public methods (``pause``, ``resume``, ``status``, ``stop``, ``set_consent``,
``discard``) may be called from any thread; they take the agent's lock, which
the pipeline thread holds while it handles events. Delivery (sealing, the
spool, upload, policy sync) and the control API are wired around the agent
by ``agent.service``; the agent only tells it, through ``on_policy``, which
policy is in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.batch_writer import BatchWriter
from agent.capture import AgentError, AgentStatus, Capture, Discarded
from agent.config import AgentConfig
from agent.events import SourceEvent
from agent.grab_worker import GrabWorker
from agent.local_state import LocalState
from agent.pipeline.batcher import Batcher
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState
from agent.pipeline.pause import PauseState
from agent.pipeline.pipeline import Pipeline
from agent.policy_source import PolicyFileSource
from agent.sinks.base import Sink
from agent.sources.canary import Canary, open_canary
from agent.sources.input import EventQueue, InputHooks
from agent.sources.screen import ScreenGrabber
from agent.sources.window import WindowProbe
from agent.trust import InForce, TrustHolder
from policies.model import Policy

__all__ = ["Agent", "AgentError", "AgentStatus", "Discarded"]

log = logging.getLogger(__name__)

#: How often the pipeline thread wakes up with nothing to do, at most.
_IDLE_WAKE_S = 0.5


class Agent:
    """One desktop user's capture agent.

    The caller owns the probe, hooks and grabber it is given and closes them
    after ``stop`` (the probe's focus watcher keeps running until then).
    ``local`` and ``trust`` are the process's state directory and trust
    holder; when None, the agent opens its own from ``config`` (and watches
    ``config.policy_file``, if any).
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
        local: LocalState | None = None,
        trust: TrustHolder | None = None,
    ) -> None:
        self._config = config
        self._clock = config.clock
        self._local = local if local is not None else LocalState(config.state_dir)
        if trust is None:
            trust = TrustHolder(
                self._local.trust, self._local, config.trusted, config.device, self._clock
            )
        self._trust = trust
        self._policy_file: PolicyFileSource | None = None
        if config.policy_file is not None:
            self._policy_file = PolicyFileSource(config.policy_file, trust, self._clock)
        self._queue = EventQueue(maxsize=queue_size, clock=self._clock)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._grabs = GrabWorker(probe, grabber, self._clock, ready=self._queue.wake)
        self._capture = Capture(
            clock=self._clock,
            local=self._local,
            probe=probe,
            hooks=hooks,
            queue=self._queue,
            grabs=self._grabs,
            writer=BatchWriter(sink, self._local, self._clock),
            canary=canary,
            make_pipeline=self._make_pipeline,
            stopping=self._stopping.is_set,
            on_policy=on_policy,
        )
        self._thread: threading.Thread | None = None
        self._unsubscribe_trust: Callable[[], None] | None = None
        self._errors = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the consent and what is trusted, self-test the policy, start
        capturing if allowed, and start the threads."""
        now = self._clock()
        with self._lock:
            self._capture.load_consent()
        if self._policy_file is not None:
            self._policy_file.offer(now)
        self._trust.load(now)
        # Not under the agent's lock: the holder calls back under its own.
        self._unsubscribe_trust = self._trust.subscribe(self._on_trust)
        with self._lock:
            self._capture.mark_lost(now)
            self._thread = threading.Thread(target=self._run, name="overt-capture", daemon=True)
            self._thread.start()
            self._grabs.start()
        if self._policy_file is not None:
            self._policy_file.start()

    def stop(self) -> None:
        """Remove the hooks, write what was captured, stop the threads."""
        self._stopping.set()
        if self._policy_file is not None:
            self._policy_file.stop()
        if self._unsubscribe_trust is not None:
            self._unsubscribe_trust()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._capture.stop(self._clock())
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
            return self._capture.pause(self._clock(), minutes)

    def resume(self) -> None:
        """End a pause now."""
        with self._lock:
            self._capture.resume(self._clock())

    def report_lost_batches(self, count: int) -> None:
        """``count`` batches of an earlier run never reached the sink (their
        numbers were recorded as used, no spooled batch carries them): a gap
        marker ``batches_lost`` goes into the next batch, once a policy is in
        force. Called by ``agent.service`` before ``start``."""
        if count <= 0:
            return
        with self._lock:
            self._capture.report_lost_batches(count)

    @property
    def policy(self) -> Policy | None:
        with self._lock:
            return self._capture.policy

    @property
    def trust(self) -> TrustHolder:
        """The holder capture takes its policy and grants from."""
        return self._trust

    @property
    def device_id(self) -> str:
        return self._local.device_id()

    def capture_state(self) -> CaptureState:
        """The decision engine's state (policy, consent, grants...) as of now."""
        with self._lock:
            return self._capture.state

    def set_consent(self, accepted: bool) -> ConsentRecord:
        """Record the employee's answer to the notice of the policy in force."""
        with self._lock:
            return self._capture.set_consent(accepted, self._clock())

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
            return self._capture.discard(minutes, self._clock())

    def status(self) -> AgentStatus:
        with self._lock:
            return self._capture.status(self._clock())

    def flush(self) -> None:
        """Write everything captured so far as batches now (tests, shutdown)."""
        with self._lock:
            now = self._clock()
            for event in self._queue.drain():
                self._capture.on_event(event, now)
            for frame, window in self._grabs.take():
                self._capture.on_frame(frame, window, now)
            self._capture.flush(self._clock())

    # ------------------------------------------------------------ internals

    def _on_trust(self, in_force: InForce) -> None:
        with self._lock:
            self._capture.apply_trust(in_force, self._clock())

    def _make_pipeline(self, policy: Policy) -> Pipeline:
        """The pipeline for the first policy in force (later ones adapt it)."""
        config = self._config
        batcher = Batcher(
            device_id=self._local.device_id(),
            policy_version=policy.version,
            dataset_key_id=policy.dataset_key.key_id,
            next_seq=self._local.next_sequence(),
            max_age_s=config.batch_max_age_seconds,
            max_bytes=config.batch_max_bytes,
        )
        return Pipeline(redaction=policy.redaction, batcher=batcher)

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
        capture, now = self._capture, self._clock()
        capture.tick(now)
        if event is not None:
            capture.on_event(event, now)
            for more in self._queue.drain():
                capture.on_event(more, self._clock())
        for frame, window in self._grabs.take():
            capture.on_frame(frame, window, self._clock())
