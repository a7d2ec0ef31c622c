"""Input hooks on pynput (X11 through the RECORD extension, Windows, macOS).

Owns the pynput listeners and nothing else. pynput is imported when hooks are
started, never at module import: on Linux it raises ImportError without a
DISPLAY.

Each callback reads the clock and queues ``(decoder, args)`` — a tuple and a
put, nothing more (see :meth:`agent.sources.input.EventQueue.put_raw`). The
decoders below run later on the consumer's thread. A callback never raises
(pynput would stop the listener): if queueing ever fails, the loss is counted
on the queue and surfaces as a gap.

On X11 ``stop()`` also disables the listener's RECORD context itself (see
:func:`_end_xrecord`), so the hook is gone when ``stop()`` returns, and each
event is stamped with the X server's timestamp of the event it came from
(:class:`_ServerTime`): the window probe orders input against the server's
own changes of focus, grabs and stacking by that stamp.

Under X11 pynput's ``injected`` flag is always False for XTEST input, so it is
not recorded: it would claim a distinction the platform does not make.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Any

from agent.events import KeyEvent, MouseButton, MouseMove, MouseScroll
from agent.sources.errors import BackendUnavailableError, NoDisplayError, SourceError
from agent.sources.input import Clock, EventQueue, InputHooks, normalise_button, normalise_key

log = logging.getLogger(__name__)

_READY_TIMEOUT = 5.0
_JOIN_TIMEOUT = 5.0


def decode_move(t: float, x: Any, y: Any) -> MouseMove:
    return MouseMove(t, int(x), int(y))


def decode_button(
    t: float, x: Any, y: Any, button: Any, pressed: bool, server_time: int | None = None
) -> MouseButton:
    name = normalise_button(getattr(button, "name", None))
    return MouseButton(t, int(x), int(y), name, pressed, server_time)


def decode_scroll(
    t: float, x: Any, y: Any, dx: Any, dy: Any, server_time: int | None = None
) -> MouseScroll:
    return MouseScroll(t, int(x), int(y), int(dx), int(dy), server_time)


def decode_key(t: float, key: Any, pressed: bool, server_time: int | None = None) -> KeyEvent:
    if key is None:
        name, char = "unknown", None
    elif isinstance(key, enum.Enum):  # pynput.keyboard.Key
        name, char = normalise_key(name=key.name)
    else:  # pynput.keyboard.KeyCode
        name, char = normalise_key(char=getattr(key, "char", None), vk=getattr(key, "vk", None))
    return KeyEvent(t, name, pressed, char, server_time)


class _ServerTime:
    """The X timestamp of the event a listener is handling now (None off X11).

    pynput's X listeners hand their callbacks the key or position but not the
    event; wrapping the listener's ``_handle_message`` (called on the
    listener's own thread, once per recorded event, right before the
    callbacks) keeps the event's ``time`` for them.
    """

    def __init__(self) -> None:
        self.value: int | None = None

    def attach(self, listener: Any) -> None:
        original = getattr(listener, "_handle_message", None)
        if original is None:  # not the X backend
            return

        def handle(display: Any, event: Any, injected: Any) -> None:
            stamp = getattr(event, "time", None)
            self.value = int(stamp) if isinstance(stamp, int) else None
            original(display, event, injected)

        listener._handle_message = handle


class PynputHooks(InputHooks):
    """A pynput mouse listener and keyboard listener, started and stopped together."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._listeners: list[Any] = []
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        return any(listener.is_alive() for listener in self._listeners)

    @property
    def threads(self) -> list[threading.Thread]:
        """The listener threads of the current installation (for tests)."""
        return list(self._listeners)

    def start(self, queue: EventQueue) -> None:
        with self._lock:
            if self.installed:
                raise SourceError("input hooks are already installed")
            self._listeners = []
            try:
                from pynput import keyboard, mouse
            except ImportError as exc:
                if "display" in str(exc).lower() or "DISPLAY" in str(exc):
                    raise NoDisplayError(str(exc)) from exc
                raise BackendUnavailableError(f"pynput is not usable here: {exc}") from exc
            mouse_time, key_time = _ServerTime(), _ServerTime()
            listeners = [
                mouse.Listener(**_mouse_callbacks(queue, self._clock, mouse_time)),
                keyboard.Listener(**_key_callbacks(queue, self._clock, key_time)),
            ]
            mouse_time.attach(listeners[0])
            key_time.attach(listeners[1])
            try:
                for listener in listeners:
                    listener.start()
                    self._listeners.append(listener)
                for listener in listeners:
                    _wait_ready(listener)
            except BaseException:
                self._stop_locked()
                raise

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        for listener in self._listeners:
            try:
                listener.stop()
            except Exception:
                log.exception("stopping a pynput listener failed")
            _end_xrecord(listener)
        for listener in self._listeners:
            try:
                listener.join(_JOIN_TIMEOUT)
            except Exception:
                # join() re-raises what killed the listener thread.
                log.exception("a pynput listener had failed")
            if listener.is_alive():
                log.error("a pynput listener thread did not stop within %.0fs", _JOIN_TIMEOUT)
        self._listeners = [listener for listener in self._listeners if listener.is_alive()]


