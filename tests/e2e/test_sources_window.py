"""The X11 window probe on a real Xvfb + openbox desktop: what only X11 has.

What every probe promises (identity, window_at, focus reports, visible
regions, where input goes) is the sources contract,
``tests/agent/sources/test_contract.py``, run on this backend too; here are
the X11 backend's own facts: identity read from /proc, title changes of a
real toolkit window, the polling fallback and the WM's frame.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.events import Rect, WindowInfo
from agent.sources import select_window_probe
from agent.sources._xorg import XorgWindowProbe
from tests.desktop import AppWindow, Desktop, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY

pytestmark = pytest.mark.desktop


@pytest.fixture
def probe(desktop: Desktop) -> Iterator[XorgWindowProbe]:
    chosen = select_window_probe()
    assert isinstance(chosen, XorgWindowProbe)
    yield chosen
    chosen.close()


class Recorder:
    """Collects focus callbacks from the watcher thread."""

    def __init__(self) -> None:
        self.seen: list[WindowInfo | None] = []
        self._lock = threading.Lock()

    def __call__(self, window: WindowInfo | None) -> None:
        with self._lock:
            self.seen.append(window)

    def last(self) -> WindowInfo | None:
        with self._lock:
            return self.seen[-1] if self.seen else None

    def titles(self) -> list[str | None]:
        with self._lock:
            return [w.title if w else None for w in self.seen]


def test_active_window_identity_title_pid_and_client_geometry(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow
) -> None:
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    info = wait_for(probe.active, what="an active window")
    assert info is not None
    assert info.window_id == workapp.window_id
    assert info.app.wm_instance == "overt-workapp"
    assert info.app.wm_class == "overt-workapp"
    assert info.title == "Overt Work App"
    assert info.pid == workapp.proc.pid
    comm = Path(f"/proc/{workapp.proc.pid}/comm").read_text().strip()
    assert info.app.process_name == comm
    assert info.app.exe_name.startswith("python")
    # The client area, exactly where Qt was asked to put it (not the frame).
    assert info.rect == Rect(*WORKAPP_GEOMETRY)
    assert info.scale == 1.0


def test_title_change_of_the_active_window_is_reported(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow
) -> None:
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    seen = Recorder()
    probe.subscribe(seen)
    wait_for(lambda: seen.titles() == ["Overt Work App"], what="the initial report")
    desktop.xdotool("key", "--clearmodifiers", "ctrl+r")  # Window > Rename
    wait_for(lambda: seen.titles()[-1] == "Overt Work App (renamed)", what="the renamed title")
    assert seen.last().window_id == workapp.window_id  # type: ignore[union-attr]


def test_polling_fallback_reports_focus_changes(
    desktop: Desktop, workapp: AppWindow, otherapp: AppWindow
) -> None:
    with XorgWindowProbe(use_events=False, poll_interval=0.02) as polling:
        seen = Recorder()
        polling.subscribe(seen)
        desktop.xdotool("windowactivate", "--sync", workapp.window_id)
        wait_for(lambda: (w := seen.last()) is not None and w.window_id == workapp.window_id)
        desktop.xdotool("windowactivate", "--sync", otherapp.window_id)
        wait_for(lambda: (w := seen.last()) is not None and w.window_id == otherapp.window_id)


def test_a_point_on_the_title_bar_belongs_to_the_window(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow
) -> None:
    # The contract (tests/agent/sources/test_contract.py) covers stacking; the
    # WM's frame is X11's own: window_at hit-tests the frame and returns the
    # client area.
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    x, y, _, _ = WORKAPP_GEOMETRY
    info = wait_for(lambda: probe.window_at(x + 200, y - 10), what="the work app's title bar")
    assert info is not None
    assert info.window_id == workapp.window_id
    assert info.rect == Rect(*WORKAPP_GEOMETRY)
