"""Screenshots keep only the allowed window's own visible region.

Each case puts a window of a distinctive, solid colour where a naive grab of
the allowed window's rectangle would pick it up — a second window of the
same process (the work app's "My Bank", Chromium's second window), another
process's override-redirect popup (one even claiming the work app's PID and
class), a window beneath a shaded work app, a window behind the holes of a
shaped one, a window over a work app that is partly off the screen, an
ordinary program raised above it by the window manager, a transient dialog
of another process — then makes the agent take screenshots, reassembles
every frame it recorded and counts the pixels of that colour: there must be
none. As a control in the same run, the frames must show the work app's own
pixels (its white editor).

Frames and a screenshot of the desktop are saved under
``artifacts/filter-attacks/``; counts go to its ``counts.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from overt.wire.records import ClickRecord, ContextRecord, ScreenshotRecord
from tests.desktop import Desktop, require_program, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY, LaunchWorkapp, Program, XWindow
from tests.e2e.rig import (
    ATTACKS,
    DistinctPython,
    Rig,
    count_colour,
    exe_policy_document,
    frames,
    of,
    record_counts,
    save_frames,
    typed,
)

pytestmark = pytest.mark.desktop

WX, WY, WW, WH = WORKAPP_GEOMETRY
EDITOR_LEFT = (WX + 80, WY + 250)  # in the editor, left of the covers below
COVER = (350, 320, 300, 200)  # over the middle of the work app
GREEN = (0, 200, 0)
ORANGE = (255, 128, 0)
YELLOW = (255, 255, 0)
CYAN = (0, 200, 255)
WHITE = (255, 255, 255)
#: A work-app frame shows at least this much of its white editor and table.
WHITE_ENOUGH = 20_000


def capturing(rig: Rig) -> None:
    wait_for(lambda: rig.agent.status().hooks_installed, 10, what="the agent to install hooks")


def shots(desktop: Desktop, rig: Rig, points: list[tuple[int, int]], gap: float = 0.7) -> None:
    """Click each point, leaving the rate limit time to let a grab through."""
    for x, y in points:
        desktop.click(x, y)
        time.sleep(gap)


def leaked_pixels(
    case: str, rig: Rig, colour: tuple[int, int, int], **extra: Any
) -> tuple[int, int, list[Image.Image]]:
    """(pixels of ``colour`` in all frames, most white in one frame, frames); saves them."""
    records = rig.records()
    images = frames(records, rig.images())
    save_frames(images, ATTACKS, case)
    leaked = sum(count_colour(img, colour) for img in images)
    white = max((count_colour(img, WHITE, tol=2) for img in images), default=0)
    print(
        record_counts(
            f"pixels/{case}",
            {"frames": len(images), "leaked_pixels": leaked, "max_white": white, **extra},
        )
    )
    return leaked, white, images


def wait_colour_on_screen(
    desktop: Desktop, rect: tuple[int, int, int, int], colour: tuple[int, int, int], least: int
) -> None:
    wait_for(
        lambda: count_colour(desktop.grab(rect), colour) >= least,
        15,
        interval=0.1,
        what=f"{colour} on screen",
    )


# -- the same process ---------------------------------------------------------------


def test_a_title_skipped_window_of_the_same_process_over_the_work_app_stays_black(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
) -> None:
    x, y, w, h = COVER
    app = launch_workapp(
        "--second-window", "My Bank",
        "--second-geometry", f"{x},{y},{w},{h}",
        "--second-colour", "00c800",
        "--second-on-top",
    )  # fmt: skip
    bank = wait_for(lambda: desktop.find_titled("My Bank"), 10, what="the My Bank window")
    document = exe_policy_document(
        [workapp_python.path], title_rules=[{"pattern": "^My Bank$", "action": "skip"}]
    )
    rig = start_agent(document=document)
    capturing(rig)
    desktop.activate(app.window_id)
    wait_colour_on_screen(desktop, COVER, GREEN, w * h // 2)
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)])
    desktop.xdotool("type", "--delay", "20", "hello")
    time.sleep(0.8)
    # In My Bank itself: nothing at all.
    desktop.activate(bank)
    desktop.click(x + 100, y + 100)
    desktop.xdotool("type", "--delay", "20", "zqxj")
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT])
    desktop.screenshot(ATTACKS / "my-bank-desktop.png")

    leaked, white, _ = leaked_pixels("my-bank-over-the-work-app", rig, GREEN)
    records = rig.records()
    assert leaked == 0, f"{leaked} pixels of My Bank in the work app's frames"
    assert all(c.title != "My Bank" for c in of(records, ContextRecord))
    assert "zqxj" not in typed(records)
    assert all(WX + c.x < x or WX + c.x >= x + w for c in of(records, ClickRecord))
    # The control: the work app itself.
    assert white >= WHITE_ENOUGH
    assert "hello" in typed(records)


CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--password-store=basic",
]
ALLOWED_PAGE = """<!doctype html><title>Allowed Page</title>
<body style="margin:0;background:#ffffff;font:20px sans-serif">
<p>An allowed page</p><input id="q" autofocus></body>"""
SECRET_PAGE = """<!doctype html><title>Secret Page</title>
<body style="margin:0;background:#00c8ff"></body>"""


@pytest.fixture
def chromium_pages(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "allowed.html").write_text(ALLOWED_PAGE, encoding="utf-8")
    (pages / "secret.html").write_text(SECRET_PAGE, encoding="utf-8")
    # Chromium's profile path must stay short (its singleton socket lives there).
    with tempfile.TemporaryDirectory(prefix="overt-chromium-") as profile:
        yield pages / "allowed.html", pages / "secret.html", Path(profile)


def test_a_second_chromium_window_of_the_same_process_over_the_allowed_one_stays_black(
    desktop: Desktop,
    program: Program,
    start_agent: Callable[..., Rig],
    chromium_pages: tuple[Path, Path, Path],
) -> None:
    allowed, secret, profile = chromium_pages
    chromium = require_program("chromium")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    argv = [
        chromium, *flags,
        f"--window-position={WX},{WY}", f"--window-size={WW},{WH}",
        f"--app={allowed.as_uri()}",
    ]  # fmt: skip
    first = program(argv, "Chromium", title="Allowed Page")
    # A second window: the second command hands it to the first process and exits.
    desktop.spawn([chromium, *flags, f"--app={secret.as_uri()}"])
    second = wait_for(lambda: desktop.find_titled("Secret Page"), 20, what="the second window")
    assert desktop.owner_pid(second) == desktop.owner_pid(first.window_id)
    x, y, w, h = COVER
    desktop.xdotool("windowsize", second, w, h)
    desktop.xdotool("windowmove", second, x, y)
    exe = os.path.realpath(f"/proc/{desktop.owner_pid(first.window_id)}/exe")
    document = exe_policy_document(
        [exe], app_id="chromium", title_rules=[{"pattern": "^Secret Page", "action": "skip"}]
    )
    rig = start_agent(document=document)
    capturing(rig)
    desktop.activate(first.window_id)
    desktop.wmctrl("-i", "-r", second, "-b", "add,above")  # stays over the active one
    wait_colour_on_screen(desktop, COVER, CYAN, w * h // 2)
    wait_colour_on_screen(desktop, (WX, WY, 200, WH), WHITE, 200 * WH // 2)
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 100)])
    desktop.screenshot(ATTACKS / "chromium-desktop.png")

    leaked, white, _ = leaked_pixels("chromium-second-window", rig, CYAN)
    records = rig.records()
    assert leaked == 0, f"{leaked} pixels of the Secret Page window in the allowed one's frames"
    assert all(c.title != "Secret Page" for c in of(records, ContextRecord))
    assert white >= WHITE_ENOUGH, "no frame of the allowed Chromium window"


# -- other processes above, beneath, behind ------------------------------------------


@pytest.mark.parametrize("claims", [False, True], ids=["popup", "popup-claiming-the-workapp"])
def test_an_override_redirect_popup_over_the_work_app_stays_black(
    claims: bool,
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    app = launch_workapp()
    options: list[str | int] = ["--override-redirect"]
    if claims:
        options += ["--wm-class", "overt-workapp", "--net-wm-pid", app.proc.pid]
        options += ["--title", "Overt Work App"]
    popup = xwindow(COVER, ORANGE, *options)
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    popup.send("raise")
    wait_colour_on_screen(desktop, COVER, ORANGE, COVER[2] * COVER[3])
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)])
    desktop.screenshot(ATTACKS / f"popup-desktop-{'claiming' if claims else 'plain'}.png")

    case = "override-redirect-popup" + ("-claiming-the-workapp" if claims else "")
    leaked, white, _ = leaked_pixels(case, rig, ORANGE)
    assert leaked == 0, f"{leaked} pixels of the popup in the work app's frames"
    assert white >= WHITE_ENOUGH


def test_a_shaded_work_app_gives_no_pixels_of_the_window_beneath(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    xwindow(WORKAPP_GEOMETRY, YELLOW, "--title", "Beneath")
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*EDITOR_LEFT)
    rig.settle(quiet=0.3)
    shaded_from = rig.now_ms()
    desktop.wmctrl("-i", "-r", app.window_id, "-b", "add,shaded")
    wait_for(
        lambda: "_NET_WM_STATE_SHADED" in desktop.net_wm_state(app.window_id),
        5,
        what="openbox to shade the work app",
    )
    wait_colour_on_screen(desktop, (WX, WY + 100, WW, 300), YELLOW, WW * 300 // 2)
    # Openbox keeps the shaded work app active, with the input focus, and its
    # client window still viewable: typing into it asks for screenshots.
    assert desktop.active_window() == app.window_id
    assert desktop.input_focus() == app.window_id
    for word in ("abc", "def"):
        desktop.xdotool("type", "--delay", "20", word)
        time.sleep(0.9)
    desktop.screenshot(ATTACKS / "shaded-desktop.png")
    rig.records()
    shaded_until = rig.now_ms()
    desktop.wmctrl("-i", "-r", app.window_id, "-b", "remove,shaded")
    wait_for(
        lambda: "_NET_WM_STATE_SHADED" not in desktop.net_wm_state(app.window_id),
        5,
        what="openbox to unshade the work app",
    )
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)])

    records = rig.records()
    while_shaded = [s for s in of(records, ScreenshotRecord) if shaded_from <= s.t <= shaded_until]
    leaked, white, _ = leaked_pixels(
        "shaded-work-app", rig, YELLOW, frames_while_shaded=len(while_shaded)
    )
    assert leaked == 0, f"{leaked} pixels of the window beneath the shaded work app"
    assert white >= WHITE_ENOUGH, "no frame of the work app once unshaded"


def test_a_shaped_work_app_gives_no_pixels_of_the_window_behind_its_holes(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    hole = (250, 200, 300, 200)  # work-app-relative
    hx, hy, hw, hh = hole
    behind = xwindow((WX + hx - 50, WY + hy - 50, hw + 100, hh + 100), YELLOW, "--title", "Behind")
    app = launch_workapp("--mask-hole", ",".join(map(str, hole)))
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    wait_colour_on_screen(desktop, (WX + hx, WY + hy, hw, hh), YELLOW, hw * hh)
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)])
    desktop.xdotool("type", "--delay", "20", "hello")
    time.sleep(0.8)
    # A click in the hole lands on the window behind: not the work app's.
    hole_click = (WX + hx + hw // 2, WY + hy + hh // 2)
    desktop.click(*hole_click)
    wait_for(lambda: any(r.startswith("button") for r in behind.received()), 5, what="the click")
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT])
    desktop.screenshot(ATTACKS / "shaped-desktop.png")

    leaked, white, _ = leaked_pixels("shaped-work-app", rig, YELLOW)
    records = rig.records()
    clicks = [(WX + c.x, WY + c.y) for c in of(records, ClickRecord) if c.pressed]
    assert leaked == 0, f"{leaked} pixels of the window behind the work app's holes"
    assert hole_click not in clicks, "a click through the hole was taken for the work app's"
    assert white >= WHITE_ENOUGH
    assert "hello" in typed(records)


def test_a_work_app_partly_off_the_screen_keeps_only_its_visible_pixels(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    app = launch_workapp()
    left, top = -300, 600  # 300 px off the left edge, 120 px off the bottom
    desktop.xdotool("windowmove", app.window_id, left, top)
    wait_for(
        lambda: desktop.client_geometry(app.window_id)[:2] == (left, top),
        5,
        what="the work app to move partly off the screen",
    )
    popup = xwindow((100, 800, 200, 150), ORANGE, "--override-redirect")  # over its visible part
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    popup.send("raise")
    wait_colour_on_screen(desktop, (100, 800, 200, 150), ORANGE, 200 * 150)
    shots(desktop, rig, [(20, top + 250), (20, top + 300)])
    desktop.screenshot(ATTACKS / "off-screen-desktop.png")

    leaked, white, images = leaked_pixels("partly-off-screen", rig, ORANGE)
    assert leaked == 0, f"{leaked} pixels of the popup over the visible part"
    assert white >= 10_000, "no frame of the work app's visible part"
    for img in images:
        # Either just the visible part, or the whole window with the rest black.
        if img.size != (WW - 300, 1080 - top):
            assert img.size == (WW, WH), img.size
            off = img.crop((0, 0, 300, WH)).getextrema()
            below = img.crop((0, 1080 - top, WW, WH)).getextrema()
            assert all(hi == 0 for _, hi in off + below), "pixels from off the screen"


def test_an_ordinary_program_raised_above_the_work_app_by_the_wm_stays_black(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    program: Program,
) -> None:
    x, y, w, h = COVER
    clock = program(
        [require_program("xclock"), "-bg", "#ffff00", "-fg", "#ffff00", "-hd", "#ffff00",
         "-hl", "#ffff00", "-geometry", f"{w}x{h}+{x}+{y}"],
        "XClock",
    )  # fmt: skip
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT])
    # The WM raises xclock above the work app; the focus stays where it was.
    desktop.wmctrl("-i", "-r", clock.window_id, "-b", "add,above")
    wait_colour_on_screen(desktop, COVER, YELLOW, w * h // 2)
    assert desktop.active_window() == app.window_id
    desktop.xdotool("type", "--delay", "20", "hello")
    time.sleep(0.9)
    shots(desktop, rig, [EDITOR_LEFT])
    desktop.screenshot(ATTACKS / "xclock-desktop.png")

    leaked, white, _ = leaked_pixels("xclock-raised-by-the-wm", rig, YELLOW)
    assert leaked == 0, f"{leaked} pixels of xclock in the work app's frames"
    assert white >= WHITE_ENOUGH


def test_a_transient_dialog_of_another_process_over_the_work_app_gives_it_nothing(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT])
    # Another process's dialog, transient for the work app: the WM keeps it
    # above the work app and gives it the focus.
    dialog = xwindow(
        COVER, ORANGE, "--transient-for", app.window_id, "--type", "dialog", "--title", "Dialog"
    )
    desktop.activate(dialog.window_id)
    x, y, w, h = COVER
    desktop.click(x + 50, y + 50)
    desktop.xdotool("type", "--delay", "20", "zqxj")
    wait_for(lambda: len(dialog.received()) >= 5, 5, what="the dialog to get the input")
    # Back to the work app; the dialog stays above it.
    desktop.activate(app.window_id)
    wait_colour_on_screen(desktop, COVER, ORANGE, w * h // 2)
    desktop.xdotool("type", "--delay", "20", "hello")
    time.sleep(0.9)
    shots(desktop, rig, [EDITOR_LEFT])
    desktop.screenshot(ATTACKS / "transient-desktop.png")

    leaked, white, _ = leaked_pixels("transient-dialog-of-another-process", rig, ORANGE)
    records = rig.records()
    assert leaked == 0, f"{leaked} pixels of the dialog in the work app's frames"
    assert "zqxj" not in typed(records)
    assert all(
        not (x <= WX + c.x < x + w and y <= WY + c.y < y + h) for c in of(records, ClickRecord)
    )
    assert white >= WHITE_ENOUGH
    assert "hello" in typed(records)


def test_an_iconified_work_app_named_active_by_another_client_gives_no_frame(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
) -> None:
    xwindow(WORKAPP_GEOMETRY, YELLOW, "--title", "Beneath")
    forger = xwindow((1500, 900, 200, 100), ORANGE, "--title", "Forger")
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT])
    desktop.xdotool("windowminimize", "--sync", app.window_id)
    wait_for(lambda: not desktop.viewable(app.window_id), 5, what="the work app to be iconified")
    wait_colour_on_screen(desktop, (WX, WY + 100, WW, 300), YELLOW, WW * 300 // 2)
    iconified_from = rig.now_ms()
    # The root's _NET_ACTIVE_WINDOW now names the iconified work app, as any
    # client may write it; the screen there shows the window beneath.
    forger.send("focus")
    wait_for(lambda: desktop.active_window() == forger.window_id, 5, what="the WM to follow")
    forger.send(f"forge-active {app.window_id:#x}")
    for word in ("abc", "def"):
        desktop.xdotool("type", "--delay", "20", word)
        time.sleep(0.9)
    iconified_until = rig.now_ms()
    desktop.screenshot(ATTACKS / "iconified-desktop.png")
    desktop.activate(app.window_id)
    shots(desktop, rig, [EDITOR_LEFT, (EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)])

    records = rig.records()
    while_iconified = [
        s for s in of(records, ScreenshotRecord) if iconified_from <= s.t <= iconified_until
    ]
    leaked, white, _ = leaked_pixels(
        "iconified-work-app-named-active", rig, YELLOW, frames_while_iconified=len(while_iconified)
    )
    assert leaked == 0, f"{leaked} pixels of the window where the iconified work app was"
    assert while_iconified == [], "frames of a work app that is not on screen"
    assert white >= WHITE_ENOUGH, "no frame of the work app once restored"
