"""pynput input hooks on a real Xvfb, fed by XTEST input from xdotool."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.events import KeyEvent, MouseButton, MouseMove, MouseScroll, SourceEvent
from agent.sources import EventQueue, select_input_hooks
from agent.sources._pynput import PynputHooks
from tests.desktop import AppWindow, Desktop, wait_for

pytestmark = pytest.mark.desktop


@pytest.fixture
def hooks(desktop: Desktop, workapp: AppWindow) -> Iterator[PynputHooks]:
    # Keys go to the work app's editor, which ignores SIGINT (ctrl+c).
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    chosen = select_input_hooks()
    assert isinstance(chosen, PynputHooks)
    yield chosen
    chosen.stop()


class Collected:
    def __init__(self, queue: EventQueue) -> None:
        self.queue = queue
        self.events: list[SourceEvent] = []

    def until(self, predicate: object, what: str) -> list[SourceEvent]:
        def check() -> bool:
            self.events.extend(self.queue.drain())
            return bool(predicate(self.events))  # type: ignore[operator]

        wait_for(check, timeout=5, what=what)
        return self.events

    def key_events(self) -> list[tuple[str, bool, str | None]]:
        return [(e.key, e.pressed, e.char) for e in self.events if isinstance(e, KeyEvent)]


def test_mouse_moves_clicks_and_scrolls_arrive_with_screen_coordinates(
    desktop: Desktop, hooks: PynputHooks
) -> None:
    q = EventQueue()
    hooks.start(q)
    assert hooks.installed
    got = Collected(q)
    desktop.xdotool("mousemove", 300, 310, "click", 1)
    desktop.xdotool("click", 5)  # wheel down
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


def test_typed_text_and_special_keys_arrive_normalised(
    desktop: Desktop, hooks: PynputHooks
) -> None:
    q = EventQueue()
    hooks.start(q)
    got = Collected(q)
    desktop.xdotool("type", "hi 1")
    desktop.xdotool("key", "Return", "BackSpace", "Tab", "Escape", "Left", "Home", "Next", "F5")
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
        *[
            (name, pressed, None)
            for name in ("enter", "backspace", "tab", "esc", "left", "home", "page_down", "f5")
            for pressed in (True, False)
        ],
    ]


def test_shortcuts_arrive_as_modifier_then_key(desktop: Desktop, hooks: PynputHooks) -> None:
    q = EventQueue()
    hooks.start(q)
    got = Collected(q)
    desktop.xdotool("key", "ctrl+c")
    desktop.xdotool("key", "shift+a")
    desktop.xdotool("key", "Control_R+Shift_R+z")
    got.until(lambda ev: ("z", False, "z") in got.key_events(), "three shortcuts")
    keys = got.key_events()
    assert keys[:4] == [
        ("ctrl", True, None),
        ("c", True, "c"),
        ("ctrl", False, None),
        ("c", False, "c"),
    ]
    # pynput quirk: shift+a presses "A" but releases "a" (shift is up by then).
    assert keys[4:8] == [
        ("shift", True, None),
        ("A", True, "A"),
        ("shift", False, None),
        ("a", False, "a"),
    ]
    # Right-hand modifiers lose their side.
    # Right-hand modifiers lose their side (xdotool may press a modifier twice).
    rest = keys[8:]
    assert {k for k, _, _ in rest} == {"ctrl", "shift", "Z", "z"}
    assert ("Z", True, "Z") in rest


def test_after_stop_no_events_arrive_and_the_listener_threads_are_gone(
    desktop: Desktop, hooks: PynputHooks
) -> None:
    first = EventQueue()
    hooks.start(first)
    threads = hooks.threads
    assert len(threads) == 2
    assert all(t.is_alive() for t in threads)
    hooks.stop()
    assert not hooks.installed
    assert not any(t.is_alive() for t in threads)

    # Start fresh hooks on another queue: once they see the input, the old
    # hooks would have seen it too, had they still been installed.
    second = EventQueue()
    hooks.start(second)
    assert hooks.threads
    assert not set(hooks.threads) & set(threads)
    got = Collected(second)
    desktop.xdotool("mousemove", 640, 480, "key", "x")
    got.until(lambda ev: ("x", False, "x") in got.key_events(), "input on the new hooks")
    assert first.drain() == []


def test_starting_twice_without_stop_is_refused(desktop: Desktop, hooks: PynputHooks) -> None:
    from agent.sources import SourceError

    hooks.start(EventQueue())
    with pytest.raises(SourceError):
        hooks.start(EventQueue())
