"""Window probe: which top-level window is active, which is under a point.

This module owns the :class:`WindowProbe` interface and the choice of its
backend (:func:`select_window_probe`). Backends:

- ``xorg`` (:mod:`agent.sources._xorg`, python-xlib) — X11 with an EWMH
  window manager; tested on Xvfb + openbox.
- ``win32`` (:mod:`agent.sources._win32`, ctypes/user32) and ``darwin``
  (:mod:`agent.sources._darwin`, pyobjc) — written against their documented
  APIs, not exercised by this project's tests.
- ``fake`` (:mod:`agent.sources._fake`) — a scriptable desktop for unit tests.

It does not decide what may be recorded about a window (the pipeline does) and
it imports no OS library.

Two kinds of question:

- *what a window is* (``active``, ``describe``, ``window_at``): a
  :class:`agent.events.WindowInfo` or None. None means "no such window":
  nothing focused, nothing at that point, or the window vanished while it was
  being read. A vanishing window is normal on a desktop and never raises.
- *where input and pixels really go* (``key_receiver``, ``pointer_receiver``,
  ``shows``, ``visible_region``): answered from the display server's state at
  the moment of the event, never from what a window says about itself. Every
  one of them answers None (or False) when it does not know, and the agent
  then drops the event or the frame. A backend that cannot ask its platform
  these questions keeps the defaults below, which never know: on such a
  platform nothing is captured.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.events import KeyEvent, MouseButton, MouseScroll, Rect, WindowInfo
from agent.sources._platform import choose_backend
from agent.sources.errors import BackendUnavailableError

log = logging.getLogger(__name__)

#: Called with the new active window (None: nothing has focus). Runs on the
#: probe's watcher thread: hand the value over, do not block.
FocusCallback = Callable[[WindowInfo | None], None]
#: Called when the stacking, mapping or shape of top-level windows changed.
RestackCallback = Callable[[], None]
Unsubscribe = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Visibility:
    """Where a window's own pixels are on screen, as the probe found them.

    ``rects`` are disjoint screen rectangles; ``stamp`` is the probe's own
    token for the moment of the answer (see ``WindowProbe.unchanged_since``).
    """

    rects: tuple[Rect, ...]
    stamp: int


class FocusNotifier:
    """The subscriber list a probe's watcher calls; shared by the backends.

    ``notify`` calls every callback in subscription order; an exception from
    one is logged (with no window content) and does not reach the others or
    the watcher.
    """

    def __init__(self) -> None:
        self._callbacks: list[FocusCallback] = []
        self._lock = threading.Lock()

    def add(self, callback: FocusCallback) -> Unsubscribe:
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def notify(self, window: WindowInfo | None) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(window)
            except Exception:
                log.exception("focus callback %r failed", callback)

    def __len__(self) -> int:
        with self._lock:
            return len(self._callbacks)


class PollingFocusWatch:
    """Focus watching by polling, for platforms without focus events to listen to.

    Reads the active window every ``interval`` seconds on its own thread
    (started by the first ``subscribe``) and notifies when the window or its
    title changed.
    """

    def __init__(self, read_active: Callable[[], WindowInfo | None], interval: float) -> None:
        self._read_active = read_active
        self._interval = interval
        self._notifier = FocusNotifier()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        unsubscribe = self._notifier.add(callback)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._poll, name="overt-focus-watch", daemon=True
                )
                self._thread.start()
        return unsubscribe

    def _poll(self) -> None:
        last: tuple[int, str] | None = None
        while not self._stop.is_set():
            info = self._read_active()
            key = (info.window_id, info.title) if info else (0, "")
            if key != last:
                last = key
                self._notifier.notify(info)
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


class WindowProbe(abc.ABC):
    """Read-only view of the desktop's top-level windows."""

    @abc.abstractmethod
    def active(self) -> WindowInfo | None:
        """The window with keyboard focus."""

    @abc.abstractmethod
    def window_at(self, x: int, y: int) -> WindowInfo | None:
        """The topmost visible top-level window whose frame holds screen point (x, y).

        For attributing clicks: a click on a window's title bar belongs to
        that window, so hit-testing uses the frame while the returned
        ``rect`` is the client area.
        """

    def describe(self, window_id: int) -> WindowInfo | None:
        """One top-level window by id; None if it does not exist (any more)."""
        return None

    # -- where input and pixels go (None / False: not known, so dropped) -----

    def key_receiver(self, event: KeyEvent) -> int | None:
        """The top-level window the display server delivered this key to.

        None when that is not known: another client held a keyboard grab,
        focus was changing around the key, or the platform cannot tell.
        """
        return None

    def pointer_receiver(self, event: MouseButton | MouseScroll) -> int | None:
        """The top-level window a button press or scroll went to (None: not known).

        Found among all viewable top-level windows in stacking order at the
        moment of the event, popups included; None when another client held
        a pointer grab or the stacking was changing around the event. The
        caller checks that the point lies in the window's client area.
        """
        return None

    def shows(self, window_id: int, x: int, y: int) -> bool:
        """Whether screen point (x, y) lies on the visible part of ``window_id`` now.

        For pointer movement, which comes too often to ask the server each
        time: answered from state the probe's watcher keeps current, so only
        while something is subscribed (``subscribe``).
        """
        return False

    def visible_region(self, window: WindowInfo) -> Visibility | None:
        """The parts of ``window.rect`` where the window's own pixels are visible now.

        Other windows above it (any process, the same one included), parts
        outside its shape and a window that is unmapped or shaded are left
        out. None when the window is not visible or the answer is in doubt.
        """
        return None

    def unchanged_since(self, visibility: Visibility) -> bool:
        """Whether nothing that could change ``visibility`` happened since it was found."""
        return False

    def set_digest_paths(self, paths: frozenset[str]) -> None:  # noqa: B027 - optional
        """Executables whose SHA-256 ``AppIdentity.exe_sha256`` must carry (policy pins)."""

    def subscribe_restack(self, callback: RestackCallback) -> Unsubscribe:
        """Call ``callback`` when top-level windows were restacked, mapped or reshaped."""
        return _no_op

    @abc.abstractmethod
    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        """Call ``callback`` whenever the active window or its title changes.

        Starts the probe's watcher on first use. Returns a function that
        removes the callback. Exceptions from callbacks are logged and
        swallowed so one bad subscriber cannot stop the watcher.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the watcher and release OS resources. Safe to call twice."""

    def __enter__(self) -> WindowProbe:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _no_op() -> None:
    pass


_WINDOW_BACKENDS = ("xorg", "win32", "darwin", "fake")


def select_window_probe(env: Mapping[str, str] | None = None) -> WindowProbe:
    """The window probe for this machine (``OVERT_WINDOW_BACKEND`` overrides).

    On Linux without DISPLAY this raises
    :class:`agent.sources.errors.NoDisplayError`: "no X display: set DISPLAY,
    or run under Xvfb; Wayland sessions are not supported yet".
    """
    name = choose_backend("window", _WINDOW_BACKENDS, env=env)
    if name == "xorg":
        from agent.sources._xorg import XorgWindowProbe

        return XorgWindowProbe()
    if name == "win32":
        from agent.sources._win32 import Win32WindowProbe

        return Win32WindowProbe()
    if name == "darwin":
        from agent.sources._darwin import DarwinWindowProbe

        return DarwinWindowProbe()
    if name == "fake":
        from agent.sources._fake import FakeWindowProbe

        return FakeWindowProbe()
    raise BackendUnavailableError(f"unknown window backend {name!r}")  # pragma: no cover
