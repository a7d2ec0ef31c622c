"""Keys go where the X server delivers them: attacks on the key filter.

The allowed app is the work app, run as a distinct executable
(``overt-workapp-python``) and allowed by that path only (``exe_paths``).
Each test types a secret into something else while the work app looks
active — a keyboard grab (dmenu, a screen locker, a plain XGrabKeyboard), or
a window that got the input focus a moment ago by every way focus moves on
X11 — and then, as a control in the same run, types into the work app.

A key counts as leaked when the agent recorded it (as text or any key
record) although the work app never received it: the work app writes its
editor's text to a file, and the other windows log the keys they got, so
each test knows where every key really went. Counts per case go to
``artifacts/filter-attacks/counts.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from overt.wire.records import ClickRecord, KeyTimingRecord, ShortcutRecord, TextSpanRecord
from tests.desktop import AppWindow, Desktop, require_program, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY, LaunchWorkapp, XWindow
from tests.e2e.rig import (
    ATTACKS,
    DistinctPython,
    Rig,
    agents,
    exe_policy_document,
    input_between,
    of,
    record_counts,
    typed,
)
from tests.e2e.xwindows import XWindowProc, start_xwindow

pytestmark = pytest.mark.desktop

WX, WY, WW, WH = WORKAPP_GEOMETRY
EDITOR = (WX + 400, WY + 250)  # a point in the work app's editor
OTHER_GEOMETRY = (700, 400, 600, 400)  # overlaps the work app's lower right
OTHER_COLOUR = (255, 128, 0)
#: Typed into anything but the work app. No letter of it is in CONTROL.
SECRET = "zqxjvk"
#: Typed into the work app: must be captured.
CONTROL = "hello world"
REPS = 30
KEY_RECORDS = (TextSpanRecord, ShortcutRecord, KeyTimingRecord)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def capturing(rig: Rig) -> None:
    wait_for(lambda: rig.agent.status().hooks_installed, 10, what="the agent to install hooks")


def work_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def type_control(desktop: Desktop, rig: Rig, app: AppWindow) -> None:
    desktop.activate(app.window_id)
    rig.settle(quiet=0.3)
    desktop.click(*EDITOR)
    desktop.xdotool("type", "--delay", "20", CONTROL)


# -- keyboard grabs ---------------------------------------------------------------


@dataclass
class Grab:
    """A program holding the keyboard, and how to end it."""

    name: str
    end: Callable[[], None]
    #: What the grabbing program says it got, when it says (dmenu prints it).
    output: Callable[[], str] = lambda: ""


def _dmenu(desktop: Desktop, tmp: Path, _xwindow: XWindow) -> Grab:
    out = tmp / "dmenu.out"
    # exec: the recorded PID is dmenu's own, so teardown kills dmenu itself.
    proc = desktop.spawn(["sh", "-c", f'exec {require_program("dmenu")} > "$0"', str(out)])

    def end() -> None:
        wait_for(lambda: proc.poll() is not None, 5, what="dmenu to exit after Return")
        desktop.kill(proc)

    return Grab("dmenu", end, lambda: out.read_text(encoding="utf-8") if out.exists() else "")


def _i3lock(desktop: Desktop, _tmp: Path, _xwindow: XWindow) -> Grab:
    proc = desktop.spawn([require_program("i3lock"), "--nofork", "--color", "ff8000"])
    return Grab("i3lock", lambda: desktop.kill(proc))


def _xgrab(_desktop: Desktop, _tmp: Path, xwindow: XWindow) -> Grab:
    # A small window in a corner, never focused, that takes the keyboard.
    window = xwindow((1700, 950, 100, 60), OTHER_COLOUR, "--no-input")
    assert window.send("grab-keyboard") is True
    return Grab("XGrabKeyboard", lambda: window.send("ungrab-keyboard"), lambda: _keys(window))


def _popup_grab(_desktop: Desktop, _tmp: Path, xwindow: XWindow) -> Grab:
    # Another program's popup that grabs the keyboard as it opens: created,
    # mapped and grabbed in one burst, before the agent can watch the window.
    window = xwindow((1700, 950, 100, 60), OTHER_COLOUR, "--unmapped", "--no-input")
    assert window.send("popup-grab 1600 900 200 100") is True
    return Grab("popup-grab", lambda: window.send("ungrab-keyboard"), lambda: _keys(window))


def _keys(window: XWindowProc) -> str:
    return "".join(line.split(" ", 2)[2] for line in window.received() if line.startswith("key "))


GRABBERS = {
    "dmenu": _dmenu,
    "i3lock": _i3lock,
    "xlib-grab": _xgrab,
    "popup-grab": _popup_grab,
}


@pytest.mark.parametrize("grabber", list(GRABBERS))
def test_keys_typed_into_a_keyboard_grab_are_not_captured(
    grabber: str,
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    xwindow: XWindow,
    start_agent: Callable[..., Rig],
    tmp_path: Path,
) -> None:
    log = tmp_path / "workapp.txt"
    app = launch_workapp("--text-log", log)
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(app.window_id)
    desktop.click(*EDITOR)
    desktop.xdotool("type", "--delay", "20", "hello ")
    rig.settle(quiet=0.3)

    grab = GRABBERS[grabber](desktop, tmp_path, xwindow)
    wait_for(desktop.grabbed_elsewhere, 10, what=f"{grabber} to grab the keyboard")
    # The work app still looks active, and even has the input focus.
    assert desktop.active_window() == app.window_id
    start = rig.now_ms()
    desktop.xdotool("type", "--delay", "20", SECRET)
    desktop.xdotool("key", "Return")
    rig.settle(quiet=0.3)
    end = rig.now_ms()
    grab.end()
    wait_for(lambda: not desktop.grabbed_elsewhere(), 10, what=f"{grabber} to let go")
    desktop.screenshot(ATTACKS / f"keyboard-grab-{grabber}.png")

    desktop.activate(app.window_id)
    rig.settle(quiet=0.3)
    desktop.click(*EDITOR)
    desktop.xdotool("type", "--delay", "20", "world")
    records = rig.records()

    received = work_text(log)
    assert not set(SECRET) & set(received), f"the work app got keys of the grab: {received!r}"
    if grabber != "i3lock":  # i3lock says nothing of what it got
        assert grab.output().strip() == SECRET, f"{grabber} did not get the keys"
    # Keys and clicks; a hover that began on the work app before the grab is
    # the pointer's business (test_filter_pointer looks at it under a locker).
    during = of(input_between(records, start, end), (*KEY_RECORDS, ClickRecord))
    leaked_chars = sum(typed(records).count(c) for c in SECRET)
    line = record_counts(
        f"keyboard-grab/{grabber}",
        {"keys_sent": len(SECRET) + 1, "records_during_grab": len(during), "chars": leaked_chars},
    )
    print(line)
    assert during == [], f"captured while {grabber} held the keyboard: {during}"
    assert leaked_chars == 0, typed(records)
    # The control: the work app itself is still captured, before and after.
    assert "hello" in typed(records)
    assert "world" in typed(records)


# -- focus moving away, by every method ---------------------------------------------

TK_SCRIPT = """\
wm withdraw .
toplevel .p -class OvertPrivateTk -background {colour}
wm title .p "Private Tk"
wm geometry .p {w}x{h}+{x}+{y}
text .p.t -background {colour} -foreground {colour} -insertwidth 0 \\
    -highlightthickness 0 -borderwidth 0
