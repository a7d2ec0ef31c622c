"""The tray controller with its real menu and icon, offscreen, over a fake agent."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QWidgetAction
from pytestqt.qtbot import QtBot

from agent.control import ControlError
from tests.ui.fake_agent import MINUTE_MS, sample_batches
from tests.ui.qt_support import AgentStack, agent_stack, save_screenshot
from ui.calls import InlineRunner
from ui.dialogs import ConsentDialog
from ui.launcher import AgentCommand, AgentLauncher
from ui.presentation import IconKind
from ui.tray import TrayConfig, TrayController, with_mnemonic


def make_tray(qtbot: QtBot, stack: AgentStack, **kw: Any) -> TrayController:
    controller = TrayController(stack.api, InlineRunner(), TrayConfig(**kw), tz=UTC)
    controller.refresh()
    return controller


@pytest.fixture
def stack() -> AgentStack:
    s = agent_stack()
    s.agent.batches = sample_batches(s.clock.now_ms)
    return s


def icon_of(controller: TrayController) -> IconKind:
    # A function call, so that the type checker does not pin the icon down
    # between two clicks.
    return controller.view.icon


def labels(controller: TrayController) -> list[str]:
    return [a.text().replace("&", "") for a in controller.menu.actions() if not a.isSeparator()]


def test_the_icon_tooltip_and_menu_show_the_agents_state(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    assert icon_of(tray) is IconKind.CAPTURING
    assert tray.tray.toolTip().startswith("Overt — Capturing in allow-listed apps")
    assert labels(tray)[0] == "Capturing in allow-listed apps"
    headline = tray.action("status")
    assert isinstance(headline, QWidgetAction)  # a bold label, not a greyed-out entry
    assert headline.text() == "Capturing in allow-listed apps"
    assert tray.action("pause:30").isEnabled()
    assert not tray.action("resume").isEnabled()
    assert not tray.tray.icon().isNull()


def test_pause_from_the_menu_pauses_the_agent_and_counts_down(
    qtbot: QtBot, stack: AgentStack
) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("pause:30").trigger()
    assert stack.agent.calls[-1] == ("pause", (30,))
    assert stack.agent.paused
    assert icon_of(tray) is IconKind.PAUSED
    assert tray.action("status").text() == "Paused — resumes in 30 min (at 12:30)"
    assert not tray.action("pause:15").isEnabled()
    assert tray.action("resume").isEnabled()
    stack.clock.advance(18 * MINUTE_MS)
    tray.refresh()
    assert tray.action("status").text() == "Paused — resumes in 12 min (at 12:30)"
    assert "resumes in 12 min" in tray.tray.toolTip()


def test_a_shorter_pause_is_sent_as_chosen(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("pause:5").trigger()
    assert stack.agent.calls[-1] == ("pause", (5,))
    assert "resumes in 5 min" in tray.view.headline


def test_resume_now_resumes_the_agent(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("pause:30").trigger()
    tray.action("resume").trigger()
    assert not stack.agent.paused
    assert icon_of(tray) is IconKind.CAPTURING
    assert tray.notifications == []  # a resume the employee chose is not announced


def test_the_automatic_resume_is_announced_before_and_when_it_happens(
    qtbot: QtBot, stack: AgentStack
) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("pause:5").trigger()
    stack.clock.advance(4 * MINUTE_MS + 5_000)
    with qtbot.waitSignal(tray.notified) as soon:
        tray.refresh()
    assert soon.args[0].title == "Capture resumes soon"
    stack.clock.advance(60_000)
    tray.refresh()
    assert [n.title for n in tray.notifications] == ["Capture resumes soon", "Capture resumed"]
    assert icon_of(tray) is IconKind.CAPTURING


def test_discard_deletes_and_says_what_it_did(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("discard:5").trigger()
    assert stack.agent.calls[-1] == ("discard", (5,))
    (note,) = tray.notifications
    assert note.title == "Discarded"
    assert note.message == "Deleted 1 batch from the last 5 minutes."
    tray.action("discard:15").trigger()
    assert tray.notifications[-1].message == "Deleted 1 batch from the last 15 minutes."


def test_a_refused_command_is_shown_and_the_tray_keeps_going(
    qtbot: QtBot, stack: AgentStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(minutes: int) -> dict[str, Any]:
        raise ControlError("unavailable", "the spool is not ready yet")

    monkeypatch.setattr(stack.agent, "discard", refuse)
    tray = make_tray(qtbot, stack)
    tray.action("discard:5").trigger()
    (note,) = tray.notifications
    assert (note.title, note.message) == ("Could not discard", "the spool is not ready yet")
    assert icon_of(tray) is IconKind.CAPTURING


def test_an_agent_that_stops_is_shown_as_not_running(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    stack.client.running = False
    tray.refresh()
    assert icon_of(tray) is IconKind.NOT_RUNNING
    assert tray.action("status").text() == "Not capturing: the agent is not running"
    enabled = [a.objectName() for a in tray.menu.actions() if a.isEnabled() and a.text()]
    assert enabled == ["status", "quit"]  # the headline is a label
    stack.client.running = True
    tray.refresh()
    assert icon_of(tray) is IconKind.CAPTURING


class _FakeProcess:
    pid = 4242

    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.code = -15

    def kill(self) -> None:
        self.code = -9

    def wait(self, timeout: float | None = None) -> int:
        assert self.code is not None
        return self.code


def test_start_the_agent_from_the_menu(qtbot: QtBot, stack: AgentStack) -> None:
    started: list[tuple[str, ...]] = []
    process = _FakeProcess()

    def spawn(argv: Any) -> _FakeProcess:
        started.append(tuple(argv))
        return process

    launcher = AgentLauncher(
        AgentCommand.overt_agent_run(["--trust", "k.pub"], python="py"),
        spawn=spawn,
        clock=lambda: 0.0,
    )
    stack.client.running = False
    tray = TrayController(stack.api, InlineRunner(), launcher=launcher, tz=UTC)
    tray.refresh()
    assert tray.action("start_agent").isEnabled()
    tray.action("start_agent").trigger()
    assert started == [("py", "-m", "overt", "agent", "run", "--trust", "k.pub")]
    assert tray.view.headline == "Not capturing: starting the agent…"
    assert not tray.action("start_agent").isEnabled()
    process.code = 2
    tray.refresh()
    assert "The agent stopped (exit status 2)." in tray.tray.toolTip()
    assert tray.action("start_agent").isEnabled()


def test_the_notice_opens_by_itself_when_consent_is_needed_and_accept_starts_capture(
    qtbot: QtBot,
) -> None:
    stack = agent_stack(consent=None)
    tray = make_tray(qtbot, stack)
    assert icon_of(tray) is IconKind.ATTENTION
    dialog = tray.dialogs["consent"]
    assert isinstance(dialog, ConsentDialog)
    qtbot.addWidget(dialog)
    assert dialog.isVisible()
    dialog.accept_button.click()
    assert stack.agent.calls[-1] == ("consent_accept", (3,))
    assert stack.agent.consent == "accepted"
    assert icon_of(tray) is IconKind.CAPTURING
    assert not dialog.isVisible()
    tray.refresh()
    assert "consent" in tray.dialogs  # not opened again for the same policy


def test_closing_the_notice_unanswered_does_not_reopen_it(qtbot: QtBot) -> None:
    stack = agent_stack(consent=None)
    tray = make_tray(qtbot, stack)
    first = tray.dialogs["consent"]
    qtbot.addWidget(first)
    first.reject()
    tray.refresh()
    assert not first.isVisible()
    assert tray.action("consent").text() == "Answer the capture &notice…"
    tray.action("consent").trigger()
    assert tray.dialogs["consent"].isVisible()
    qtbot.addWidget(tray.dialogs["consent"])


def test_declining_the_notice_stops_capture(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("consent").trigger()
    dialog = tray.dialogs["consent"]
    qtbot.addWidget(dialog)
    assert isinstance(dialog, ConsentDialog)
    dialog.decline_button.click()
    assert stack.agent.consent == "declined"
    assert tray.view.headline == "Not capturing: you declined the notice"
    assert icon_of(tray) is IconKind.BLOCKED


def test_what_is_captured_and_exemption_windows_open_once(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    tray.action("captured").trigger()
    captured = tray.dialogs["captured"]
    qtbot.addWidget(captured)
    tray.action("captured").trigger()
    assert tray.dialogs["captured"] is captured
    tray.action("exemption").trigger()
    qtbot.addWidget(tray.dialogs["exemption"])
    assert tray.dialogs["exemption"].isVisible()


def test_quit_asks_to_quit(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    with qtbot.waitSignal(tray.quit_requested):
        tray.action("quit").trigger()


def test_menu_actions_survive_label_changes(qtbot: QtBot, stack: AgentStack) -> None:
    # An open menu must not be torn down by a status update: same layout,
    # same QAction objects, new labels.
    tray = make_tray(qtbot, stack)
    before = tray.action("status")
    tray.action("pause:30").trigger()
    assert tray.action("status") is before
    assert before.text().startswith("Paused")


@pytest.mark.parametrize("state", ["capturing", "paused", "consent", "not_running"])
def test_menu_screenshots(qtbot: QtBot, stack: AgentStack, state: str) -> None:
    tray = make_tray(qtbot, stack, prompt_consent=False)
    if state == "paused":
        tray.action("pause:30").trigger()
        stack.clock.advance(18 * MINUTE_MS)
        tray.refresh()
    elif state == "consent":
        stack.agent.consent = None
        tray.refresh()
    elif state == "not_running":
        stack.client.running = False
        tray.refresh()
    tray.menu.popup(tray.menu.pos())
    qtbot.waitExposed(tray.menu)
    path = save_screenshot(tray.menu, f"tray-menu-{state}")
    tray.menu.hide()
    assert path.stat().st_size > 0


def test_menu_entries_have_keyboard_mnemonics(qtbot: QtBot, stack: AgentStack) -> None:
    tray = make_tray(qtbot, stack)
    texts = {name: tray.action(name).text() for name in ("pause:30", "pause:15", "resume", "quit")}
    assert texts == {
        "pause:30": "&Pause for 30 minutes",
        "pause:15": "Pause for 15 minutes",
        "resume": "&Resume now",
        "quit": "&Quit",
    }
    assert with_mnemonic("Salt & pepper", "p") == "Salt && &pepper"
    assert with_mnemonic("abc", "z") == "abc"


def test_the_menu_map_says_where_each_entry_is(
    qtbot: QtBot, stack: AgentStack, tmp_path: Path
) -> None:
    target = tmp_path / "menu.json"
    tray = make_tray(qtbot, stack, menu_map=target)
    tray.menu.popup(QPoint(40, 60))
    qtbot.waitExposed(tray.menu)
    qtbot.waitUntil(target.exists)
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["opened"] == 1
    entries = data["entries"]
    assert entries["pause:30"]["label"] == "Pause for 30 minutes"
    assert entries["pause:30"]["enabled"] is True
    assert entries["resume"]["enabled"] is False
    x, y, w, h = entries["quit"]["rect"]
    mx, my, mw, mh = data["menu"]
    assert mx <= x
    assert x + w <= mx + mw
    assert my <= y
    assert y + h <= my + mh
    assert entries["pause:30"]["rect"][1] < entries["quit"]["rect"][1]
    tray.menu.hide()


def test_the_headline_always_fits_the_menu(qtbot: QtBot, stack: AgentStack) -> None:
    # The headline gets longer (capturing, then paused with the time of the
    # resume) while the menu keeps its entries; the menu must grow with it.
    stack.agent.current_app = None  # no detail line at first
    tray = make_tray(qtbot, stack)
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitExposed(tray.menu)
    tray.menu.hide()
    stack.agent.pause(30)
    tray.refresh()
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitExposed(tray.menu)
    headline = tray.action("status")
    assert isinstance(headline, QWidgetAction)
    widget = headline.defaultWidget()
    assert widget is not None
    box = tray.menu.actionGeometry(headline)
    assert box.height() >= widget.sizeHint().height()
    assert box.width() >= widget.sizeHint().width()
    save_screenshot(tray.menu, "tray-menu-after-change")
    tray.menu.hide()
