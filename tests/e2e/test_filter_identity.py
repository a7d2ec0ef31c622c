"""An app is who the X server and the kernel say it is, not what it claims.

The policy allows the work app by the real path of its executable only
(``AppMatch.exe_paths``: the work app runs under ``overt-workapp-python``,
a copy of the Python binary made for the test session). Impostors claim
everything a window can claim about itself — the work app's WM_CLASS, its
title, even its ``_NET_WM_PID`` — and sit on top of the work app: an
ordinary ``xterm -class overt-workapp`` and a python-xlib window. Nothing
typed or clicked into them, and none of their pixels, may be captured, while
the real work app in the same run still is. The same bytes at another path,
and a digest that does not match, are not the allowed program either.

Counts per case go to ``artifacts/filter-attacks/counts.json``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from overt.wire.records import ClickRecord, ContextRecord
from tests.desktop import AppWindow, Desktop, require_program, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY, LaunchWorkapp, Program, XWindow
from tests.e2e.rig import (
    ATTACKS,
    DistinctPython,
    Rig,
    agents,
    count_colour,
    exe_policy_document,
    frames,
    input_between,
    of,
    record_counts,
    save_frames,
    typed,
)

pytestmark = pytest.mark.desktop

WX, WY, WW, WH = WORKAPP_GEOMETRY
EDITOR_LEFT = (WX + 80, WY + 250)
COVER = (350, 320, 300, 200)
YELLOW = (255, 255, 0)
WHITE = (255, 255, 255)
SECRET = "zqxj"


def capturing(rig: Rig) -> None:
    wait_for(lambda: rig.agent.status().hooks_installed, 10, what="the agent to install hooks")


Impostor = tuple[int, Callable[[], str]]  # its window, and what it says it received


def _xterm(
    desktop: Desktop, program: Program, xwindow: XWindow, work: AppWindow, tmp: Path
) -> Impostor:
    log = tmp / "xterm.txt"
    x, y, _, _ = COVER
    impostor = program(
        [
            require_program("xterm"),
            "-class", "overt-workapp", "-name", "overt-workapp",
            "-title", "Overt Work App",
            "-bg", "#ffff00", "-fg", "#ffff00", "-cr", "#ffff00",
            "-geometry", f"36x11+{x}+{y}",
            "-e", "sh", "-c", f'exec cat > "{log}"',
        ],
        "overt-workapp",
    )  # fmt: skip
    return impostor.window_id, lambda: log.read_text(encoding="utf-8") if log.exists() else ""


def _xlib(
    desktop: Desktop, program: Program, xwindow: XWindow, work: AppWindow, tmp: Path
) -> Impostor:
    impostor = xwindow(
        COVER,
        YELLOW,
        "--wm-class", "overt-workapp",
        "--net-wm-pid", work.proc.pid,
        "--title", "Overt Work App",
    )  # fmt: skip
    lines = impostor.received

    def got() -> str:
        return "".join(line.split(" ", 2)[2] for line in lines() if line.startswith("key "))

    return impostor.window_id, got


IMPOSTORS = {"xterm-class-overt-workapp": _xterm, "xlib-claims-class-title-and-pid": _xlib}


@pytest.mark.parametrize("impostor_kind", list(IMPOSTORS))
def test_a_window_claiming_to_be_the_work_app_gets_nothing_captured(
    impostor_kind: str,
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    program: Program,
    xwindow: XWindow,
    start_agent: Callable[..., Rig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = launch_workapp()
    impostor, received = IMPOSTORS[impostor_kind](desktop, program, xwindow, work, tmp_path)
    rig = start_agent(document=exe_policy_document([workapp_python.path]))
    capturing(rig)
    desktop.activate(work.window_id)
    desktop.click(*EDITOR_LEFT)
    desktop.xdotool("type", "--delay", "20", "hello")
    rig.settle(quiet=0.3)

    start = rig.now_ms()
    desktop.activate(impostor)
    x, y, w, h = desktop.client_geometry(impostor)
    desktop.click(x + w // 2, y + h // 2)
    desktop.xdotool("type", "--delay", "20", SECRET)
    desktop.xdotool("key", "Return")
    wait_for(lambda: SECRET in received(), 5, what="the impostor to get the keys")
    rig.settle(quiet=0.3)
    end = rig.now_ms()

    # Back to the work app, with the impostor kept above part of it.
    desktop.activate(work.window_id)
    desktop.wmctrl("-i", "-r", impostor, "-b", "add,above")
    time.sleep(0.3)
    desktop.click(*EDITOR_LEFT)
    desktop.xdotool("type", "--delay", "20", " world")
    time.sleep(0.9)
    desktop.click(EDITOR_LEFT[0], EDITOR_LEFT[1] + 60)
    time.sleep(0.7)
    desktop.screenshot(ATTACKS / f"impostor-{impostor_kind}-desktop.png")
    records = rig.records()
    images = frames(records, rig.images())
    save_frames(images, ATTACKS, f"impostor-{impostor_kind}")

    during = input_between(records, start, end)
    contexts = of(records, ContextRecord)
    foreign = [c for c in contexts if (c.x, c.y, c.width, c.height) != WORKAPP_GEOMETRY]
    leaked_pixels = sum(count_colour(img, YELLOW) for img in images)
    clicks = [(WX + c.x, WY + c.y) for c in of(records, ClickRecord) if c.pressed]
    on_impostor = [p for p in clicks if x <= p[0] < x + w and y <= p[1] < y + h]
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                f"identity/{impostor_kind}",
                {
                    "records_while_in_impostor": len(during),
                    "contexts_of_impostor": len(foreign),
                    "clicks_on_impostor": len(on_impostor),
                    "leaked_pixels": leaked_pixels,
                },
            )
        )
    assert during == [], f"captured from the impostor: {during}"
    assert foreign == [], f"the impostor was taken for the work app: {foreign}"
    assert SECRET not in typed(records)
    assert on_impostor == []
    assert leaked_pixels == 0, f"{leaked_pixels} pixels of the impostor in the work app's frames"
    # The control: the real work app.
    assert "hello" in typed(records)
    assert "world" in typed(records)
    assert max(count_colour(img, WHITE, tol=2) for img in images) >= 20_000


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _typing_captured(
    desktop: Desktop,
    tmp: Path,
    document: dict[str, object],
    app: AppWindow,
    elsewhere: int,
    word: str,
) -> str:
    """Start an agent under ``document``; focus moves from ``elsewhere`` to
    ``app``, and ``word`` is typed there: what the agent captured."""
    with agents(desktop, tmp) as start:
        rig = start(document=document)
        capturing(rig)
        desktop.activate(elsewhere)
        desktop.activate(app.window_id)
        desktop.click(*EDITOR_LEFT)
        desktop.xdotool("type", "--delay", "20", word)
        return typed(rig.records())


def test_the_same_bytes_at_another_path_or_a_wrong_digest_are_not_the_allowed_program(
    desktop: Desktop,
    launch_workapp: LaunchWorkapp,
    workapp_python: DistinctPython,
    xwindow: XWindow,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = xwindow((1500, 900, 200, 100), YELLOW, "--title", "Elsewhere")
    work = launch_workapp()
    # The work app's own executable, byte for byte, at another path.
    elsewhere = tmp_path / "elsewhere" / workapp_python.path.name
    elsewhere.parent.mkdir()
    shutil.copy2(workapp_python.path, elsewhere)
    digest = _sha256(workapp_python.path)
    wrong = hashlib.sha256(b"not the work app").hexdigest()

    cases = {
        "other-path": exe_policy_document([elsewhere]),
        "wrong-digest": exe_policy_document([{"path": str(workapp_python.path), "sha256": wrong}]),
        "right-digest": exe_policy_document([{"path": str(workapp_python.path), "sha256": digest}]),
    }
    got = {
        name: _typing_captured(
            desktop, tmp_path / name, document, work, other.window_id, name.split("-")[0]
        )
        for name, document in cases.items()
    }
    with capsys.disabled():
        print(
            "\n"
            + record_counts(
                "identity/exe-path-and-digest",
                {name: len(text) for name, text in got.items()},
            )
        )
    assert got["other-path"] == "", "a policy naming another path allowed the work app"
    assert got["wrong-digest"] == "", "a policy pinning another digest allowed the work app"
    # The control: pinned by its real path and digest, it is captured.
    assert "right" in got["right-digest"]
