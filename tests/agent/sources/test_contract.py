"""The sources contract: one suite, run on the fake backend and on X11.

Every test here states a promise of the interfaces in :mod:`agent.sources`
(:class:`~agent.sources.window.WindowProbe`, its focus watcher,
:class:`~agent.sources.input.InputHooks` and
:class:`~agent.sources.screen.ScreenGrabber`) and checks it the same way on
both backends: the fake desktop of :mod:`agent.sources._fake`, and the X11
backends (the python-xlib probe, pynput hooks, the mss grabber) on the
private Xvfb + openbox desktop of :mod:`tests.desktop`, whose windows are
solid-colour X windows (:mod:`tests.e2e.xwindows`) and whose input is XTEST
input from xdotool. The suite creates every window it asks about.

What only one backend has is tested beside its backend: X11 grabs, frames,
title changes and pynput's threads in ``tests/e2e/test_sources_*.py`` and
the filter suites, the fake's own knobs in ``test_fakes.py``.
"""

from __future__ import annotations

import abc
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.events import (
    AppIdentity,
    Frame,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    Rect,
    SourceEvent,
    WindowInfo,
)
from agent.sources import (
    EventQueue,
    InputHooks,
    ScreenGrabber,
    SourceError,
    WindowProbe,
    select_input_hooks,
    select_screen_grabber,
    select_window_probe,
)
from agent.sources._fake import FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.window import Visibility

T = TypeVar("T")

SCREEN = Rect(0, 0, 1920, 1080)
#: Two windows that overlap in x 600..800, y 400..600, and a point on neither.
LOWER = Rect(200, 200, 600, 400)
UPPER = Rect(600, 400, 600, 400)
OVERLAP = (700, 500)
ONLY_LOWER = (300, 300)
ONLY_UPPER = (1100, 700)
BARE = (1800, 1000)
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


@dataclass(frozen=True)
class Opened:
    """A window the suite created: its id and what it was created as."""

    window_id: int
    rect: Rect
    wm_class: str
    title: str
    pid: int


class Desk(abc.ABC):
    """One backend's sources, and the means to act on its desktop as a user would."""

    probe: WindowProbe
    hooks: InputHooks
    grabber: ScreenGrabber

    @abc.abstractmethod
    def open(self, rect: Rect, colour: tuple[int, int, int], name: str) -> Opened:
        """A new top-level window, mapped, painted ``colour``, of WM_CLASS ``name``.

        Its client area is ``rect`` of the size asked for, where the window
        manager put it (a few pixels off ``rect``'s origin, for its frame).
        """

    @abc.abstractmethod
    def activate(self, window: Opened) -> None:
        """Focus and raise ``window`` (as a click on it would, through the WM)."""

    @abc.abstractmethod
    def close(self, window: Opened) -> None:
        """The window's program goes away."""

    @abc.abstractmethod
    def move(self, x: int, y: int) -> None: ...

    @abc.abstractmethod
    def click(self, x: int, y: int) -> None:
        """Press and release the left button at (x, y)."""

    @abc.abstractmethod
    def scroll_down(self, x: int, y: int) -> None:
        """One wheel step down at (x, y)."""

    @abc.abstractmethod
    def type(self, text: str) -> None:
        """Type printable text."""

    @abc.abstractmethod
    def tap(self, key: str) -> None:
        """Press and release a special key, named as :class:`KeyEvent` names it."""

    @abc.abstractmethod
    def until(self, check: Callable[[], T], what: str) -> T:
        """``check()`` once it is truthy: at once on the fake, within a timeout on X11."""

    def described(self, window: Opened) -> WindowInfo:
        info = self.until(lambda: self.probe.describe(window.window_id), "the window described")
        assert info is not None
        return info

    def painted(
        self, info: WindowInfo, t: float, point: tuple[int, int], colour: tuple[int, int, int]
    ) -> Frame:
        """A grab of ``info`` once the window shows ``colour`` at ``point``."""

        def check() -> Frame | None:
            frame = self.grabber.grab(info, t)
            return frame if frame is not None and _pixel(frame, *point) == bytes(colour) else None

        frame = self.until(check, "the window painted")
        assert frame is not None
        return frame


