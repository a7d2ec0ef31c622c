"""The X11 window probe on a real Xvfb + openbox desktop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.events import Rect, WindowInfo
from agent.sources import select_window_probe
from agent.sources._xorg import XorgWindowProbe
from agent.sources.window import Visibility
from tests.desktop import AppWindow, Desktop, wait_for
from tests.e2e.conftest import OTHERAPP_GEOMETRY, WORKAPP_GEOMETRY

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


def test_focus_change_calls_back_with_the_new_window(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow, otherapp: AppWindow
) -> None:
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    seen = Recorder()
    probe.subscribe(seen)
    wait_for(lambda: seen.last() and seen.last().window_id == workapp.window_id)  # type: ignore[union-attr]

    desktop.xdotool("windowactivate", "--sync", otherapp.window_id)
    wait_for(
        lambda: (w := seen.last()) is not None and w.window_id == otherapp.window_id,
        what="focus on the other app",
    )
    now = seen.last()
    assert now is not None
    assert now.app.wm_class == "overt-otherapp"
    assert now.rect == Rect(*OTHERAPP_GEOMETRY)
    # The WM passes through window 0 while focus moves; that is not reported.
    assert None not in seen.seen


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


def test_window_at_finds_the_topmost_window_under_a_point(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow, otherapp: AppWindow
) -> None:
    # workapp (100,120 800x600) and otherapp (700,400 600x400) overlap in
    # x 700..900, y 400..720.
    desktop.xdotool("windowactivate", "--sync", otherapp.window_id)

    def at(x: int, y: int) -> int | None:
        info = probe.window_at(x, y)
        return info.window_id if info else None

    wait_for(lambda: at(800, 500) == otherapp.window_id, what="other app on top")
    assert at(200, 200) == workapp.window_id
    assert at(1200, 700) == otherapp.window_id
    assert at(1800, 1000) is None  # bare desktop
    assert at(300, 110) == workapp.window_id  # the title bar belongs to the window

    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    wait_for(lambda: at(800, 500) == workapp.window_id, what="work app raised")
    assert at(1200, 700) == otherapp.window_id
    info = probe.window_at(200, 200)
    assert info is not None
    assert info.rect == Rect(*WORKAPP_GEOMETRY)


def _area(rects: tuple[Rect, ...]) -> int:
    return sum(r.width * r.height for r in rects)


def test_the_visible_region_leaves_out_the_other_window_stacked_above(
    desktop: Desktop, probe: XorgWindowProbe, workapp: AppWindow, otherapp: AppWindow
) -> None:
    desktop.xdotool("windowactivate", "--sync", otherapp.window_id)
    work = wait_for(lambda: probe.describe(workapp.window_id))
    assert work is not None

    def covered() -> object:
        visible = probe.visible_region(work)
        return (
            visible
            if visible and _area(visible.rects) < work.rect.width * work.rect.height
            else None
        )

    visible = wait_for(covered, what="the other app covering the work app")
    assert isinstance(visible, Visibility)
    # The other app's frame (client at 700,400 plus decorations) overlaps the
    # work app's bottom right corner, which is left out; the rest is kept.
    assert not any(r.contains(850, 650) for r in visible.rects)
    assert any(r.contains(200, 200) for r in visible.rects)
    hidden = work.rect.width * work.rect.height - _area(visible.rects)
    assert hidden >= (900 - 700) * (720 - 400)
    assert probe.unchanged_since(visible)

    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    assert wait_for(lambda: not probe.unchanged_since(visible), what="the restack seen")

    def whole() -> bool:
        again = probe.visible_region(work)
        return again is not None and again.rects == (work.rect,)

    wait_for(whole, what="nothing above the work app")


def test_a_window_that_vanished_reads_as_none(
    desktop: Desktop, probe: XorgWindowProbe, otherapp: AppWindow
) -> None:
    assert probe.describe(otherapp.window_id) is not None
    desktop.kill(otherapp.proc)
    wait_for(lambda: probe.describe(otherapp.window_id) is None, what="the window to vanish")
    assert probe.describe(0x7FFFFFF) is None
