"""The pipeline after the gate: minimise gated events into records, batch them.

This module owns the composition of the pure stages — ``redact``, ``keys``,
``mouse``, ``screens`` and ``batch`` — and the rules that tie them together.
It does not decide whether an event may be captured (the decision engine
does, and its ``Decision`` comes with every event), look up windows, grab
screens, read a clock, start threads or write anything: it returns actions
(``GrabRequest``, ``BatchReady``) for the app to carry out.

Rules:

- An event whose decision has ``capture`` False produces nothing of its own,
  and ends what was in progress: a text span typed in the captured window is
  flushed (it was captured under a decision that allowed it), the mouse
  coalescer and any pending screenshot are forgotten, and the next captured
  event starts with a new context record. Only modifier key state is taken
  from such events (see ``keys``). Dropping, not flushing, is for pauses
  (``drop_buffered``).
- Coordinates in records are window-relative: event x minus ``window.rect.x``.
- A context record (app id, title per the decision, window rectangle and
  scale) is emitted when the window an event happened in differs from the
  last one (another window, or the same one moved, resized or retitled), and
  on every focus change. ``actions_only`` decisions never keep a title or a
  screenshot, whatever else they say.
- A text span is flushed on focus change, on a mouse press (even when the
  mouse itself is not captured) and as ``keys`` describes.
- Every batch reads on its own: it starts with the current context, and the
  first screenshot of each window after a batch was emitted is a keyframe (a
  delta whose keyframe went out in an earlier batch is dropped). Within a
  batch, focus going away and back continues the window's chain of deltas
  (see ``screens``): a focus change, a window change or a stretch of
  uncaptured events does not by itself start a keyframe.
- ``drop_buffered`` (pause) drops everything not yet emitted as a batch,
  including the open batch; ``stop_capture`` (any other way capture goes off)
  emits it and then forgets every stage's state, so no record spans or
  follows the time capture was off.

One ``Pipeline`` is used by one thread (the app's pipeline thread, fed by the
hook queues). ``feed_frame`` encodes images on that thread; an app that wants
encoding on another worker calls ``FrameEncoder.encode`` there and hands the
result to ``feed_encoded``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.events import (
    FocusChange,
    Frame,
    Gap,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    SourceEvent,
    WindowInfo,
)
from overt.wire.batch import Batch
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    MarkerKind,
    MarkerRecord,
    Record,
    ScreenshotKind,
    ScrollRecord,
    to_ms,
)
from policies.model import KeyMode, Redaction, Screenshots, TitleAction

from .batcher import Batcher
from .decision import Decision
from .keys import KeyMinimiser
from .mouse import MouseCoalescer
from .redact import Redactor
from .screens import EncodedFrame, FrameEncoder, GrabRequest, ScreenshotScheduler, Trigger


@dataclass(frozen=True, slots=True)
class BatchReady:
    """A finished batch for the sinks (seal, spool)."""

    batch: Batch


Action = GrabRequest | BatchReady

_NEVER = math.inf


class Pipeline:
    """Gated events in, records batched, actions out. Reads no clock."""

    def __init__(
        self,
        *,
        redaction: Redaction,
        batcher: Batcher,
        encoder: FrameEncoder | None = None,
        scheduler: ScreenshotScheduler | None = None,
        mouse: MouseCoalescer | None = None,
        keys: KeyMinimiser | None = None,
    ) -> None:
        self._redactor = Redactor(redaction)
        self._batcher = batcher
        self._encoder = encoder if encoder is not None else FrameEncoder()
        self._scheduler = scheduler if scheduler is not None else ScreenshotScheduler()
        self._mouse = mouse if mouse is not None else MouseCoalescer()
        self._keys = keys if keys is not None else KeyMinimiser(self._redactor)
        self._keys.redactor = self._redactor
        self._window: WindowInfo | None = None
        self._capturing = False
        self._due = _NEVER
        #: Screenshot deltas dropped because their keyframe is in an earlier batch.
        self.orphan_deltas = 0

    @property
    def batcher(self) -> Batcher:
        return self._batcher

    # ------------------------------------------------------------ input

    def feed(
        self, event: SourceEvent, decision: Decision, window: WindowInfo | None, now: float
    ) -> list[Action]:
        """One gated event, with the decision for the window it happened in."""
        out: list[Action] = []
        if now >= self._due:
            self._poll(now, out)
        if not decision.capture or window is None:
            if type(event) is KeyEvent:
                self._keys.track(event)
            if self._capturing:
                self._stop(now, out)
            return out
        self._capturing = True
        if type(event) is MouseMove:
            if decision.mouse:
                if window is not self._window:
                    self._context(window, decision, event.t, now, out)
                    self._refresh_due()
                r = window.rect
                rec = self._mouse.move(event.t, event.x - r.x, event.y - r.y)
                if rec is not None:
                    self._add(rec, now, out)
                    self._refresh_due()
            return out
        if isinstance(event, FocusChange):
            self._focus(window, decision, event.t, now, out)
        else:
            if window is not self._window:
                self._context(window, decision, event.t, now, out)
            if isinstance(event, KeyEvent):
                self._key(event, window, decision, now, out)
            elif isinstance(event, MouseButton):
                self._button(event, window, decision, now, out)
            elif isinstance(event, MouseScroll):
                if decision.mouse:
                    r = window.rect
                    self._add(
                        ScrollRecord(
                            to_ms(event.t), event.x - r.x, event.y - r.y, event.dx, event.dy
                        ),
                        now,
                        out,
                    )
                self._grab(self._scheduler.scrolled(window, _shots(decision), now), out)
            elif isinstance(event, Gap):
                self._add(
                    MarkerRecord(to_ms(event.t), MarkerKind.GAP, event.reason, event.count),
                    now,
                    out,
                )
        self._refresh_due()
        return out

    def feed_frame(self, frame: Frame, decision: Decision, now: float) -> list[Action]:
        """A grabbed frame of a captured window: encode it and batch it (unless unchanged)."""
        settings = _shots(decision)
        if not decision.capture or settings is None:
            return []
        encoded = self._encoder.encode(frame, settings)
        if encoded is None:
            return []
        return self.feed_encoded(encoded, now)

    def feed_encoded(self, encoded: EncodedFrame, now: float) -> list[Action]:
        """A frame already encoded by a ``FrameEncoder`` on another worker."""
        out: list[Action] = []
        rec = encoded.record
        if rec.kind is ScreenshotKind.DELTA and (
            rec.base is None or not self._batcher.has_image(rec.base)
        ):
            self.orphan_deltas += 1
            self._encoder.force_keyframe()
            return out
        self._add(rec, now, out, encoded.image)
        self._refresh_due()
        return out

    def marker(
        self, kind: MarkerKind, now: float, detail: str = "", count: int = 0
    ) -> list[Action]:
        """Record something about the recording itself (consent, pause, discard...)."""
        out: list[Action] = []
        self._add(MarkerRecord(to_ms(now), kind, detail, count), now, out)
        self._refresh_due()
        return out

    def tick(self, now: float) -> list[Action]:
        """Fire what is due at ``now`` without an event: span flush, deferred grab, old batch."""
        out: list[Action] = []
        self._poll(now, out)
        return out

    # ------------------------------------------------------------ control

    def policy_changed(
        self, redaction: Redaction, policy_version: int, dataset_key_id: str, now: float
    ) -> list[Action]:
        """Close out what was captured under the old policy, then adopt the new one."""
        out: list[Action] = []
        self._boundary(now, out)
        batch = self._batcher.set_policy(policy_version, dataset_key_id)
        if batch is not None:
            self._emitted(batch, out)
        self._redactor = Redactor(redaction)
        self._keys.redactor = self._redactor
        self._window = None  # the next event states its context under the new policy
        self._batcher.context = None
        self._add(MarkerRecord(to_ms(now), MarkerKind.POLICY_CHANGE, str(policy_version)), now, out)
        self._refresh_due()
        return out

    def drop_buffered(self) -> int:
        """Drop everything not yet emitted as a batch (pause). Returns records dropped."""
        self._forget_stages()
        n = self._batcher.drop()
        self._refresh_due()
        return n

    def stop_capture(self, now: float) -> list[Batch]:
        """Capture went off: close what was captured until ``now``, forget every stage's state.

        Nothing that follows can extend what came before: no text span, no
        pointer rest or drag, no pending screenshot or delta chain, no context
        spans the time capture was off.
        """
        batches = self.flush(now)
        self._forget_stages()
        self._refresh_due()
        return batches

    def _forget_stages(self) -> None:
        """Capture is off: no stage keeps anything that could extend into what comes next."""
        self._keys.reset()
        self._mouse.reset()
        self._scheduler.cancel()
        self._encoder.force_keyframe()
        self._window = None
        self._batcher.context = None
        self._capturing = False

    def pointer_hidden(self, at: float, now: float) -> list[Action]:
        """At ``at`` the pointer stopped being on the captured window's visible part."""
        out: list[Action] = []
        hover = self._mouse.flush(at)
        if hover is not None:
            self._add(hover, now, out)
        self._mouse.reset()
        self._refresh_due()
        return out

    def flush(self, now: float) -> list[Batch]:
        """Emit everything buffered as batches (shutdown, end of session)."""
        out: list[Action] = []
        self._boundary(now, out)
        batch = self._batcher.flush(now, force=True)
        if batch is not None:
            self._emitted(batch, out)
        self._refresh_due()
        return [a.batch for a in out if isinstance(a, BatchReady)]

    # ------------------------------------------------------------ internals

    def _stop(self, now: float, out: list[Action]) -> None:
        for rec in self._keys.boundary():
            self._add(rec, now, out)
        self._mouse.reset()
        self._scheduler.cancel()
        self._window = None
        self._batcher.context = None
        self._capturing = False
        self._refresh_due()

    def _boundary(self, now: float, out: list[Action]) -> None:
        for rec in self._keys.boundary():
            self._add(rec, now, out)
        hover = self._mouse.flush(now)
        if hover is not None:
            self._add(hover, now, out)

    def _focus(
        self, window: WindowInfo, decision: Decision, t: float, now: float, out: list[Action]
    ) -> None:
        self._boundary(now, out)
        self._mouse.reset()
        self._encoder.focus_changed()
        self._scheduler.cancel()
        self._context(window, decision, t, now, out, changed=True)
        self._grab(self._scheduler.trigger(Trigger.FOCUS, window, _shots(decision), now), out)

    def _context(
        self,
        window: WindowInfo,
        decision: Decision,
        t: float,
        now: float,
        out: list[Action],
        *,
        changed: bool = False,
    ) -> None:
        last = self._window
        self._window = window
        if not changed and last is not None and last == window:
            return
        if last is not None and last.window_id != window.window_id:
            for rec in self._keys.boundary():
                self._add(rec, now, out)
            self._mouse.reset()
            self._scheduler.cancel()
        elif last is not None and (last.rect.x, last.rect.y) != (window.rect.x, window.rect.y):
            self._mouse.reset()  # relative coordinates shifted under the coalescer
        action = TitleAction.DROP if decision.actions_only else decision.title
        title = self._redactor.title(window.title, action, decision.title_masks)
        r = window.rect
        ctx = ContextRecord(
            to_ms(t),
            decision.app_id or "",
            title.title,
            title.state,
            r.x,
            r.y,
            r.width,
            r.height,
            window.scale,
        )
        self._add(ctx, now, out)
        self._batcher.context = ctx

    def _key(
        self, ev: KeyEvent, window: WindowInfo, decision: Decision, now: float, out: list[Action]
    ) -> None:
        for rec in self._keys.key(ev, decision.keys):
            self._add(rec, now, out)
        if ev.pressed and decision.keys is not KeyMode.NONE:
            self._grab(self._scheduler.typing(window, _shots(decision), now), out)

    def _button(
        self,
        ev: MouseButton,
        window: WindowInfo,
        decision: Decision,
        now: float,
        out: list[Action],
    ) -> None:
        r = window.rect
        x, y = ev.x - r.x, ev.y - r.y
        if ev.pressed:
            for rec in self._keys.boundary():
                self._add(rec, now, out)
            self._grab(self._scheduler.trigger(Trigger.PRESS, window, _shots(decision), now), out)
        if not decision.mouse:
            return
        click = ClickRecord(to_ms(ev.t), ev.button, ev.pressed, x, y)
        if ev.pressed:
            path = self._mouse.press(ev.t, x, y)
            if path is not None:
                self._add(path, now, out)
            self._add(click, now, out)
        else:
            path = self._mouse.release(ev.t, x, y)
            if path is not None:
                self._add(path, now, out)
            self._add(click, now, out)

    def _grab(self, request: GrabRequest | None, out: list[Action]) -> None:
        if request is not None:
            out.append(request)

    def _add(self, rec: Record, now: float, out: list[Action], image: bytes | None = None) -> None:
        batch = self._batcher.add(rec, now, image)
        if batch is not None:
            self._emitted(batch, out)

    def _emitted(self, batch: Batch, out: list[Action]) -> None:
        out.append(BatchReady(batch))
        self._encoder.force_keyframe()

    def _poll(self, now: float, out: list[Action]) -> None:
        for rec in self._keys.poll(now):
            self._add(rec, now, out)
        self._grab(self._scheduler.poll(now), out)
        batch = self._batcher.flush(now)
        if batch is not None:
            self._emitted(batch, out)
        self._refresh_due()

    def _refresh_due(self) -> None:
        due = _NEVER
        for d in (self._keys.next_due, self._scheduler.next_due, self._batcher.due):
            if d is not None and d < due:
                due = d
        self._due = due


def _shots(decision: Decision) -> Screenshots | None:
    return None if decision.actions_only else decision.screenshots
