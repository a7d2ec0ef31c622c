"""Clicks, scrolls and pointer movement go where the X server puts them.

The work app (a distinct executable, allowed by its path only) sits under
windows of other processes that the window manager does not manage or that
came up after the agent last looked: override-redirect popups, a
notification, a window the WM raised without moving the focus, a pointer
grab. Whatever lands on those must not be recorded — not a click, not a
scroll, not a pointer sample — while the work app's own clicks and hovers
in the same run still are. And nothing recorded may speak about a time when
capture was off (consent withdrawn, a pause).

Coordinates in records are window-relative; the work app's window is at
``WORKAPP_GEOMETRY``, so a record's screen point is that plus its x, y.
Counts per case go to ``artifacts/filter-attacks/counts.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from overt.wire.records import (
    ClickRecord,
    MarkerRecord,
    MousePathRecord,
    PathKind,
    Record,
    ScrollRecord,
    ShortcutRecord,
)
from tests.desktop import Desktop, require_program, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY, LaunchWorkapp, XWindow
from tests.e2e.rig import (
    DistinctPython,
    Rig,
    count_colour,
    exe_policy_document,
    input_between,
    of,
    record_counts,
    span_of,
)

pytestmark = pytest.mark.desktop

WX, WY, WW, WH = WORKAPP_GEOMETRY
POPUP = (350, 320, 300, 200)  # over the work app's editor, in screen coordinates
POPUP_COLOUR = (255, 128, 0)
CONTROL_POINT = (WX + 100, WY + 250)  # the work app's editor, left of the popup
REPS = 30


def capturing(rig: Rig) -> None:
    wait_for(lambda: rig.agent.status().hooks_installed, 10, what="the agent to install hooks")


def inside(rect: tuple[int, int, int, int], x: int, y: int) -> bool:
    rx, ry, rw, rh = rect
    return rx <= x < rx + rw and ry <= y < ry + rh


def on_screen(x: int, y: int) -> tuple[int, int]:
    """A work-app-relative record point in screen coordinates."""
    return WX + x, WY + y


def pointer_points(records: list[Record]) -> list[tuple[int, int]]:
    """Every point a record puts the pointer at, on screen."""
    points = []
    for rec in records:
        if isinstance(rec, MousePathRecord):
            points.extend(on_screen(x, y) for _, x, y in rec.points())
        elif isinstance(rec, ClickRecord | ScrollRecord):
            points.append(on_screen(rec.x, rec.y))
    return points


def buttons(window_log: list[str]) -> int:
    return sum(1 for line in window_log if line.startswith("button "))


def test_clicks_and_scrolls_on_another_processs_popup_over_the_work_app_are_not_captured(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = launch_workapp()
    popup = xwindow(POPUP, POPUP_COLOUR, "--override-redirect", "--title", "Popup")
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rig.settle(quiet=0.3)
    start = rig.now_ms()
    px, py, _, _ = POPUP
    for i in range(5):
        desktop.click(px + 40 + 40 * i, py + 50)
        desktop.click(px + 40 + 40 * i, py + 120, button=4)  # scroll up
        desktop.click(px + 40 + 40 * i, py + 150, button=5)  # scroll down
    rig.settle(quiet=0.3)
    end = rig.now_ms()
    desktop.click(CONTROL_POINT[0], CONTROL_POINT[1] + 40)
    records = rig.records()

    got = buttons(popup.received())
    during = input_between(records, start, end)
    on_popup = [p for p in pointer_points(records) if inside(POPUP, *p)]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "pointer/click-and-scroll-on-override-redirect-popup",
                {
                    "presses_sent": 15,
                    "received_by_popup": got,
                    "records_during": len(during),
                    "points_on_popup": len(on_popup),
                },
            )
        )
    assert got == 15, "the popup did not get the clicks and scrolls"
    assert of(during, ClickRecord | ScrollRecord) == [], during
    assert on_popup == []
    # The control: both clicks on the work app itself, where they were.
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses == [CONTROL_POINT, (CONTROL_POINT[0], CONTROL_POINT[1] + 40)]


def test_a_popup_appearing_just_before_a_click_takes_the_click(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = launch_workapp()
    popup = xwindow(POPUP, POPUP_COLOUR, "--override-redirect", "--unmapped")
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rig.settle(quiet=0.3)
    px, py, _, _ = POPUP
    target = (px + 150, py + 100)
    desktop.xdotool("mousemove", *target)  # the pointer waits over the work app
    rig.settle(quiet=0.2)
    start = rig.now_ms()
    for _ in range(REPS):
        assert popup.send("map") is True
        desktop.xdotool("click", 1)  # at once, where the pointer already is
        rig.settle(quiet=0.1)
        popup.send("unmap")
    end = rig.now_ms()
    desktop.click(*CONTROL_POINT)
    records = rig.records()

    got = buttons(popup.received())
    clicks = of(input_between(records, start, end), ClickRecord)
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "pointer/popup-appears-just-before-a-click",
                {"repetitions": REPS, "received_by_popup": got, "clicks_captured": len(clicks)},
            )
        )
    assert got == REPS, "the popup did not get every click"
    assert clicks == [], f"{len(clicks)} of {REPS} clicks on the popup were captured"
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses == [CONTROL_POINT, CONTROL_POINT]


@pytest.mark.parametrize("kind", ["notification", "override-redirect", "raised-by-the-wm"])
def test_no_pointer_samples_over_a_window_that_came_up_after_the_last_click(
    kind: str,
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cover = POPUP
    if kind == "raised-by-the-wm":
        # Already there, below the work app, before anything happens.
        other = xwindow(cover, POPUP_COLOUR, "--title", "Below", "--no-input")
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)  # the agent looks at what covers the work app now
    rig.settle(quiet=0.3)

    if kind == "notification":
        other = xwindow(cover, POPUP_COLOUR, "--type", "notification", "--no-input", "--above")
    elif kind == "override-redirect":
        other = xwindow(cover, POPUP_COLOUR, "--override-redirect")
    else:
        desktop.wmctrl("-i", "-r", other.window_id, "-b", "add,above")
        wait_for(
            lambda: "_NET_WM_STATE_ABOVE" in desktop.net_wm_state(other.window_id),
            5,
            what="the WM to raise the window",
        )
    assert desktop.active_window() == app.window_id  # no focus change
    cx, cy, _, _ = cover
    # In from the left, about, rest, and back out to the left: a straight line
    # between the points outside never crosses the cover.
    for x in range(cx - 30, cx + 120, 10):
        desktop.xdotool("mousemove", x, cy + 100)
    time.sleep(0.6)  # a hover, over the cover
    for y in range(cy + 100, cy + 160, 10):
        desktop.xdotool("mousemove", cx + 120, y)
    time.sleep(0.6)
    for x in range(cx + 120, cx - 60, -10):
        desktop.xdotool("mousemove", x, cy + 160)
    end = rig.now_ms()
    time.sleep(0.6)  # a hover on the work app itself
    desktop.xdotool("mousemove", cx - 80, cy + 160)
    desktop.xdotool("click", 1)
    records = rig.records()

    points = pointer_points(records)
    over = [p for p in points if inside(cover, *p)]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                f"pointer/samples-over-{kind}",
                {
                    "moves_over_cover": 15 + 6 + 12,
                    "samples_captured_over_cover": len(over),
                    "samples_captured_in_total": len(points),
                },
            )
        )
    assert over == [], f"{len(over)} pointer samples over the {kind} window were captured"
    # The control: the pointer's own path on the work app, and the click.
    paths = of(input_between(records, end, rig.now_ms()), MousePathRecord)
    assert paths, "no pointer path on the work app itself"
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses[-1] == (cx - 80, cy + 160)


def test_a_click_while_another_client_grabs_the_pointer_is_not_captured(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    xwindow: XWindow,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = launch_workapp()
    grabber = xwindow((1700, 950, 100, 60), POPUP_COLOUR, "--no-input")
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rig.settle(quiet=0.3)
    assert grabber.send("grab-pointer") is True
    start = rig.now_ms()
    for i in range(5):
        desktop.click(WX + 300 + 30 * i, WY + 300)  # on the work app, but grabbed
    rig.settle(quiet=0.3)
    end = rig.now_ms()
    grabber.send("ungrab-pointer")
    desktop.click(*CONTROL_POINT)
    records = rig.records()

    got = buttons(grabber.received())
    clicks = of(input_between(records, start, end), ClickRecord)
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "pointer/click-under-another-clients-pointer-grab",
                {"clicks_sent": 5, "received_by_grabber": got, "clicks_captured": len(clicks)},
            )
        )
    assert got == 5, "the grabbing client did not get the clicks"
    assert clicks == []
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses == [CONTROL_POINT, CONTROL_POINT]


def test_a_click_on_the_work_apps_title_bar_is_not_a_click_in_the_app(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The window manager's frame around the work app is another client's window.
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rig.settle(quiet=0.3)
    start = rig.now_ms()
    for x in (WX + 200, WX + 300, WX + 400):
        desktop.click(x, WY - 8)  # the title bar
    desktop.click(WX - 1 if WX > 0 else WX + WW, WY + 300)  # the frame's edge
    rig.settle(quiet=0.3)
    end = rig.now_ms()
    desktop.click(*CONTROL_POINT)
    records = rig.records()

    clicks = of(input_between(records, start, end), ClickRecord)
    outside = [c for c in of(records, ClickRecord) if not (0 <= c.x < WW and 0 <= c.y < WH)]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "pointer/click-on-the-wm-frame",
                {"clicks_sent": 4, "clicks_captured": len(clicks), "outside": len(outside)},
            )
        )
    assert clicks == [], clicks
    assert outside == []
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses == [CONTROL_POINT, CONTROL_POINT]


def test_a_hover_does_not_go_on_under_a_screen_locker(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The pointer rests on the work app; i3lock covers the whole screen and
    # grabs the pointer and keyboard; the pointer does not move; unlocked, it
    # moves on. No record may put the pointer on the work app while it was
    # covered.
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rest = (WX + 300, WY + 300)
    desktop.xdotool("mousemove", *rest)
    time.sleep(0.6)
    colour = "".join(f"{c:02x}" for c in POPUP_COLOUR)
    locker = desktop.spawn([require_program("i3lock"), "--nofork", "--color", colour])
    wait_for(desktop.grabbed_elsewhere, 10, what="i3lock to grab the keyboard")
    wait_for(
        lambda: count_colour(desktop.grab((WX, WY, WW, WH)), POPUP_COLOUR) == WW * WH,
        10,
        what="i3lock to cover the work app",
    )
    locked_from = rig.now_ms()
    time.sleep(1.0)
    locked_until = rig.now_ms()
    desktop.kill(locker)
    wait_for(lambda: not desktop.grabbed_elsewhere(), 10, what="i3lock to let go")
    time.sleep(0.5)
    desktop.xdotool("mousemove", rest[0] + 40, rest[1])
    time.sleep(0.6)
    desktop.click(rest[0] + 40, rest[1])
    records = rig.records()

    under = of(input_between(records, locked_from, locked_until), MousePathRecord)
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "pointer/hover-under-a-screen-locker",
                {"locked_ms": locked_until - locked_from, "paths_spanning_lock": len(under)},
            )
        )
    assert under == [], f"pointer records speak about the time the locker covered all: {under}"
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses[-1] == (rest[0] + 40, rest[1])


def test_the_work_apps_own_drop_down_is_still_captured(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The control for the grab rules above: a press that opens the work app's
    # own drop-down makes the work app itself (not another client) grab the
    # pointer and keyboard; the press, and the keys that choose an item, are
    # the work app's input.
    app = launch_workapp()
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rig.settle(quiet=0.3)
    combo = (WX + 400, WY + 40)  # the drop-down above the editor
    desktop.click(*combo)
    wait_for(lambda: desktop.grabbed_elsewhere(), 5, what="the drop-down to open")
    desktop.xdotool("key", "Down", "Return")
    wait_for(lambda: not desktop.grabbed_elsewhere(), 5, what="the drop-down to close")
    records = rig.records()

    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    keys = [k.key for k in of(records, ShortcutRecord)]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "control/work-apps-own-drop-down",
                {"opening_click_captured": combo in presses, "keys_captured": len(keys)},
            )
        )
    assert presses == [CONTROL_POINT, combo], "the click that opened the drop-down is missing"
    assert keys[-2:] == ["down", "enter"], keys


# -- nothing outlives capture ----------------------------------------------------------


def _consent_off(rig: Rig, _exe: Path) -> Callable[[], None]:
    rig.agent.set_consent(False)
    return lambda: rig.agent.set_consent(True)


def _pause(rig: Rig, _exe: Path) -> Callable[[], None]:
    rig.agent.pause(30)
    return rig.agent.resume


def _policy_expires(rig: Rig, exe: Path) -> Callable[[], None]:
    # The policy in force runs out (the clock moves past its expiry)...
    rig.clock.offset += EXPIRES_IN_S + 1
    wait_for(lambda: not rig.agent.status().hooks_installed, 5, what="capture to stop")

    def renewed() -> None:
        # ...and device management drops a renewed one in place.
        document = exe_policy_document([exe])
        document["version"] = 2
        rig.replace_policy(document)
        rig.clock.offset += 6  # the agent looks at the policy file every 5 s

    return renewed


EXPIRES_IN_S = 60
OFF = {"consent-withdrawn": _consent_off, "pause": _pause, "policy-expired": _policy_expires}


@pytest.mark.parametrize("off", list(OFF))
def test_no_record_spans_a_time_when_capture_was_off(
    off: str,
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    start_agent: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = launch_workapp()
    document = exe_policy_document([workapp_python.path])
    if off == "policy-expired":
        expires = datetime.now(UTC) + timedelta(seconds=EXPIRES_IN_S)
        document["expires"] = expires.replace(microsecond=0).isoformat()
    rig = start_agent(document=document)
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*CONTROL_POINT)
    rest = (WX + 300, WY + 300)
    desktop.xdotool("mousemove", *rest)
    time.sleep(0.6)  # the pointer rests in the work app: a hover in progress

    back = OFF[off](rig, workapp_python.path)
    off_from = rig.now_ms()  # capture is off from here at the latest...
    assert not rig.agent.status().hooks_installed
    time.sleep(1.5)  # the pointer does not move while capture is off
    off_until = rig.now_ms()  # ...until here at the earliest
    back()
    capturing(rig)
    time.sleep(0.6)
    desktop.xdotool("mousemove", rest[0] + 40, rest[1])  # the rest ends now
    time.sleep(0.6)
    desktop.click(rest[0] + 40, rest[1])
    records = rig.records()

    spanning = [
        r
        for r in records
        if not isinstance(r, MarkerRecord)
        and span_of(r)[0] < off_until
        and span_of(r)[1] > off_from
    ]
    hovers = [r for r in of(records, MousePathRecord) if r.kind is PathKind.HOVER]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                f"off-period/{off}",
                {"off_ms": off_until - off_from, "records_spanning_off": len(spanning)},
            )
        )
    assert spanning == [], f"records speak about the time capture was off: {spanning}"
    # The control: capture came back, with the click and a hover after it.
    presses = [on_screen(c.x, c.y) for c in of(records, ClickRecord) if c.pressed]
    assert presses[-1] == (rest[0] + 40, rest[1])
    assert any(span_of(h)[0] >= off_until for h in hovers), hovers