class FakeDesk(Desk):
    def __init__(self) -> None:
        self.probe = self.fake_probe = FakeWindowProbe()
        self.hooks = self.fake_hooks = FakeInputHooks(clock=itertools.count(1).__next__)
        self.grabber = self.fake_grabber = FakeScreenGrabber(monitors=[SCREEN])
        self._ids = itertools.count(0x100)

    def open(self, rect: Rect, colour: tuple[int, int, int], name: str) -> Opened:
        wid = next(self._ids)
        opened = Opened(wid, rect, name, f"{name} window", 4000 + wid)
        app = AppIdentity(wm_instance=name, wm_class=name)
        self.fake_probe.add(WindowInfo(wid, app, opened.title, rect, pid=opened.pid))
        self.fake_grabber.colors[wid] = colour
        return opened

    def activate(self, window: Opened) -> None:
        self.fake_probe.focus(window.window_id)

    def close(self, window: Opened) -> None:
        self.fake_probe.remove(window.window_id)

    def move(self, x: int, y: int) -> None:
        self.fake_hooks.move(x, y)

    def click(self, x: int, y: int) -> None:
        self.fake_hooks.click(x, y)

    def scroll_down(self, x: int, y: int) -> None:
        self.fake_hooks.scroll(x, y, 0, -1)

    def type(self, text: str) -> None:
        self.fake_hooks.type(text)

    def tap(self, key: str) -> None:
        self.fake_hooks.tap(name=key)

    def until(self, check: Callable[[], T], what: str) -> T:
        value = check()
        assert value, f"not so on the fake desktop: {what}"
        return value


#: xdotool's key names for the special keys the suite taps.
_KEYSYMS = {"enter": "Return", "backspace": "BackSpace", "tab": "Tab", "esc": "Escape"}
_KEYSYMS |= {"left": "Left", "home": "Home", "page_down": "Next", "f5": "F5"}


class X11Desk(Desk):
    def __init__(self, desktop: Any, directory: Path) -> None:
        from agent.sources._mss import MssScreenGrabber
        from agent.sources._pynput import PynputHooks
        from agent.sources._xorg import XorgWindowProbe

        self.desktop = desktop
        self._directory = directory
        self._windows: dict[int, Any] = {}
        self.probe = select_window_probe()
        self.hooks = select_input_hooks()
        self.grabber = select_screen_grabber()
        assert isinstance(self.probe, XorgWindowProbe)
        assert isinstance(self.hooks, PynputHooks)
        assert isinstance(self.grabber, MssScreenGrabber)

    def open(self, rect: Rect, colour: tuple[int, int, int], name: str) -> Opened:
        from tests.e2e.xwindows import start_xwindow

        title = f"{name} window"
        geometry = (rect.x, rect.y, rect.width, rect.height)
        window = start_xwindow(
            self.desktop, self._directory, geometry, colour, "--wm-class", name, "--title", title
        )
        self._windows[window.window_id] = window
        # Where the WM put the client: the frame's border and title bar shift it.
        placed = Rect(*self.desktop.client_geometry(window.window_id))
        return Opened(window.window_id, placed, name, title, window.pid)

    def activate(self, window: Opened) -> None:
        self.desktop.activate(window.window_id)

    def close(self, window: Opened) -> None:
        self.desktop.kill(self._windows.pop(window.window_id).proc)

    def move(self, x: int, y: int) -> None:
        self.desktop.xdotool("mousemove", x, y)

    def click(self, x: int, y: int) -> None:
        self.desktop.xdotool("mousemove", x, y, "click", 1)

    def scroll_down(self, x: int, y: int) -> None:
        self.desktop.xdotool("mousemove", x, y, "click", 5)

    def type(self, text: str) -> None:
        self.desktop.xdotool("type", text)

    def tap(self, key: str) -> None:
        self.desktop.xdotool("key", _KEYSYMS[key])

    def until(self, check: Callable[[], T], what: str) -> T:
        from tests.desktop import wait_for

        return wait_for(check, timeout=10, what=what)

    def shut(self) -> None:
        for window in self._windows.values():
            self.desktop.kill(window.proc)


@pytest.fixture(params=["fake", pytest.param("x11", marks=pytest.mark.desktop)])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    if request.param == "fake":
        made: Desk = FakeDesk()
    else:
        made = X11Desk(request.getfixturevalue("desktop"), tmp_path)
    try:
        yield made
    finally:
        made.hooks.stop()
        made.probe.close()
        made.grabber.close()
        if isinstance(made, X11Desk):
            made.shut()


def two_windows(desk: Desk) -> tuple[Opened, Opened]:
    """LOWER under UPPER, UPPER focused."""
    lower = desk.open(LOWER, RED, "overt-contract-lower")
    upper = desk.open(UPPER, BLUE, "overt-contract-upper")
    desk.activate(upper)
    return lower, upper