pack .p.t -fill both -expand 1
focus .p.t
set log [open [lindex $argv 0] a]
fconfigure $log -buffering line
bind .p.t <KeyPress> {{puts $log "key %K %A"}}
bind .p.t <ButtonPress> {{puts $log "button %b"}}
"""
TK_CLASS = "OvertPrivateTk"


@dataclass
class FocusScene:
    """The programs shared by every focus-change case (started once per module)."""

    desktop: Desktop
    work: AppWindow
    work_log: Path
    tk: AppWindow
    tk_log: Path
    popup: XWindowProc  # maps itself and takes the focus, on command
    forger: XWindowProc  # a mapped window that forges _NET_ACTIVE_WINDOW
    tmp: Path

    def received_by_other(self) -> str:
        tk = "".join(
            line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
            for line in _lines(self.tk_log)
            if line.startswith("key ")
        )
        return tk + _keys(self.popup) + _keys(self.forger)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


@pytest.fixture(scope="module")
def focus_scene(
    desktop: Desktop, workapp_python: DistinctPython, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FocusScene]:
    tmp = tmp_path_factory.mktemp("focus-scene")
    started = []
    try:
        work_log = tmp / "workapp.txt"
        argv = workapp_python.argv(
            "tests.e2e.workapp",
            "--title", "Overt Work App",
            "--x", WX, "--y", WY, "--width", WW, "--height", WH,
            "--text-log", work_log,
        )  # fmt: skip
        work = desktop.launch_program(argv, "overt-workapp", env=workapp_python.env)
        started.append(work.proc)
        x, y, w, h = OTHER_GEOMETRY
        script = tmp / "private.tcl"
        script.write_text(
            TK_SCRIPT.format(x=x, y=y, w=w, h=h, colour=hex_colour(OTHER_COLOUR)),
            encoding="utf-8",
        )
        tk_log = tmp / "tk.log"
        tk = desktop.launch_program(
            [require_program("wish"), str(script), str(tk_log)],
            TK_CLASS,
        )
        started.append(tk.proc)
        popup = start_xwindow(
            desktop, tmp, (1000, 150, 400, 200), OTHER_COLOUR, "--unmapped", "--title", "Popup"
        )
        started.append(popup.proc)
        forger = start_xwindow(
            desktop, tmp, (1000, 800, 300, 150), OTHER_COLOUR, "--title", "Forger"
        )
        started.append(forger.proc)
        yield FocusScene(desktop, work, work_log, tk, tk_log, popup, forger, tmp)
    finally:
        for proc in reversed(started):
            desktop.kill(proc)


def _via_windowfocus(scene: FocusScene, key: str) -> None:
    # XSetInputFocus straight to the other window, then the key at once.
    scene.desktop.xdotool("windowfocus", scene.tk.window_id, "key", key)


def _via_windowactivate(scene: FocusScene, key: str) -> None:
    # A _NET_ACTIVE_WINDOW request to the WM; the key does not wait for it.
    scene.desktop.xdotool("windowactivate", scene.tk.window_id, "key", key)


def _via_click(scene: FocusScene, key: str) -> None:
    x, y, w, h = OTHER_GEOMETRY
    scene.desktop.xdotool("mousemove", x + w - 100, y + h - 100, "click", 1, "key", key)


def _via_alt_tab(scene: FocusScene, key: str) -> None:
    scene.desktop.xdotool("key", "alt+Tab", "key", key)


def _via_map_with_focus(scene: FocusScene, key: str) -> None:
    # The window maps itself, takes the focus, and the key comes right after.
    assert scene.popup.send(f"map-focus-key {key}") is True
    scene.popup.send("unmap")


def _via_forged_active_window(scene: FocusScene, key: str) -> None:
    # The forger takes the focus, then writes the work app into the root's
    # _NET_ACTIVE_WINDOW: the property says "work app", the server says "forger".
    desktop, forger = scene.desktop, scene.forger
    forger.send("focus")
    wait_for(lambda: desktop.active_window() == forger.window_id, 5, what="the WM to follow")
    forger.send(f"forge-active {scene.work.window_id:#x}")
    wait_for(lambda: desktop.active_window() == scene.work.window_id, 5, what="the forgery")
    assert desktop.input_focus() == forger.window_id
    desktop.xdotool("key", key)
    time.sleep(0.1)  # the forgery stands while the agent looks


def _via_xmessage_popping_up(scene: FocusScene, key: str) -> None:
    # An ordinary program's new window: openbox gives it the focus as it maps.
    desktop = scene.desktop
    popup = desktop.launch_program(
        [require_program("xmessage"), "-geometry", "+1000+150", "Private message"], "Xmessage"
    )
    desktop.xdotool("key", key)
    desktop.kill(popup.proc)


METHODS: dict[str, Callable[[FocusScene, str], None]] = {
    "xdotool-windowfocus": _via_windowfocus,
    "xdotool-windowactivate": _via_windowactivate,
    "click-on-other": _via_click,
    "openbox-alt-tab": _via_alt_tab,
    "maps-itself-with-focus": _via_map_with_focus,
    "forged-net-active-window": _via_forged_active_window,
    "xmessage-pops-up": _via_xmessage_popping_up,
}
#: Where the other window logs nothing, a key the work app did not get counts
#: as received by the other window.
SILENT = {"xmessage-pops-up"}


@pytest.mark.parametrize("method", list(METHODS))
def test_keys_right_after_focus_moves_to_another_window_are_not_captured(
    method: str,
    focus_scene: FocusScene,
    desktop: Desktop,
    workapp_python: DistinctPython,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = focus_scene
    key = "z"
    work_before = work_text(scene.work_log).count(key)
    other_before = scene.received_by_other().count(key)
    with agents(desktop, tmp_path) as start:
        rig = start(document=exe_policy_document([workapp_python.path]))
        capturing(rig)
        # For alt+tab, the other window must be the one focused before the work app.
        desktop.activate(scene.tk.window_id)
        desktop.activate(scene.work.window_id)
        rig.settle(quiet=0.3)
        start_ms = rig.now_ms()
        for _ in range(REPS):
            desktop.activate(scene.work.window_id)
            METHODS[method](scene, key)
        rig.settle(quiet=0.3)
        end_ms = rig.now_ms()
        type_control(desktop, rig, scene.work)
        records = rig.records()

    received_work = work_text(scene.work_log).count(key) - work_before
    received_other = scene.received_by_other().count(key) - other_before
    if method in SILENT:
        received_other = REPS - received_work
    captured = typed(records).count(key)
    leaked = max(0, captured - received_work)
    clicks = [c for c in input_between(records, start_ms, end_ms) if isinstance(c, ClickRecord)]
    counts = {
        "repetitions": REPS,
        "received_by_other": received_other,
        "received_by_workapp": received_work,
        "captured": captured,
        "leaked": leaked,
        "clicks_on_other_captured": len(clicks),
    }
    with capsys.disabled():
        print("\n" + record_counts(f"focus-change/{method}", counts))
    # The attack really happened (the rest of the keys reached the work app
    # before the window manager moved the focus, and may be captured).
    assert received_other > 0, counts
    assert leaked == 0, counts
    assert clicks == [], counts
    assert CONTROL in typed(records), "the control text typed into the work app is missing"
    assert of(records, ClickRecord), "the control click into the work app is missing"


def test_synthetic_key_events_sent_to_the_work_app_are_not_recorded_as_typing(
    focus_scene: FocusScene,
    desktop: Desktop,
    workapp_python: DistinctPython,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Another client sends key events (XSendEvent) straight to the work app's
    # window while the user works in another window: nobody typed them.
    scene = focus_scene
    with agents(desktop, tmp_path) as start:
        rig = start(document=exe_policy_document([workapp_python.path]))
        capturing(rig)
        desktop.activate(scene.tk.window_id)
        start_ms = rig.now_ms()
        desktop.xdotool("type", "--window", scene.work.window_id, "--delay", "20", SECRET)
        desktop.xdotool("key", "--window", scene.work.window_id, "ctrl+a", "Return")
        rig.settle(quiet=0.3)
        end_ms = rig.now_ms()
        type_control(desktop, rig, scene.work)
        records = rig.records()

    during = input_between(records, start_ms, end_ms)
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "keys/synthetic-events-to-the-work-app",
                {"keys_sent": len(SECRET) + 2, "records": len(during)},
            )
        )
    assert during == []
    assert not set(SECRET) & set(typed(records))
    assert CONTROL in typed(records)
