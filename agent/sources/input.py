"""Input hooks: global mouse and keyboard events, handed over through a queue.

This module owns the hand-over between OS hook threads and the agent:

- :class:`EventQueue` — bounded, thread-safe, and ``put`` never blocks. When
  it is full, events are counted, not queued, and the consumer later receives
  one ``Gap(reason="queue_overflow", count=n)`` exactly where they were lost.
- :class:`InputHooks` — the interface every backend implements: ``start``
  installs the hooks and feeds a queue, ``stop`` removes them (listener
  threads stopped and joined), ``installed`` tells which state it is in.
- :func:`normalise_key` / :func:`normalise_button` — the naming rules of
  :class:`agent.events.KeyEvent` and :class:`agent.events.MouseButton`, as pure
  functions of plain values, so every backend (and the fake) names keys alike.
- :func:`select_input_hooks` — the one place a backend is chosen.

It does not own what is recorded (the pipeline gates and minimises) and it
imports no OS library: pynput is imported inside :mod:`agent.sources._pynput`.

Hook callbacks only enqueue: each one reads the clock, builds a tuple and puts
it. Turning that tuple into an :mod:`agent.events` value (and naming the key)
happens on the consumer's thread, in :meth:`EventQueue.get` /
:meth:`EventQueue.drain`, so an OS hook thread never does more than that.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from agent.events import Gap, SourceEvent
from agent.sources._platform import choose_backend
from agent.sources.errors import BackendUnavailableError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: Turns the arguments a hook captured into an event (None: nothing to report).
Decoder = Callable[..., SourceEvent | None]
_Raw = tuple[Decoder, tuple[Any, ...]]

OVERFLOW = "queue_overflow"
DECODE_ERROR = "decode_error"


class EventQueue:
    """Bounded hand-over from hook threads to one consumer.

    ``put`` / ``put_raw`` never block and never raise: when ``maxsize`` items
    are waiting, the event is dropped and counted. Order is kept, including the
    loss: the consumer sees ``Gap(t=<time of the first drop>,
    reason="queue_overflow", count=<dropped>)`` after the events that were
    queued before the overflow and before any queued after it.

    ``put_raw(decode, args)`` queues a decoder and its arguments instead of a
    finished event; the consumer calls ``decode(*args)``. A decoder that
    returns None is skipped; one that raises becomes
    ``Gap(reason="decode_error", count=1)`` (the consumer never sees the
    exception, and the hook thread never ran the code).
    """

    #: A consumer that received an event this recently polls instead of sleeping.
    ACTIVE_S = 0.25
    #: How often a polling consumer looks for new events.
    POLL_S = 0.005

    def __init__(self, maxsize: int = 10_000, clock: Clock = time.time) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._clock = clock
        self._items: deque[SourceEvent | _Raw] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._dropped = 0
        self._dropped_t = 0.0
        self._dropped_total = 0
        self._idle = False
        self._woken = False
        self._last_item = -math.inf

    # -- producer side (hook threads) --------------------------------------

    def put(self, event: SourceEvent) -> bool:
        """Queue a finished event; False if it was dropped (queue full)."""
        return self._put(event)

    def put_raw(self, decode: Decoder, args: tuple[Any, ...]) -> bool:
        """Queue ``decode(*args)`` to be run by the consumer; False if dropped."""
        return self._put((decode, args))

    def lose(self, count: int = 1) -> None:
        """Record events a producer could not deliver (reported as overflow)."""
        with self._cond:
            self._note_drop(count)
            self._cond.notify()

    def _note_drop(self, count: int) -> None:
        if not self._dropped:
            self._dropped_t = self._clock()
        self._dropped += count
        self._dropped_total += count

    def _put(self, item: SourceEvent | _Raw) -> bool:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._note_drop(1)
                return False
            if self._dropped:
                self._items.append(Gap(self._dropped_t, OVERFLOW, self._dropped))
                self._dropped = 0
            self._items.append(item)
            if self._idle:
                # Only an idle consumer is woken; a busy one polls (see ``get``).
                self._idle = False
                self._cond.notify()
        return True

    def wake(self) -> None:
        """Wake the consumer now, with or without an event (e.g. a frame is ready)."""
        with self._cond:
            self._woken = True
            self._idle = False
            self._cond.notify()

    # -- consumer side ---------------------------------------------------------

    def get(self, timeout: float | None = None) -> SourceEvent | None:
        """The next event, waiting up to ``timeout`` seconds; None if none came
        (or ``wake`` was called).

        Waking a thread costs the hook thread tens of microseconds at the tail,
        so producers wake the consumer only when it is idle. While events keep
        coming (the last one less than ``ACTIVE_S`` ago) the consumer polls
        every ``POLL_S`` instead; an idle agent sleeps until the next event.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while not self._items and not self._dropped:
                    if self._woken:
                        self._woken = False
                        return None
                    now = time.monotonic()
                    remaining = None if deadline is None else deadline - now
                    if remaining is not None and remaining <= 0:
                        return None
                    wait: float | None = remaining
                    if now - self._last_item < self.ACTIVE_S:
                        wait = self.POLL_S if remaining is None else min(self.POLL_S, remaining)
                    else:
                        self._idle = True
                    self._cond.wait(wait)
                self._idle = False
                self._last_item = time.monotonic()
                if self._items:
                    item = self._items.popleft()
                else:
                    item = Gap(self._dropped_t, OVERFLOW, self._dropped)
                    self._dropped = 0
            event = self._decode(item)
            if event is not None:
                return event

    def drain(self) -> list[SourceEvent]:
        """Every event waiting now (possibly none), oldest first; never waits."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            if self._dropped:
                items.append(Gap(self._dropped_t, OVERFLOW, self._dropped))
                self._dropped = 0
        events = []
        for item in items:
            event = self._decode(item)
            if event is not None:
                events.append(event)
        return events

    def _decode(self, item: SourceEvent | _Raw) -> SourceEvent | None:
        if not isinstance(item, tuple):
            return item
        decode, args = item
        try:
            return decode(*args)
        except Exception:
            # Counted, not logged per event: the hook data may be captured content.
            log.debug("input event decoder %s failed", getattr(decode, "__name__", decode))
            t = args[0] if args and isinstance(args[0], float) else self._clock()
            return Gap(t, DECODE_ERROR, 1)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def dropped_total(self) -> int:
        """Events dropped since this queue was made (for counters and logs)."""
        with self._cond:
            return self._dropped_total


class InputHooks(abc.ABC):
    """Global mouse and keyboard hooks.

    ``start(queue)`` installs the hooks; from then on every input event is put
    on ``queue`` (see :class:`EventQueue`). ``stop()`` removes them: when it
    returns no further event is queued and the backend's threads are gone.
    ``start`` after ``stop`` installs fresh hooks. Pausing capture is ``stop``:
    no hook stays installed while paused.
    """

    @abc.abstractmethod
    def start(self, queue: EventQueue) -> None:
        """Install the hooks and feed ``queue``; error if already installed."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Remove the hooks (no-op if not installed)."""

    @property
    @abc.abstractmethod
    def installed(self) -> bool:
        """Whether hooks are currently installed."""


