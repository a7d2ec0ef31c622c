"""pynput input hooks on a real Xvfb, fed by XTEST input from xdotool: pynput's own ways.

The shape of input events and the hooks' start/stop promises are the sources
contract (``tests/agent/sources/test_contract.py``), run on these hooks too;
here are pynput's quirks and its listener threads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.events import KeyEvent, SourceEvent
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
