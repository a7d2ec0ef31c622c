"""Fake sources for unit tests: a scriptable desktop with no OS behind it.

- :class:`FakeInputHooks` — emits through the same decode path as the real
  hooks (:func:`agent.sources.input.normalise_key` and friends), but only
  while started, like an OS that has no hook installed.
- :class:`FakeWindowProbe` — a stacking list of :class:`WindowInfo` the test
  arranges (``add``, ``focus``, ``rename``, ``remove``); focus changes call
  subscribers synchronously on the test's thread. Its truth is the list
  itself: keys go to the focused window unless the test says another client
  holds a grab (``grabbed``), presses to the topmost window at the point, and
  a window's visible region is its rectangle less every window above it.
- :class:`FakeScreenGrabber` — paints each window's rectangle in a colour the
  test chooses, clipped like the real grabber.

Select them with ``OVERT_INPUT_BACKEND=fake`` etc., or construct directly.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from agent.events import (
    Frame,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    Rect,
    WindowInfo,
    subtract,
)
from agent.sources.canary import Canary
from agent.sources.errors import SourceError
from agent.sources.input import (
    Clock,
    EventQueue,
    InputHooks,
    normalise_button,
    normalise_key,
)
from agent.sources.screen import ScreenGrabber, grab_region
from agent.sources.window import (
    FocusCallback,
    FocusNotifier,
    RestackCallback,
    Unsubscribe,
    Visibility,
    WindowProbe,
)


def _key(t: float, name: str | None, char: str | None, vk: int | None, pressed: bool) -> KeyEvent:
    key, text = normalise_key(name, char, vk)
    return KeyEvent(t, key, pressed, text)


def _button(t: float, x: int, y: int, button: str, pressed: bool) -> MouseButton:
    return MouseButton(t, x, y, normalise_button(button), pressed)


class FakeInputHooks(InputHooks):
    """Input hooks driven by the test: ``move``, ``click``, ``scroll``, ``press``..."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._queue: EventQueue | None = None
        self.starts = 0  # how many times hooks were installed

    @property
    def installed(self) -> bool:
        return self._queue is not None

    def start(self, queue: EventQueue) -> None:
        if self._queue is not None:
            raise SourceError("input hooks are already installed")
        self._queue = queue
        self.starts += 1

    def stop(self) -> None:
        self._queue = None

    # -- what the "user" does; ignored while no hook is installed --------

    def move(self, x: int, y: int) -> None:
        if self._queue is not None:
            self._queue.put_raw(MouseMove, (self._clock(), x, y))

    def button(self, x: int, y: int, button: str = "left", pressed: bool = True) -> None:
        if self._queue is not None:
            self._queue.put_raw(_button, (self._clock(), x, y, button, pressed))

    def click(self, x: int, y: int, button: str = "left") -> None:
        self.button(x, y, button, True)
        self.button(x, y, button, False)

    def scroll(self, x: int, y: int, dx: int = 0, dy: int = -1) -> None:
        if self._queue is not None:
            self._queue.put_raw(MouseScroll, (self._clock(), x, y, dx, dy))

    def key(
        self,
        name: str | None = None,
        char: str | None = None,
        vk: int | None = None,
        pressed: bool = True,
    ) -> None:
        """One key event, described the way pynput would (special key name or char/vk)."""
        if self._queue is not None:
            self._queue.put_raw(_key, (self._clock(), name, char, vk, pressed))

    def tap(self, name: str | None = None, char: str | None = None, vk: int | None = None) -> None:
        self.key(name, char, vk, True)
        self.key(name, char, vk, False)

    def type(self, text: str) -> None:
        for ch in text:
            self.tap(char=ch)


