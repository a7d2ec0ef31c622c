"""The mss screen grabber on a real Xvfb: only the client rectangle, clipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.events import Frame, Rect, WindowInfo
from agent.sources import ScreenGrabber, select_screen_grabber, select_window_probe
from tests.desktop import SCREEN_HEIGHT, SCREEN_WIDTH, AppWindow, Desktop, wait_for
from tests.e2e.conftest import OTHERAPP_GEOMETRY, WORKAPP_GEOMETRY, Launch
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
        info = probe.describe(window_id)  # type: ignore[attr-defined]
    assert info is not None
    return info  # type: ignore[no-any-return]


def pixel(frame: Frame, x: int, y: int) -> bytes:
    """The RGB of screen point (x, y) inside a frame."""
    col, row = x - frame.rect.x, y - frame.rect.y
    offset = (row * frame.width + col) * 3
    return frame.rgb[offset : offset + 3]


def test_grab_takes_exactly_the_client_rectangle(
    desktop: Desktop, grabber: ScreenGrabber, workapp: AppWindow
) -> None:
    info = describe(workapp.window_id)
    frame = grabber.grab(info, t=12.5)
    assert frame is not None
    assert frame.rect == Rect(*WORKAPP_GEOMETRY)
    assert (frame.width, frame.height) == (WORKAPP_GEOMETRY[2], WORKAPP_GEOMETRY[3])
    assert len(frame.rgb) == frame.width * frame.height * 3
    assert frame.t == 12.5
    assert frame.window_id == workapp.window_id
    assert frame.scale == 1.0


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


def test_a_window_partly_off_screen_is_clipped_to_the_screen(
    desktop: Desktop, grabber: ScreenGrabber, launch: Launch
) -> None:
    x, y = SCREEN_WIDTH - 220, SCREEN_HEIGHT - 180
    other = launch(
        "tests.e2e.otherapp", "overt-otherapp", "--x", x, "--y", y, "--width", 600, "--height", 400
    )
    desktop.xdotool("windowactivate", "--sync", other.window_id)
    info = describe(other.window_id)
    assert info.rect.width == 600  # the window itself is larger than what is on screen
    frame = wait_for(
        lambda: (
            (f := grabber.grab(info, 0.0)) is not None and pixel(f, x + 5, y + 5) == MAGENTA and f
        ),
        what="the off-screen app painted",
    )
    assert isinstance(frame, Frame)
    assert frame.rect == Rect(
        info.rect.x, info.rect.y, SCREEN_WIDTH - info.rect.x, SCREEN_HEIGHT - info.rect.y
    )
    assert (frame.width, frame.height) == (frame.rect.width, frame.rect.height)
    assert pixel(frame, SCREEN_WIDTH - 1, SCREEN_HEIGHT - 1) == MAGENTA


def test_a_window_entirely_off_screen_grabs_nothing(
    desktop: Desktop, grabber: ScreenGrabber, workapp: AppWindow
) -> None:
    info = describe(workapp.window_id)
    gone = WindowInfo(info.window_id, info.app, info.title, Rect(SCREEN_WIDTH + 10, 0, 100, 100))
    assert grabber.grab(gone, 0.0) is None
    assert grabber.monitors() == [Rect(0, 0, SCREEN_WIDTH, SCREEN_HEIGHT)]
