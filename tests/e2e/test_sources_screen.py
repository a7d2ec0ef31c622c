"""The mss screen grabber on a real Xvfb: what a real screen shows.

The grab's rectangle and clipping are the sources contract
(``tests/agent/sources/test_contract.py``), run on mss too; here is what
only a real screen does: a window stacked above shows up in the grab.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.events import Frame, WindowInfo
from agent.sources import ScreenGrabber, select_screen_grabber, select_window_probe
from tests.desktop import AppWindow, Desktop, wait_for
from tests.e2e.conftest import OTHERAPP_GEOMETRY
from tests.e2e.otherapp import COLOR

pytestmark = pytest.mark.desktop

MAGENTA = bytes(COLOR)


@pytest.fixture
def grabber(desktop: Desktop) -> Iterator[ScreenGrabber]:
    chosen = select_screen_grabber()
    yield chosen
    chosen.close()


def describe(window_id: int) -> WindowInfo:
    with select_window_probe() as probe:
        info = probe.describe(window_id)
    assert info is not None
    return info


def pixel(frame: Frame, x: int, y: int) -> bytes:
    """The RGB of screen point (x, y) inside a frame."""
    col, row = x - frame.rect.x, y - frame.rect.y
    offset = (row * frame.width + col) * 3
    return frame.rgb[offset : offset + 3]


def test_pixels_of_a_window_above_show_up_where_it_covers_the_grabbed_rect(
    desktop: Desktop, grabber: ScreenGrabber, workapp: AppWindow, otherapp: AppWindow
) -> None:
    desktop.xdotool("windowactivate", "--sync", otherapp.window_id)
    work = describe(workapp.window_id)
    ox, oy, _, _ = OTHERAPP_GEOMETRY
    # Inside the overlap (the other app's client area) the grab shows magenta...
    frame = wait_for(
        lambda: (
            (f := grabber.grab(work, 0.0)) is not None
            and pixel(f, ox + 20, oy + 20) == MAGENTA
            and f
        ),
        what="the other app painted over the work app",
    )
    assert isinstance(frame, Frame)
    assert pixel(frame, work.rect.x + work.rect.width - 1, work.rect.y + work.rect.height - 1) == (
        MAGENTA
    )
    # ...and outside it, the work app's own pixels.
    assert pixel(frame, 150, 300) != MAGENTA
    desktop.screenshot("sources/two-windows.png")