class Recorder:
    """Focus reports, from whichever thread the watcher calls on."""

    def __init__(self) -> None:
        self.seen: list[WindowInfo | None] = []
        self._lock = threading.Lock()

    def __call__(self, window: WindowInfo | None) -> None:
        with self._lock:
            self.seen.append(window)

    def last_id(self) -> int | None:
        with self._lock:
            last = self.seen[-1] if self.seen else None
        return None if last is None else last.window_id


class Collected:
    """Events drained from a queue until a predicate holds."""

    def __init__(self, desk: Desk, queue: EventQueue) -> None:
        self.desk, self.queue = desk, queue
        self.events: list[SourceEvent] = []

    def until(self, predicate: Callable[[list[SourceEvent]], bool], what: str) -> None:
        def check() -> bool:
            self.events.extend(self.queue.drain())
            return predicate(self.events)

        self.desk.until(check, what)

    def key_events(self) -> list[tuple[str, bool, str | None]]:
        return [(e.key, e.pressed, e.char) for e in self.events if isinstance(e, KeyEvent)]


def _id(window: WindowInfo | None) -> int | None:
    return None if window is None else window.window_id


# -- what a window is ---------------------------------------------------------


def test_describe_and_active_report_the_window_as_it_was_created(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-one")
    desk.activate(window)
    info = desk.described(window)
    assert info.window_id == window.window_id
    assert (info.app.wm_instance, info.app.wm_class) == (window.wm_class, window.wm_class)
    assert info.title == window.title
    assert info.pid == window.pid
    # The client area, exactly where it is on screen (not the WM's frame).
    assert info.rect == window.rect
    assert (info.rect.width, info.rect.height) == (LOWER.width, LOWER.height)
    active = desk.until(
        lambda: (a := desk.probe.active()) is not None and a.window_id == window.window_id and a,
        "the window active",
    )
    assert active == info


def test_window_at_finds_the_topmost_window_under_a_point(desk: Desk) -> None:
    lower, upper = two_windows(desk)

    def at(point: tuple[int, int]) -> int | None:
        return _id(desk.probe.window_at(*point))

    desk.until(lambda: at(OVERLAP) == upper.window_id, "the upper window on top")
    assert at(ONLY_LOWER) == lower.window_id
    assert at(ONLY_UPPER) == upper.window_id
    assert at(BARE) is None

    desk.activate(lower)
    desk.until(lambda: at(OVERLAP) == lower.window_id, "the lower window raised")
    assert at(ONLY_UPPER) == upper.window_id
    info = desk.probe.window_at(*ONLY_LOWER)
    assert info is not None
    assert info.rect == lower.rect


def test_a_window_that_went_away_reads_as_none(desk: Desk) -> None:
    window = desk.open(UPPER, GREEN, "overt-contract-gone")
    desk.described(window)
    desk.close(window)
    desk.until(lambda: desk.probe.describe(window.window_id) is None, "the window to vanish")
    assert desk.probe.describe(0x7FFFFFF) is None


# -- focus watching -------------------------------------------------------------


def test_focus_changes_are_reported_with_the_new_window(desk: Desk) -> None:
    lower, upper = two_windows(desk)
    seen = Recorder()
    desk.probe.subscribe(seen)
    desk.activate(lower)
    desk.until(lambda: seen.last_id() == lower.window_id, "focus on the lower window")
    desk.activate(upper)
    desk.until(lambda: seen.last_id() == upper.window_id, "focus on the upper window")
    last = seen.seen[-1]
    assert last is not None
    assert last.app.wm_class == upper.wm_class
    assert last.rect == upper.rect
    # Focus moving between two windows is never reported as nothing focused.
    assert None not in seen.seen


def test_a_subscriber_that_raises_stops_neither_the_others_nor_the_watcher(desk: Desk) -> None:
    lower, upper = two_windows(desk)

    def broken(_: WindowInfo | None) -> None:
        raise RuntimeError("subscriber bug")

    seen = Recorder()
    desk.probe.subscribe(broken)
    desk.probe.subscribe(seen)
    desk.activate(lower)
    desk.until(lambda: seen.last_id() == lower.window_id, "the first report")
    desk.activate(upper)
    desk.until(lambda: seen.last_id() == upper.window_id, "a report after the failure")


def test_an_unsubscribed_callback_hears_nothing_more(desk: Desk) -> None:
    lower, upper = two_windows(desk)
    gone, kept = Recorder(), Recorder()
    unsubscribe = desk.probe.subscribe(gone)
    desk.probe.subscribe(kept)
    desk.activate(lower)
    desk.until(lambda: kept.last_id() == lower.window_id and gone.seen, "both told")
    unsubscribe()
    heard = len(gone.seen)
    desk.activate(upper)
    desk.until(lambda: kept.last_id() == upper.window_id, "the kept callback told")
    assert len(gone.seen) == heard


# -- where input and pixels go --------------------------------------------------


def test_the_visible_region_leaves_out_the_window_above_until_it_is_raised(desk: Desk) -> None:
    lower, upper = two_windows(desk)
    info = desk.described(lower)

    def covered() -> Visibility | None:
        visible = desk.probe.visible_region(info)
        return visible if visible and not any(r.contains(*OVERLAP) for r in visible.rects) else None

    visible = desk.until(covered, "the upper window left out")
    assert visible is not None
    assert any(r.contains(*ONLY_LOWER) for r in visible.rects)
    # At least the whole overlap is left out (on X11 the upper frame's title
    # bar and border too).
    overlap = lower.rect.intersect(upper.rect)
    assert overlap is not None
    hidden = lower.rect.width * lower.rect.height - sum(r.width * r.height for r in visible.rects)
    assert hidden >= overlap.width * overlap.height
    assert desk.probe.unchanged_since(visible)

    desk.activate(lower)
    desk.until(lambda: not desk.probe.unchanged_since(visible), "the restack noticed")
    desk.until(
        lambda: (
            (again := desk.probe.visible_region(info)) is not None and again.rects == (lower.rect,)
        ),
        "nothing above the lower window",
    )


def test_shows_answers_which_window_is_visible_at_a_point(desk: Desk) -> None:
    desk.probe.subscribe(lambda _: None)  # the watcher keeps the probe's state current
    lower, upper = two_windows(desk)
    shows = desk.probe.shows
    desk.until(lambda: shows(upper.window_id, *OVERLAP), "the upper window shown on top")
    desk.until(lambda: not shows(lower.window_id, *OVERLAP), "the lower window hidden there")
    desk.until(lambda: shows(lower.window_id, *ONLY_LOWER), "the lower window shown beside")
    assert not shows(lower.window_id, *BARE)
    assert not shows(upper.window_id, *ONLY_LOWER)


def test_keys_are_placed_in_the_focused_window(desk: Desk) -> None:
    lower, _ = two_windows(desk)
    desk.activate(lower)
    queue = EventQueue()
    desk.hooks.start(queue)
    got = Collected(desk, queue)
    desk.type("x")
    got.until(lambda ev: ("x", True, "x") in got.key_events(), "the key")
    press = next(e for e in got.events if isinstance(e, KeyEvent) and e.pressed)
    assert desk.until(lambda: desk.probe.key_receiver(press), "the key placed") == lower.window_id


def test_a_press_is_placed_in_the_topmost_window_under_it(desk: Desk) -> None:
    _, upper = two_windows(desk)
    queue = EventQueue()
    desk.hooks.start(queue)
    got = Collected(desk, queue)
    desk.click(*OVERLAP)
    got.until(lambda ev: any(isinstance(e, MouseButton) for e in ev), "the press")
    press = next(e for e in got.events if isinstance(e, MouseButton) and e.pressed)
    assert desk.until(lambda: desk.probe.pointer_receiver(press), "the press placed") == (
        upper.window_id
    )


# -- input hooks ----------------------------------------------------------------


def test_moves_clicks_and_scrolls_arrive_with_screen_coordinates(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-mouse")
    desk.activate(window)
    queue = EventQueue()
    desk.hooks.start(queue)
    assert desk.hooks.installed
    got = Collected(desk, queue)
    desk.move(300, 310)
    desk.click(300, 310)
    desk.scroll_down(300, 310)
    got.until(lambda ev: any(isinstance(e, MouseScroll) for e in ev), "a scroll event")
    moves = [e for e in got.events if isinstance(e, MouseMove)]
    buttons = [e for e in got.events if isinstance(e, MouseButton)]
    scrolls = [e for e in got.events if isinstance(e, MouseScroll)]
    assert (moves[-1].x, moves[-1].y) == (300, 310)
    assert [(b.x, b.y, b.button, b.pressed) for b in buttons] == [
        (300, 310, "left", True),
        (300, 310, "left", False),
    ]
    assert [(s.x, s.y, s.dx, s.dy) for s in scrolls] == [(300, 310, 0, -1)]
    times = [e.t for e in got.events if isinstance(e, MouseMove | MouseButton | MouseScroll)]
    assert times == sorted(times)


def test_typed_text_and_special_keys_arrive_normalised(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-keys")
    desk.activate(window)
    queue = EventQueue()
    desk.hooks.start(queue)
    got = Collected(desk, queue)
    specials = ("enter", "backspace", "tab", "esc", "left", "home", "page_down", "f5")
    desk.type("hi 1")
    for key in specials:
        desk.tap(key)
    got.until(lambda ev: ("f5", False, None) in got.key_events(), "the F5 release")
    assert got.key_events() == [
        ("h", True, "h"),
        ("h", False, "h"),
        ("i", True, "i"),
        ("i", False, "i"),
        ("space", True, " "),
        ("space", False, " "),
        ("1", True, "1"),
        ("1", False, "1"),
        *[(name, pressed, None) for name in specials for pressed in (True, False)],
    ]


def test_no_event_is_queued_while_the_hooks_are_not_installed(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-stop")
    desk.activate(window)
    first = EventQueue()
    desk.type("a")  # before any hook: nowhere to go
    desk.hooks.start(first)
    got = Collected(desk, first)
    desk.type("b")
    got.until(lambda ev: ("b", False, "b") in got.key_events(), "input on the first hooks")
    assert ("a", True, "a") not in got.key_events()
    desk.hooks.stop()
    assert not desk.hooks.installed
    desk.type("c")

    # Fresh hooks on another queue: once they see new input, the old hooks
    # would have seen "c" too, had they still been installed.
    second = EventQueue()
    desk.hooks.start(second)
    again = Collected(desk, second)
    desk.type("d")
    again.until(lambda ev: ("d", False, "d") in again.key_events(), "input on the new hooks")
    assert ("c", True, "c") not in again.key_events()
    assert first.drain() == []


def test_starting_twice_without_stop_is_refused(desk: Desk) -> None:
    desk.hooks.start(EventQueue())
    with pytest.raises(SourceError):
        desk.hooks.start(EventQueue())
    desk.hooks.stop()
    desk.hooks.start(EventQueue())
    assert desk.hooks.installed


# -- screen grabs -----------------------------------------------------------------


def _pixel(frame: Frame, x: int, y: int) -> bytes:
    """The RGB of screen point (x, y) inside a frame."""
    offset = ((y - frame.rect.y) * frame.width + (x - frame.rect.x)) * 3
    return frame.rgb[offset : offset + 3]


def test_a_grab_takes_exactly_the_client_rectangle(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-grab")
    desk.activate(window)
    info = desk.described(window)
    frame = desk.painted(info, 12.5, ONLY_LOWER, RED)
    assert frame.rect == window.rect
    assert (frame.width, frame.height) == (window.rect.width, window.rect.height)
    assert len(frame.rgb) == frame.width * frame.height * 3
    assert frame.t == 12.5
    assert frame.window_id == window.window_id
    assert frame.scale == 1.0


def test_a_window_partly_off_screen_is_clipped_to_the_screen(desk: Desk) -> None:
    window = desk.open(
        Rect(SCREEN.width - 220, SCREEN.height - 180, 600, 400), GREEN, "overt-contract-edge"
    )
    desk.activate(window)
    info = desk.described(window)
    x, y = info.rect.x, info.rect.y
    assert x + info.rect.width > SCREEN.width  # the window is larger than what is on screen
    assert y + info.rect.height > SCREEN.height
    frame = desk.painted(info, 0.0, (x + 5, y + 5), GREEN)
    assert frame.rect == Rect(x, y, SCREEN.width - x, SCREEN.height - y)
    assert (frame.width, frame.height) == (frame.rect.width, frame.rect.height)
    assert _pixel(frame, SCREEN.width - 1, SCREEN.height - 1) == bytes(GREEN)


def test_a_window_entirely_off_screen_grabs_nothing(desk: Desk) -> None:
    window = desk.open(LOWER, RED, "overt-contract-off")
    info = desk.described(window)
    gone = WindowInfo(info.window_id, info.app, info.title, Rect(SCREEN.width + 10, 0, 100, 100))
    assert desk.grabber.grab(gone, 0.0) is None
    assert desk.grabber.monitors() == [SCREEN]
