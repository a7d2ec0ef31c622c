"""The capture agent on a real X desktop: what it records, and what it must not.

Each test runs the whole agent (real pynput hooks on XTEST input, the
python-xlib window probe, mss grabs, the decision engine, the pipeline) against
real Qt windows on the suite's Xvfb + openbox, with input injected by xdotool.
The allowed app is the work app (WM_CLASS ``overt-workapp``); the other app
(``overt-otherapp``, solid magenta) is not on the allow-list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from agent.events import WindowInfo
from agent.pipeline.decision import Reason
from agent.sources._xorg import XorgWindowProbe
from overt.wire.frames import reassemble
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    MarkerKind,
    MarkerRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ShortcutRecord,
    TextSpanRecord,
)
from tests.desktop import AppWindow, Desktop, wait_for
from tests.e2e.conftest import OTHERAPP_GEOMETRY, WORKAPP_GEOMETRY, Launch
from tests.e2e.rig import Rig

pytestmark = pytest.mark.desktop

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "capture"
WX, WY, WW, WH = WORKAPP_GEOMETRY


def focus(desktop: Desktop, app: AppWindow) -> None:
    desktop.xdotool("windowactivate", "--sync", app.window_id)


def click_at(desktop: Desktop, x: int, y: int) -> None:
    # No --sync: it waits for a motion event, and there is none when the
    # pointer is already there. XTEST requests are handled in order anyway.
    desktop.xdotool("mousemove", x, y, "click", 1)


def capturing(rig: Rig) -> None:
    wait_for(lambda: rig.agent.status().hooks_installed, 10, what="the agent to install hooks")


def of(records: list[Record], kind: type) -> list[Any]:
    return [r for r in records if isinstance(r, kind)]


@pytest.fixture(autouse=True)
def _artifacts() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def test_clicks_and_keys_in_the_allowed_window_are_captured_window_relative(
    desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent()
    capturing(rig)
    assert rig.agent.status().reason is Reason.CAPTURING
    focus(desktop, workapp)
    # The editor sits below the drop-down; click into it, then type.
    click_at(desktop, WX + 400, WY + 250)
    desktop.xdotool("type", "--delay", "20", "hello world")
    records = rig.records()

    contexts = of(records, ContextRecord)
    assert contexts, "no context record for the work app"
    assert {c.app_id for c in contexts} == {"overt-workapp"}
    assert contexts[-1].title == "Overt Work App"
    assert (contexts[-1].x, contexts[-1].y, contexts[-1].width, contexts[-1].height) == (
        WX,
        WY,
        WW,
        WH,
    )
    presses = [c for c in of(records, ClickRecord) if c.pressed]
    assert [(c.button, c.x, c.y) for c in presses] == [("left", 400, 250)]
    assert [s.text for s in of(records, TextSpanRecord)] == ["hello world"]


def test_nothing_from_the_other_window_is_captured(
    desktop: Desktop,
    launch: Launch,
    workapp: AppWindow,
    start_agent: Callable[..., Rig],
) -> None:
    # The other app stays on top of the work app and overlaps it.
    ox, oy, ow, oh = OTHERAPP_GEOMETRY
    other = launch(
        "tests.e2e.otherapp",
        "overt-otherapp",
        "--x", ox, "--y", oy, "--width", ow, "--height", oh, "--on-top",
    )  # fmt: skip
    rig = start_agent()
    capturing(rig)
    focus(desktop, workapp)
    click_at(desktop, WX + 300, WY + 250)  # the work app's editor, not overlapped
    desktop.xdotool("type", "--delay", "20", "mine")
    time.sleep(0.6)  # let the screenshot after the click and typing pause happen
    # Now act in the other app: where it overlaps the work app, and on its own.
    click_at(desktop, ox + 50, oy + 50)
    desktop.xdotool("type", "--delay", "20", "theirs")
    click_at(desktop, ox + 450, oy + 350)
    desktop.xdotool("key", "ctrl+s")
    focus(desktop, other)
    desktop.xdotool("type", "--delay", "20", "secret")
    # Back in the work app, with the other app still on top of part of it.
    focus(desktop, workapp)
    click_at(desktop, WX + 200, WY + 300)
    time.sleep(0.6)
    records = rig.records()
    desktop.screenshot(ARTIFACTS / "other-window-on-top.png")

    assert {c.app_id for c in of(records, ContextRecord)} == {"overt-workapp"}
    assert all("Other" not in (c.title or "") for c in of(records, ContextRecord))
    texts = " ".join(s.text for s in of(records, TextSpanRecord))
    assert "mine" in texts
    assert "theirs" not in texts
    assert "secret" not in texts
    for click in of(records, ClickRecord):
        # Every captured click lies in the work app, outside the other window.
        sx, sy = WX + click.x, WY + click.y
        assert not (ox <= sx < ox + ow and oy <= sy < oy + oh), click
    assert of(records, ShortcutRecord) == []  # ctrl+s went to the other app

    shots = of(records, ScreenshotRecord)
    assert shots, "no screenshot of the work app"
    magenta = _magenta_pixels(shots, rig.images())
    assert magenta == 0, f"{magenta} pixels of the other window leaked into screenshots"


def _frames(shots: list[ScreenshotRecord], images: dict[str, bytes]) -> list[Image.Image]:
    frames = []
    for shot in shots:
        if shot.kind is ScreenshotKind.KEYFRAME:
            frames.append(reassemble(images[shot.image]))
        else:
            assert shot.base is not None
            deltas = [
                (s, images[s.image])
                for s in shots
                if s.kind is ScreenshotKind.DELTA and s.base == shot.base and s.t <= shot.t
            ]
            frames.append(reassemble(images[shot.base], deltas))
    return frames


def _magenta_pixels(shots: list[ScreenshotRecord], images: dict[str, bytes]) -> int:
    count = 0
    for i, frame in enumerate(_frames(shots, images)):
        frame.save(ARTIFACTS / f"workapp-frame-{i}.png")
        r, g, b = frame.split()
        mask = ImageChops.multiply(
            ImageChops.multiply(r.point(_above(180)), b.point(_above(180))),
            g.point(lambda v: 255 if v < 90 else 0),
        )
        count += mask.histogram()[255]
    return count


def _above(level: int) -> Callable[[int], int]:
    return lambda v: 255 if v > level else 0


def test_pause_removes_the_hooks_and_records_nothing_until_the_automatic_resume(
    desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent()
    capturing(rig)
    focus(desktop, workapp)
    click_at(desktop, WX + 400, WY + 250)
    desktop.xdotool("type", "--delay", "20", "before")
    rig.settle()

    paused = rig.agent.pause(30)
    assert paused.resumes_at is not None
    status = rig.agent.status()
    assert status.reason is Reason.PAUSED
    assert not status.hooks_installed
    assert rig.hooks.threads == [], "listener threads still alive while paused"
    seen = status.events_seen
    click_at(desktop, WX + 300, WY + 260)
    desktop.xdotool("type", "--delay", "20", "during")
    time.sleep(0.5)
    assert rig.agent.status().events_seen == seen, "events reached the agent while paused"

    # 30 minutes later the pause ends by itself and the hooks come back.
    rig.clock.offset += 30 * 60 + 1
    capturing(rig)
    assert rig.agent.status().reason is Reason.CAPTURING
    focus(desktop, workapp)
    click_at(desktop, WX + 400, WY + 250)
    desktop.xdotool("type", "--delay", "20", "after")
    records = rig.records()

    texts = [s.text for s in of(records, TextSpanRecord)]
    assert "during" not in " ".join(texts)
    assert "after" in " ".join(texts)
    # What was typed before the pause was still being buffered: pausing drops it.
    assert "before" not in " ".join(texts)
    kinds = [m.kind for m in of(records, MarkerRecord)]
    assert MarkerKind.PAUSE_START in kinds
    assert MarkerKind.PAUSE_END in kinds
    assert kinds.index(MarkerKind.PAUSE_START) < kinds.index(MarkerKind.PAUSE_END)


@pytest.mark.parametrize("mode", ["text", "shortcuts", "timing"])
def test_each_keystroke_mode_keeps_only_what_it_promises(
    mode: str, desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent(keystrokes=mode)
    capturing(rig)
    focus(desktop, workapp)
    click_at(desktop, WX + 400, WY + 250)
    desktop.xdotool("type", "--delay", "20", "hi")
    desktop.xdotool("key", "ctrl+a")
    records = rig.records()

    spans = [s.text for s in of(records, TextSpanRecord)]
    shortcuts = [s.key for s in of(records, ShortcutRecord)]
    timings = of(records, KeyTimingRecord)
    if mode == "text":
        assert spans == ["hi"]
        assert "ctrl+a" in shortcuts
        assert timings == []
    elif mode == "shortcuts":
        assert spans == []
        assert shortcuts == ["<letter>", "<letter>", "ctrl+a"]
        assert timings == []
    else:
        assert spans == []
        assert shortcuts == []
        # h, i, ctrl, a: each pressed and released; no identity kept.
        assert [t.pressed for t in timings].count(True) == 4
        assert [t.pressed for t in timings].count(False) == 4


def test_typed_card_email_and_token_arrive_redacted(
    desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent()
    capturing(rig)
    focus(desktop, workapp)
    click_at(desktop, WX + 400, WY + 250)
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    typed = f"card 4111 1111 1111 1111 mail jane.doe@exa|mple.com token {secret} ok"
    first, second = typed.split("|")
    desktop.xdotool("type", "--delay", "15", first)
    time.sleep(1.5)  # a pause inside the address: longer than a span's short pause
    desktop.xdotool("type", "--delay", "15", second)
    records = rig.records()

    text = " ".join(s.text for s in of(records, TextSpanRecord))
    assert "4111" not in text
    assert "jane.doe" not in text
    assert "ghp_" not in text
    assert "[CARD]" in text
    assert "[EMAIL]" in text
    assert "[SECRET]" in text
    assert text.startswith("card ")
    assert text.endswith(" ok")


def test_focus_switches_give_context_and_screenshots_and_an_unchanged_window_none(
    desktop: Desktop,
    workapp: AppWindow,
    otherapp: AppWindow,
    start_agent: Callable[..., Rig],
) -> None:
    rig = start_agent()
    capturing(rig)
    focus(desktop, otherapp)
    focus(desktop, workapp)
    time.sleep(0.6)
    # Clicks on a spot that does not change the window: screenshots are
    # requested, grabbed, found unchanged and skipped. (All in one batch: each
    # new batch starts with a keyframe of its own, so it reads on its own.)
    for _ in range(3):
        click_at(desktop, WX + WW - 8, WY + WH - 8)
        time.sleep(0.6)
    first = rig.records()
    contexts = of(first, ContextRecord)
    assert contexts
    assert contexts[-1].app_id == "overt-workapp"
    assert len(of(first, ClickRecord)) == 6  # the clicks themselves are captured
    shots = of(first, ScreenshotRecord)
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME]
    assert (shots[0].source_width, shots[0].source_height) == (WW, WH)
    frame = reassemble(rig.images()[shots[0].image])
    frame.save(ARTIFACTS / "focus-keyframe.png")
    assert frame.size == (shots[0].width, shots[0].height)

    # Another focus switch away and back gives a new context and a screenshot:
    # a keyframe, since records() closed the batch and each batch reads on its
    # own. Once more within that batch, the work app's chain goes on: a delta
    # on that keyframe (one tile when the window did not change meanwhile).
    for _ in range(2):
        focus(desktop, otherapp)
        focus(desktop, workapp)
        time.sleep(0.6)
    last = rig.records()[len(first) :]
    contexts = of(last, ContextRecord)
    assert len(contexts) >= 2
    assert {c.app_id for c in contexts} == {"overt-workapp"}
    shots = of(last, ScreenshotRecord)
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME, ScreenshotKind.DELTA]
    assert shots[1].base == shots[0].image
    images = rig.images()
    again = reassemble(images[shots[0].image], [(shots[1], images[shots[1].image])])
    assert again.size == (shots[0].width, shots[0].height)


class _BlindProbe(XorgWindowProbe):
    """A probe that cannot see windows under a point (the kind of bug the self-test catches)."""

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        return None


def test_self_test_keeps_capture_off_when_the_probe_cannot_see_the_canary(
    desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent(probe=_BlindProbe())
    status = rig.agent.status()
    assert status.reason is Reason.SELF_TEST_FAILED
    assert status.problem is not None
    assert "cannot see the canary" in status.problem
    assert not status.hooks_installed
    focus(desktop, workapp)
    desktop.xdotool("type", "--delay", "20", "nothing")
    assert rig.records() == []


def test_no_consent_means_no_hooks(
    desktop: Desktop, workapp: AppWindow, start_agent: Callable[..., Rig]
) -> None:
    rig = start_agent(consent=False)
    status = rig.agent.status()
    assert status.reason is Reason.NO_CONSENT
    assert not status.hooks_installed
    focus(desktop, workapp)
    desktop.xdotool("type", "--delay", "20", "nothing")
    assert rig.records() == []