class FakeWindowProbe(WindowProbe):
    """A pretend desktop. Windows are stacked in the order added (last on top)."""

    def __init__(self, windows: list[WindowInfo] | None = None) -> None:
        self._stack: list[WindowInfo] = list(windows or [])
        self._active: int | None = None
        self._notifier = FocusNotifier()
        self._restack: list[RestackCallback] = []
        self._lock = threading.Lock()
        self.closed = False
        #: Another client holds the keyboard (a screen locker, a launcher).
        self.grabbed = False
        #: Grows with every change of the stack, like the X probe's stamp.
        self.generation = 0
        self.digest_paths: frozenset[str] = frozenset()

    def _find(self, window_id: int) -> WindowInfo | None:
        return next((w for w in self._stack if w.window_id == window_id), None)

    def add(self, window: WindowInfo, focus: bool = False) -> None:
        with self._lock:
            self._stack = [w for w in self._stack if w.window_id != window.window_id]
            self._stack.append(window)
            self.generation += 1
        self._restacked()
        if focus:
            self.focus(window.window_id)

    def _restacked(self) -> None:
        for callback in list(self._restack):
            callback()

    def remove(self, window_id: int) -> None:
        with self._lock:
            self._stack = [w for w in self._stack if w.window_id != window_id]
            self.generation += 1
            was_active = self._active == window_id
            if was_active:
                self._active = None
        self._restacked()
        if was_active:
            self._notifier.notify(None)

    def focus(self, window_id: int | None) -> None:
        """Activate (and raise) a window, or focus nothing; notifies subscribers."""
        with self._lock:
            window = None if window_id is None else self._find(window_id)
            if window_id is not None and window is None:
                raise KeyError(window_id)
            if window is not None:
                self._stack.remove(window)
                self._stack.append(window)
                self.generation += 1
            self._active = window_id
        self._notifier.notify(window)

    def rename(self, window_id: int, title: str) -> None:
        with self._lock:
            window = self._find(window_id)
            if window is None:
                raise KeyError(window_id)
            renamed = dataclasses.replace(window, title=title)
            self._stack[self._stack.index(window)] = renamed
            active = self._active == window_id
        if active:
            self._notifier.notify(renamed)

    def active(self) -> WindowInfo | None:
        with self._lock:
            return None if self._active is None else self._find(self._active)

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        with self._lock:
            return next((w for w in reversed(self._stack) if w.rect.contains(x, y)), None)

    def describe(self, window_id: int) -> WindowInfo | None:
        with self._lock:
            return self._find(window_id)

    def key_receiver(self, event: KeyEvent) -> int | None:
        with self._lock:
            return None if self.grabbed else self._active

    def pointer_receiver(self, event: MouseButton | MouseScroll) -> int | None:
        top = self.window_at(event.x, event.y)
        return None if top is None else top.window_id

    def shows(self, window_id: int, x: int, y: int) -> bool:
        top = self.window_at(x, y)
        return top is not None and top.window_id == window_id

    def visible_region(self, window: WindowInfo) -> Visibility | None:
        with self._lock:
            ids = [w.window_id for w in self._stack]
            if window.window_id not in ids:
                return None
            region = [window.rect]
            for other in self._stack[ids.index(window.window_id) + 1 :]:
                region = subtract(region, other.rect)
            return Visibility(tuple(region), self.generation) if region else None

    def unchanged_since(self, visibility: Visibility) -> bool:
        with self._lock:
            return visibility.stamp == self.generation

    def set_digest_paths(self, paths: frozenset[str]) -> None:
        self.digest_paths = paths

    def subscribe_restack(self, callback: RestackCallback) -> Unsubscribe:
        self._restack.append(callback)

        def remove() -> None:
            if callback in self._restack:
                self._restack.remove(callback)

        return remove

    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        return self._notifier.add(callback)

    def close(self) -> None:
        self.closed = True


class FakeScreenGrabber(ScreenGrabber):
    """Paints windows in solid colours on a pretend set of monitors.

    ``colors`` maps window ids to RGB; unknown windows are grey. ``grabs``
    counts calls, for rate-limit tests.
    """

    def __init__(
        self,
        monitors: list[Rect] | None = None,
        colors: dict[int, tuple[int, int, int]] | None = None,
    ) -> None:
        self._monitors = list(monitors or [Rect(0, 0, 1920, 1080)])
        self.colors = dict(colors or {})
        self.grabs = 0

    def monitors(self) -> list[Rect]:
        return list(self._monitors)

    def grab(self, window: WindowInfo, t: float) -> Frame | None:
        self.grabs += 1
        region = grab_region(window.rect, self._monitors)
        if region is None:
            return None
        pixel = bytes(self.colors.get(window.window_id, (128, 128, 128)))
        rgb = pixel * (region.width * region.height)
        return Frame(t, window.window_id, region, region.width, region.height, rgb, window.scale)

    def close(self) -> None:
        pass


class FakeCanary(Canary):
    """The filter self-test's canary window on the fake desktop (see agent.sources.canary).

    Not registered with any :class:`FakeWindowProbe`: a test that wants the
    probe to see it adds a :class:`WindowInfo` for ``window_id`` itself.
    """

    _next_id = 0x7A000000

    def __init__(self, rect: Rect) -> None:
        FakeCanary._next_id += 1
        self.window_id = FakeCanary._next_id
        self._rect: Rect | None = rect
        self.closed = False

    def geometry(self) -> Rect | None:
        return None if self.closed else self._rect

    def close(self) -> None:
        self.closed = True
