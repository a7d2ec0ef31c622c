"""The fake backends behave like the interfaces promise (they stand in for the OS)."""

from __future__ import annotations

import pytest

from agent.events import AppIdentity, KeyEvent, MouseButton, MouseMove, Rect, WindowInfo
from agent.sources._fake import FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.errors import SourceError
from agent.sources.input import EventQueue
from agent.sources.screen import grab_region


def window(wid: int, rect: Rect, title: str = "t", pid: int | None = None) -> WindowInfo:
    return WindowInfo(wid, AppIdentity(wm_class=f"app{wid}"), title, rect, pid=pid)


def test_fake_hooks_emit_only_while_installed() -> None:
    hooks = FakeInputHooks(clock=lambda: 1.0)
    q = EventQueue()
    hooks.move(1, 1)
    hooks.start(q)
    assert hooks.installed
    hooks.move(2, 3)
    hooks.click(2, 3)
    hooks.tap(name="ctrl_l")
    hooks.stop()
    hooks.tap(char="x")
    assert not hooks.installed
    assert q.drain() == [
        MouseMove(1.0, 2, 3),
        MouseButton(1.0, 2, 3, "left", True),
        MouseButton(1.0, 2, 3, "left", False),
        KeyEvent(1.0, "ctrl", True, None),
        KeyEvent(1.0, "ctrl", False, None),
    ]


def test_fake_hooks_refuse_a_second_start_and_restart_after_stop() -> None:
    hooks = FakeInputHooks()
    hooks.start(EventQueue())
    with pytest.raises(SourceError):
        hooks.start(EventQueue())
    hooks.stop()
    hooks.start(EventQueue())
    assert hooks.starts == 2


def test_fake_probe_reports_focus_and_title_changes_to_subscribers() -> None:
    a, b = window(1, Rect(0, 0, 100, 100)), window(2, Rect(50, 50, 100, 100))
    probe = FakeWindowProbe([a, b])
    seen: list[WindowInfo | None] = []
    unsubscribe = probe.subscribe(seen.append)
    probe.focus(1)
    probe.rename(1, "renamed")
    probe.focus(None)
    unsubscribe()
    probe.focus(2)
    assert [w.title if w else None for w in seen] == ["t", "renamed", None]
    assert probe.active() == b


def test_fake_probe_window_at_follows_stacking() -> None:
    a, b = window(1, Rect(0, 0, 100, 100)), window(2, Rect(50, 50, 100, 100))
    probe = FakeWindowProbe([a, b])
    assert probe.window_at(60, 60) == b
    probe.focus(1)  # raises it
    assert probe.window_at(60, 60) == a
    assert probe.window_at(140, 140) == b
    assert probe.window_at(500, 500) is None


def test_fake_probe_visible_region_leaves_out_every_window_above_same_process_too() -> None:
    a = window(1, Rect(0, 0, 100, 100), pid=10)
    popup = window(3, Rect(10, 10, 20, 20), pid=10)
    b = window(2, Rect(50, 50, 100, 100), pid=20)
    probe = FakeWindowProbe([a, popup, b])
    visible = probe.visible_region(a)
    assert visible is not None
    area = sum(r.width * r.height for r in visible.rects)
    assert area == 100 * 100 - 20 * 20 - 50 * 50
    assert not any(r.contains(15, 15) or r.contains(60, 60) for r in visible.rects)
    assert probe.visible_region(b) == probe.visible_region(b)
    assert probe.unchanged_since(visible)
    probe.focus(1)  # raised: the stack changed
    assert not probe.unchanged_since(visible)


def test_fake_probe_places_keys_and_presses_from_its_stack() -> None:
    a = window(1, Rect(0, 0, 100, 100))
    b = window(2, Rect(50, 50, 100, 100))
    probe = FakeWindowProbe([a, b])
    probe.focus(1)
    key = KeyEvent(1.0, "x", True, "x")
    assert probe.key_receiver(key) == 1
    probe.grabbed = True
    assert probe.key_receiver(key) is None
    assert probe.pointer_receiver(MouseButton(1.0, 60, 60, "left", True)) == 1  # a is raised
    assert probe.shows(1, 60, 60)
    assert not probe.shows(2, 60, 60)


def test_a_subscriber_that_raises_does_not_stop_the_others() -> None:
    probe = FakeWindowProbe([window(1, Rect(0, 0, 10, 10))])
    seen: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("subscriber bug")

    probe.subscribe(broken)
    probe.subscribe(seen.append)
    probe.focus(1)
    assert len(seen) == 1


def test_fake_grabber_clips_like_the_real_one() -> None:
    grabber = FakeScreenGrabber(colors={1: (255, 0, 255)})
    frame = grabber.grab(window(1, Rect(1800, 1000, 300, 200)), t=5.0)
    assert frame is not None
    assert frame.rect == Rect(1800, 1000, 120, 80)
    assert (frame.width, frame.height) == (120, 80)
    assert frame.rgb[:3] == bytes((255, 0, 255))
    assert len(frame.rgb) == 120 * 80 * 3
    assert grabber.grab(window(1, Rect(3000, 0, 10, 10)), t=5.0) is None


def test_grab_region_takes_the_monitor_holding_most_of_the_window() -> None:
    left, right = Rect(0, 0, 1920, 1080), Rect(1920, 0, 2560, 1440)
    assert grab_region(Rect(1800, 100, 400, 300), [left, right]) == Rect(1920, 100, 280, 300)
    assert grab_region(Rect(1700, 100, 400, 300), [left, right]) == Rect(1700, 100, 220, 300)
    assert grab_region(Rect(-500, -500, 100, 100), [left, right]) is None
