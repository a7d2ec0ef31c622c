"""The consent, "What is captured" and exemption windows, offscreen, over a fake agent."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTreeWidget
from pytestqt.qtbot import QtBot

from overt.wire.control_results import Status
from tests.ui.fake_agent import sample_batches
from tests.ui.qt_support import AgentStack, agent_stack, save_screenshot
from ui.budget_chart import OVER, BudgetChart
from ui.calls import InlineRunner
from ui.dialogs import CapturedDialog, ConsentDialog, ExemptionDialog
from ui.ledger_view import BudgetDay


def row(tree: QTreeWidget, index: int) -> list[str]:
    item = tree.topLevelItem(index)
    assert item is not None
    return [item.text(i) for i in range(tree.columnCount())]


@pytest.fixture
def stack() -> AgentStack:
    s = agent_stack()
    s.agent.batches = sample_batches(s.clock.now_ms)
    return s


def consent_dialog(qtbot: QtBot, stack: AgentStack, **kw: Any) -> ConsentDialog:
    dialog = ConsentDialog(stack.api.consent_show(), stack.api, InlineRunner(), **kw)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


# -- consent ----------------------------------------------------------------------


def test_the_consent_notice_is_generated_from_the_policy(qtbot: QtBot) -> None:
    stack = agent_stack(consent=None)
    dialog = consent_dialog(qtbot, stack)
    text = dialog.text.toPlainText()
    for app in stack.agent.notice["apps"]:
        assert app["name"] in text
    assert "It is kept for" in text
    assert dialog.later_button.text() == "Decide &later"
    buttons = (dialog.accept_button, dialog.decline_button, dialog.later_button)
    assert not any(b.isDefault() for b in buttons)  # Enter answers nothing
    save_screenshot(dialog, "consent-dialog")


def test_accept_records_the_answer_with_the_policy_version(qtbot: QtBot) -> None:
    stack = agent_stack(consent=None)
    dialog = consent_dialog(qtbot, stack)
    with qtbot.waitSignal(dialog.answered) as answered:
        dialog.accept_button.click()
    assert stack.agent.calls == [("consent_accept", (3,))]
    status = answered.args[0]
    assert isinstance(status, Status)
    assert status.reason == "capturing"
    assert not dialog.isVisible()


def test_a_widening_policy_lists_what_is_new_first(qtbot: QtBot) -> None:
    stack = agent_stack(consent=None, widening=["typed text in apps matching process name 'x'"])
    dialog = consent_dialog(qtbot, stack)
    text = dialog.text.toPlainText()
    assert text.index("captures more than what you agreed to") < text.index("Why")
    assert "typed text in apps matching process name 'x'" in text
    save_screenshot(dialog, "consent-dialog-widening")


def test_an_answer_the_agent_refuses_is_not_lost_silently(qtbot: QtBot) -> None:
    stack = agent_stack(consent=None)
    dialog = consent_dialog(qtbot, stack)
    stack.agent.policy_version = 4  # a new policy arrived while the window was open
    dialog.accept_button.click()
    assert dialog.isVisible()
    assert "Your answer was not recorded. that is not the policy in force" in dialog.message.text()
    assert dialog.accept_button.isEnabled()
    assert stack.agent.consent is None


def test_reopening_an_answered_notice_says_what_the_answer_was(qtbot: QtBot) -> None:
    stack = agent_stack(consent="declined")
    dialog = consent_dialog(qtbot, stack, declined_before=True)
    assert dialog.later_button.text() == "&Close"
    labels = [w.text() for w in dialog.findChildren(type(dialog.message))]
    assert any("You declined this notice" in t for t in labels)


# -- what is captured -------------------------------------------------------------


def captured_dialog(qtbot: QtBot, stack: AgentStack) -> CapturedDialog:
    dialog = CapturedDialog(stack.api, InlineRunner(), tz=UTC)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_what_is_captured_shows_the_policy_and_the_ledger(qtbot: QtBot, stack: AgentStack) -> None:
    dialog = captured_dialog(qtbot, stack)
    assert "Only in these apps" in dialog.policy_text.toPlainText()
    save_screenshot(dialog, "captured-dialog-policy")
    dialog.tabs.setCurrentIndex(1)
    assert dialog.table.topLevelItemCount() == len(stack.agent.batches)
    first = row(dialog.table, 0)
    assert first[1] == "LibreOffice Writer"
    assert first[3] == "held for review"
    assert first[4] == "9 clicks · 4 shortcuts · 2 screenshots"
    assert dialog.summary.text().startswith("12 batches in the last 7 days")
    assert len(dialog.chart.days) == 7
    assert "daily budget (50 MiB)" in dialog.chart_caption.text()
    save_screenshot(dialog, "captured-dialog-ledger")


def test_choosing_more_days_asks_the_agent_again(qtbot: QtBot, stack: AgentStack) -> None:
    dialog = captured_dialog(qtbot, stack)
    dialog.days.setCurrentIndex(2)
    assert stack.agent.calls[-1] == ("ledger", (30,))
    assert "in the last 30 days" in dialog.summary.text()


def test_without_an_agent_the_window_says_so(qtbot: QtBot, stack: AgentStack) -> None:
    stack.client.running = False
    dialog = captured_dialog(qtbot, stack)
    assert "The agent is not running" in dialog.summary.text()
    assert "The agent is not running" in dialog.policy_text.toPlainText()


def test_the_chart_paints_a_day_over_budget_in_red(qtbot: QtBot) -> None:
    chart = BudgetChart()
    qtbot.addWidget(chart)
    chart.resize(400, 200)
    chart.set_days(
        [BudgetDay("2026-11-20", "Fri 20", 10, 100), BudgetDay("2026-11-21", "Sat 21", 150, 100)]
    )
    image = chart.grab().toImage()
    # Sample the middle of each bar, low down where both have colour.
    left, right = image.pixelColor(QPoint(100, 140)), image.pixelColor(QPoint(300, 140))
    assert right == QColor(OVER)
    assert left != QColor(OVER)
    save_screenshot(chart, "budget-chart")


def test_an_empty_chart_says_there_is_nothing(qtbot: QtBot) -> None:
    chart = BudgetChart()
    qtbot.addWidget(chart)
    chart.resize(300, 170)
    assert not chart.grab().toImage().isNull()
    assert chart.days == ()


# -- exemptions -------------------------------------------------------------------


def exemption_dialog(qtbot: QtBot, stack: AgentStack) -> ExemptionDialog:
    dialog = ExemptionDialog(stack.api, InlineRunner())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_a_request_needs_a_reason_then_goes_to_the_agent(qtbot: QtBot, stack: AgentStack) -> None:
    dialog = exemption_dialog(qtbot, stack)
    assert row(dialog.requests, 0)[0] == "None yet."
    assert not dialog.send_button.isEnabled()
    dialog.category.setCurrentIndex(2)  # battery
    dialog.reason.setPlainText("I work from trains most days")
    dialog.duration.setValue(14)
    assert dialog.send_button.isEnabled()
    dialog.send_button.click()
    assert stack.agent.calls[-2:] == [
        ("exemption_request", ("battery", "I work from trains most days", 14)),
        ("exemption_list", ()),  # the list is read again
    ]
    assert dialog.message.text() == "Sent. It is waiting for an admin's decision."
    assert dialog.reason.toPlainText() == ""
    assert row(dialog.requests, 0) == [
        "Often on battery",
        "14 days",
        "waiting for a decision",
        "I work from trains most days",
    ]


def test_earlier_decisions_are_shown(qtbot: QtBot, stack: AgentStack) -> None:
    stack.agent.requests = [
        {"request_id": "r1", "category": "bandwidth", "reason": "metered line at home",
         "duration_days": 30, "status": "approved", "decided_at": "2026-11-20T09:00:00Z",
         "decision_reason": None, "grant_expires": "2026-12-20T09:00:00Z"},
        {"request_id": "r2", "category": "sensitive", "reason": "I handle HR cases",
         "duration_days": 90, "status": "denied", "decided_at": "2026-11-21T09:00:00Z",
         "decision_reason": "HR apps are already on the never-capture list",
         "grant_expires": None},
    ]  # fmt: skip
    dialog = exemption_dialog(qtbot, stack)
    statuses = [row(dialog.requests, i)[2] for i in range(2)]
    assert statuses == [
        "approved until 2026-12-20 (decided 2026-11-20)",
        "denied: HR apps are already on the never-capture list (decided 2026-11-21)",
    ]
    dialog.reason.setPlainText("Home internet is capped at 20 GB a month")
    save_screenshot(dialog, "exemption-dialog")


def test_a_refused_request_keeps_what_was_typed(qtbot: QtBot, stack: AgentStack) -> None:
    stack.agent.exemptions_available = False
    dialog = exemption_dialog(qtbot, stack)
    assert "this agent has no collector to ask" in row(dialog.requests, 0)[3]
    dialog.reason.setPlainText("metered line")
    dialog.send_button.click()
    assert dialog.message.text() == "Not sent. this agent has no collector to send it to"
    assert dialog.reason.toPlainText() == "metered line"
    assert dialog.send_button.isEnabled()