_SIDED = frozenset({"ctrl", "shift", "alt", "cmd"})
_CONTROL_CHARS = {
    "\t": "tab",
    "\r": "enter",
    "\n": "enter",
    "\x08": "backspace",
    "\x1b": "esc",
    "\x7f": "delete",
}


def normalise_key(
    name: str | None = None, char: str | None = None, vk: int | None = None
) -> tuple[str, str | None]:
    """``(key, char)`` for a :class:`agent.events.KeyEvent`.

    ``name`` is a special key's name as pynput spells it (``"ctrl_l"``,
    ``"enter"``, ``"f5"``...), ``char`` the character a key code types and
    ``vk`` its virtual key code. Rules:

    - sided modifiers lose their side: ``ctrl_l``/``ctrl_r`` → ``ctrl``,
      likewise ``shift``, ``alt``, ``cmd``; ``alt_gr`` stays ``alt_gr``;
    - other special keys keep their name (``enter``, ``backspace``, ``tab``,
      ``esc``, ``left``, ``home``, ``page_up``, ``delete``, ``f1``..``f24``);
      ``space`` is the one with a char, ``" "``;
    - a printable character is both key and char (``"a"``, ``"A"``, ``"1"``);
    - control characters some platforms report while Ctrl is held become the
      key they came from, without a char: ``"\\x03"`` → ``"c"``, ``"\\t"`` →
      ``"tab"``, ``"\\r"`` → ``"enter"``;
    - anything else is ``"vk<N>"``, or ``"unknown"`` without a code.
    """
    if name is not None:
        base = name
        if name.endswith(("_l", "_r")) and name[:-2] in _SIDED:
            base = name[:-2]
        if base == "space":
            return "space", " "
        return base, None
    if char:
        if char == " ":
            return "space", " "
        if char in _CONTROL_CHARS:
            return _CONTROL_CHARS[char], None
        if len(char) == 1 and 1 <= ord(char) <= 26:
            return chr(ord(char) + 96), None
        if char.isprintable():
            return char, char
    if vk is not None:
        return f"vk{vk}", None
    return "unknown", None


_BUTTONS = {"button8": "x1", "button9": "x2", "x1": "x1", "x2": "x2"}


def normalise_button(name: str | None) -> str:
    """A :class:`agent.events.MouseButton` name: left, middle, right, x1, x2, ..."""
    if not name:
        return "unknown"
    return _BUTTONS.get(name, name)


_INPUT_BACKENDS = ("pynput", "fake")


def select_input_hooks(
    clock: Clock = time.time, env: Mapping[str, str] | None = None
) -> InputHooks:
    """The input hooks for this machine (``OVERT_INPUT_BACKEND`` overrides).

    ``pynput`` everywhere pynput works (X11 via RECORD, Windows, macOS);
    ``fake`` for tests. Raises :class:`agent.sources.errors.NoDisplayError`
    without an X display on Linux.
    """
    native = {"xorg": "pynput", "win32": "pynput", "darwin": "pynput"}
    name = choose_backend("input", _INPUT_BACKENDS, env=env, native=native)
    if name == "fake":
        from agent.sources._fake import FakeInputHooks

        return FakeInputHooks(clock=clock)
    if name == "pynput":
        from agent.sources._pynput import PynputHooks

        return PynputHooks(clock=clock)
    raise BackendUnavailableError(f"unknown input backend {name!r}")  # pragma: no cover
