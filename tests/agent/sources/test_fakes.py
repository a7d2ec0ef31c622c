"""The fake backends' own knobs and details, beyond the sources contract.

What every backend promises is ``test_contract.py``, run on the fakes and on
X11; here are what only the fakes have (``starts``, ``rename``, ``grabbed``,
a same-process popup on one stack) and the pure grab geometry.
"""

from __future__ import annotations

import pytest

from agent.events import AppIdentity, KeyEvent, MouseButton, Rect, WindowInfo
from agent.sources._fake import FakeInputHooks, FakeWindowProbe
from agent.sources.errors import SourceError
from agent.sources.input import EventQueue
from agent.sources.screen import grab_region


def window(wid: int, rect: Rect, title: str = "t", pid: int | None = None) -> WindowInfo:
    return WindowInfo(wid, AppIdentity(wm_class=f"app{wid}"), title, rect, pid=pid)


def test_the_fake_hooks_count_how_often_they_were_installed() -> None:
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


def test_a_grab_by_another_client_on_the_fake_leaves_keys_unplaced() -> None:
    a = window(1, Rect(0, 0, 100, 100))
    b = window(2, Rect(50, 50, 100, 100))
    probe = FakeWindowProbe([a, b])
    probe.focus(1)
    key = KeyEvent(1.0, "x", True, "x")
    assert probe.key_receiver(key) == 1
    probe.grabbed = True
    assert probe.key_receiver(key) is None
    # Presses are not held by the keyboard grab.
    assert probe.pointer_receiver(MouseButton(1.0, 60, 60, "left", True)) == 1  # a is raised


def test_grab_region_takes_the_monitor_holding_most_of_the_window() -> None:
    left, right = Rect(0, 0, 1920, 1080), Rect(1920, 0, 2560, 1440)
    assert grab_region(Rect(1800, 100, 400, 300), [left, right]) == Rect(1920, 100, 280, 300)
    assert grab_region(Rect(1700, 100, 400, 300), [left, right]) == Rect(1700, 100, 220, 300)
    assert grab_region(Rect(-500, -500, 100, 100), [left, right]) is None