def _end_xrecord(listener: Any) -> None:
    """Make an X11 listener's thread return now, not at the next input event.

    pynput's X ``stop()`` queues RecordDisableContext on the connection its
    listener thread is blocked reading, and nothing flushes it until an input
    event wakes that thread: the hook would stay installed, invisibly, until
    the user next touches the mouse or keyboard. Any client may disable a
    RECORD context, so a short-lived connection of our own does it at once.
    Other platforms (no ``_context``) need nothing.
    """
    context = getattr(listener, "_context", None)
    if context is None:
        return
    try:
        from Xlib import display

        conn = display.Display()
        try:
            conn.record_disable_context(context)
            conn.sync()
        finally:
            conn.close()
    except Exception:
        log.exception("could not end the X RECORD context of an input hook")


def _wait_ready(listener: Any) -> None:
    """Wait until the listener's hook is installed, or fail if its thread died."""
    if not hasattr(listener, "_ready"):  # a pynput without the flag: its own wait
        listener.wait()
        return
    deadline = time.monotonic() + _READY_TIMEOUT
    while not listener._ready:
        if not listener.is_alive():
            try:
                listener.join(0)
            except Exception as exc:
                raise BackendUnavailableError(f"input hook failed to start: {exc}") from exc
            raise BackendUnavailableError("input hook thread exited before it was ready")
        if time.monotonic() > deadline:
            raise BackendUnavailableError(
                f"input hook not ready after {_READY_TIMEOUT:.0f}s "
                "(on X11, does the server have the RECORD extension?)"
            )
        time.sleep(0.002)


def _mouse_callbacks(queue: EventQueue, clock: Clock, stamp: _ServerTime) -> dict[str, Any]:
    put, lose = queue.put_raw, queue.lose

    # ``*_`` takes pynput's ``injected`` argument when it passes one (>= 1.8).
    def on_move(x: Any, y: Any, *_: Any) -> None:
        try:
            put(decode_move, (clock(), x, y))
        except Exception:
            lose()

    def on_click(x: Any, y: Any, button: Any, pressed: bool, *_: Any) -> None:
        try:
            put(decode_button, (clock(), x, y, button, pressed, stamp.value))
        except Exception:
            lose()

    def on_scroll(x: Any, y: Any, dx: Any, dy: Any, *_: Any) -> None:
        try:
            put(decode_scroll, (clock(), x, y, dx, dy, stamp.value))
        except Exception:
            lose()

    return {"on_move": on_move, "on_click": on_click, "on_scroll": on_scroll}


def _key_callbacks(queue: EventQueue, clock: Clock, stamp: _ServerTime) -> dict[str, Any]:
    put, lose = queue.put_raw, queue.lose

    def on_press(key: Any, *_: Any) -> None:
        try:
            put(decode_key, (clock(), key, True, stamp.value))
        except Exception:
            lose()

    def on_release(key: Any, *_: Any) -> None:
        try:
            put(decode_key, (clock(), key, False, stamp.value))
        except Exception:
            lose()

    return {"on_press": on_press, "on_release": on_release}
