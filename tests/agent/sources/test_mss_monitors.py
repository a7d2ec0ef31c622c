"""The mss grabber sees monitors plugged in or unplugged after it read them.

Xvfb has one CRTC and cannot plug a monitor in, so these tests give the
grabber a stand-in for the mss module that behaves as mss does where it
matters: an instance reads the monitors once, when first asked, and keeps
them; a grab outside the screen fails with ``ScreenShotError``. The grabber
on a real X server is tested in ``tests/e2e/test_sources_screen.py``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources._mss import REREAD_AFTER_S, MssScreenGrabber
from agent.sources.errors import SourceError

LAPTOP = {"left": 0, "top": 0, "width": 1280, "height": 800}
DOCK = {"left": 1280, "top": 0, "width": 1920, "height": 1080}


class _Shot:
    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.raw = bytes(width * height * 4)


class _Screen:
    """What is plugged in now, and the mss instances made so far."""

    def __init__(self, *monitors: dict[str, int]) -> None:
        self.plugged = list(monitors)
        self.made = 0
        self.closed = 0
        screen = self

        class ScreenShotError(Exception):
            pass

        class MSS:
            def __init__(self) -> None:
                screen.made += 1
                self._monitors: list[dict[str, int]] = []

            @property
            def monitors(self) -> list[dict[str, int]]:
                if not self._monitors:  # read once, then kept, as mss does
                    right = max(m["left"] + m["width"] for m in screen.plugged)
                    bottom = max(m["top"] + m["height"] for m in screen.plugged)
                    whole = {"left": 0, "top": 0, "width": right, "height": bottom}
                    self._monitors = [whole, *screen.plugged]
                return self._monitors

            def grab(self, box: dict[str, int]) -> _Shot:
                on = any(
                    m["left"] <= box["left"]
                    and box["left"] + box["width"] <= m["left"] + m["width"]
                    and m["top"] <= box["top"]
                    and box["top"] + box["height"] <= m["top"] + m["height"]
                    for m in screen.plugged
                )
                if not on:
                    raise ScreenShotError("XGetImage() failed")
                return _Shot(box["width"], box["height"])

            def close(self) -> None:
                screen.closed += 1

        self.module = types.ModuleType("mss")
        self.module.MSS = MSS  # type: ignore[attr-defined]
        self.module.ScreenShotError = ScreenShotError  # type: ignore[attr-defined]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _window(x: int, y: int) -> WindowInfo:
    return WindowInfo(7, AppIdentity(wm_class="Editor"), "Report", Rect(x, y, 400, 300), pid=1)


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> _Screen:
    s = _Screen(LAPTOP)
    monkeypatch.setitem(sys.modules, "mss", s.module)
    return s


def test_a_window_on_a_monitor_plugged_in_later_is_grabbed(screen: _Screen) -> None:
    clock = _Clock()
    grabber = MssScreenGrabber(clock=clock)
    assert grabber.grab(_window(100, 100), 1.0) is not None  # reads the laptop's monitor
    screen.plugged.append(DOCK)  # docked
    frame = grabber.grab(_window(1500, 200), 2.0)
    assert frame is not None
    assert frame.rect == Rect(1500, 200, 400, 300)
    assert (screen.made, screen.closed) == (2, 1)
    grabber.close()


def test_a_window_on_no_monitor_rereads_them_at_most_every_five_seconds(screen: _Screen) -> None:
    clock = _Clock()
    grabber = MssScreenGrabber(clock=clock)
    off = _window(5000, 5000)
    assert grabber.grab(off, 1.0) is None
    assert screen.made == 2  # read, missed, read again
    for _ in range(9):  # 4.5 s of grabs
        clock.now += 0.5
        assert grabber.grab(off, 1.0) is None
    assert screen.made == 2  # not once per grab: each instance is a display connection
    clock.now += REREAD_AFTER_S
    assert grabber.grab(off, 1.0) is None
    assert screen.made == 3
    grabber.close()
    assert screen.closed == 3


def test_a_window_left_on_an_unplugged_monitor_is_no_longer_grabbed(screen: _Screen) -> None:
    screen.plugged.append(DOCK)
    clock = _Clock()
    grabber = MssScreenGrabber(clock=clock)
    assert grabber.grab(_window(1500, 200), 1.0) is not None
    screen.plugged.remove(DOCK)  # undocked; the window manager moves the window soon
    assert grabber.grab(_window(1500, 200), 2.0) is None  # the grab failed, the reread says why
    assert grabber.grab(_window(100, 100), 3.0) is not None
    grabber.close()


def test_a_grab_that_keeps_failing_is_a_source_error(screen: _Screen) -> None:
    clock = _Clock()
    grabber = MssScreenGrabber(clock=clock)
    inside = _window(100, 100)
    assert grabber.grab(inside, 1.0) is not None

    def broken(self: Any, box: dict[str, int]) -> _Shot:
        raise screen.module.ScreenShotError("XGetImage() failed")

    screen.module.MSS.grab = broken
    with pytest.raises(SourceError, match="screen grab failed"):
        grabber.grab(inside, 2.0)  # reread once, failed again
    assert screen.made == 2
    grabber.close()
