"""The tray's three windows: the consent notice, "What is captured", and the
exemption request.

Each dialog is a thin Qt shell over the Qt-free wording modules
(:mod:`ui.notice_text`, :mod:`ui.ledger_view`, :mod:`ui.exemption_view`) and
talks to the agent only through an :class:`~ui.agent_api.AgentApi` via a
:class:`~ui.calls.CallRunner`, so the window never freezes on a slow agent
and every failure ends up as a sentence in the window, not a crash. None of
them holds capture state: after an answer the agent's new status is handed
to whoever listens (``answered``).
"""

from __future__ import annotations

import logging
from datetime import tzinfo

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from overt.wire.control import MAX_REASON_CHARS
from overt.wire.control_results import (
    ConsentOffer,
    LedgerReport,
    RequestedExemption,
    Status,
)
from ui.agent_api import AgentApi
from ui.budget_chart import BudgetChart
from ui.calls import CallRunner
from ui.errors import AgentRefused, AgentUnreachable, TrayError
from ui.exemption_view import (
    CATEGORIES,
    DEFAULT_DAYS,
    MAX_DAYS,
    MIN_DAYS,
    check_request,
    request_rows,
)
from ui.ledger_view import budget_days, ledger_rows, ledger_summary
from ui.notice_text import notice_html
from ui.presentation import human_bytes

log = logging.getLogger(__name__)

ERROR_STYLE = "color: #b3261e;"


def failure_text(error: TrayError) -> str:
    """A failed call, in words for the window it happened in."""
    if isinstance(error, AgentUnreachable):
        return "The agent is not running, so this cannot be done now."
    if isinstance(error, AgentRefused):
        return error.message
    return f"Something went wrong talking to the agent: {error}"


def _browser(html: str) -> QTextBrowser:
    view = QTextBrowser()
    view.setOpenExternalLinks(False)
    view.setOpenLinks(False)
    view.setHtml(html)
    return view


class ConsentDialog(QDialog):
    """The capture notice of the policy in force, with Accept and Decline.

    ``answered`` carries the agent's status after the answer was recorded.
    "Decide later" closes the window without answering (no capture happens
    until there is an answer).
    """

    answered = Signal(object)

    def __init__(
        self,
        offer: ConsentOffer,
        api: AgentApi,
        runner: CallRunner,
        *,
        declined_before: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("consent-dialog")
        self.setWindowTitle("Overt — capture notice")
        self.offer = offer
        self._api = api
        self._runner = runner
        layout = QVBoxLayout(self)
        if not offer.needed:
            state = (
                "You declined this notice: nothing is captured. You can accept it now."
                if declined_before
                else "You accepted this notice. Declining it now stops capture."
            )
            layout.addWidget(QLabel(state))
        elif offer.widens and not offer.widening:
            layout.addWidget(QLabel("<b>This policy captures more than what you agreed to.</b>"))
        self.text = _browser(notice_html(offer.notice, offer.widening))
        layout.addWidget(self.text)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet(ERROR_STYLE)
        layout.addWidget(self.message)
        # A plain row, not a QDialogButtonBox: the box makes its accept
        # button the default, and Enter must not answer a consent question.
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.accept_button = QPushButton("&Accept")
        self.decline_button = QPushButton("&Decline")
        self.later_button = QPushButton("Decide &later" if offer.needed else "&Close")
        for button in (self.accept_button, self.decline_button, self.later_button):
            button.setAutoDefault(False)
            buttons.addWidget(button)
        self.accept_button.clicked.connect(lambda: self._answer(True))
        self.decline_button.clicked.connect(lambda: self._answer(False))
        self.later_button.clicked.connect(self.reject)
        layout.addLayout(buttons)
        self.text.setFocus()
        self.resize(620, 640)

    def _answer(self, accept: bool) -> None:
        version = self.offer.policy_version
        self._set_busy(True)
        if accept:
            self._runner.run(
                lambda: self._api.consent_accept(version), self._recorded, self._failed
            )
        else:
            self._runner.run(
                lambda: self._api.consent_decline(version), self._recorded, self._failed
            )

    def _set_busy(self, busy: bool) -> None:
        for button in (self.accept_button, self.decline_button):
            button.setEnabled(not busy)

    def _recorded(self, status: Status) -> None:
        log.info("consent answer recorded for policy version %d", self.offer.policy_version)
        self.answered.emit(status)
        self.done(QDialog.DialogCode.Accepted)

    def _failed(self, error: TrayError) -> None:
        self._set_busy(False)
        self.message.setText(f"Your answer was not recorded. {failure_text(error)}")


class CapturedDialog(QDialog):
    """The "What is captured" window: the policy in plain words, and the ledger of the last days."""

    DAY_CHOICES = (1, 7, 30)

    def __init__(
        self,
        api: AgentApi,
        runner: CallRunner,
        *,
        days: int = 7,
        tz: tzinfo | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("captured-dialog")
        self.setWindowTitle("Overt — what is captured")
        self._api = api
        self._runner = runner
        self._tz = tz
        self.tabs = QTabWidget()
        self.policy_text = _browser("<p>Reading the policy…</p>")
        self.tabs.addTab(self.policy_text, "The policy")

        ledger_page = QWidget()
        page = QVBoxLayout(ledger_page)
        top = QHBoxLayout()
        self.days = QComboBox()
        for n in self.DAY_CHOICES:
            self.days.addItem("the last day" if n == 1 else f"the last {n} days", n)
        self.days.setCurrentIndex(self.DAY_CHOICES.index(days) if days in self.DAY_CHOICES else 1)
        self.days.currentIndexChanged.connect(lambda _i: self.load_ledger())
        show = QLabel("&Show")
        show.setBuddy(self.days)
        top.addWidget(show)
        top.addWidget(self.days)
        top.addStretch(1)
        page.addLayout(top)
        self.summary = QLabel("Reading the ledger…")
        self.summary.setWordWrap(True)
        page.addWidget(self.summary)
        self.chart_caption = QLabel("")
        page.addWidget(self.chart_caption)
        self.chart = BudgetChart()
        page.addWidget(self.chart)
        self.table = QTreeWidget()
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["When", "Apps", "Size", "What happened", "Captured"])
        self.table.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        page.addWidget(self.table, 1)
        self.tabs.addTab(ledger_page, "Ledger")

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.resize(900, 620)
        self.ledger: LedgerReport | None = None
        self.load_policy()
        self.load_ledger()

    @property
    def selected_days(self) -> int:
        value = self.days.currentData()
        return int(value) if value is not None else 7

    def load_policy(self) -> None:
        self._runner.run(self._api.consent_show, self._show_policy, self._policy_failed)

    def load_ledger(self) -> None:
        days = self.selected_days
        self._runner.run(lambda: self._api.ledger(days), self._show_ledger, self._ledger_failed)

    def _show_policy(self, offer: ConsentOffer) -> None:
        self.policy_text.setHtml(notice_html(offer.notice))

    def _policy_failed(self, error: TrayError) -> None:
        self.policy_text.setHtml(f"<p>The policy cannot be shown. {failure_text(error)}</p>")

    def _show_ledger(self, ledger: LedgerReport) -> None:
        self.ledger = ledger
        self.summary.setText(ledger_summary(ledger, self.selected_days))
        days = budget_days(ledger)
        budgets = sorted({d.budget for d in days if d.budget})
        if budgets:
            budget = human_bytes(budgets[-1])
            self.chart_caption.setText(
                f"Uploaded per day; the dark line is the daily budget ({budget})."
            )
        else:
            self.chart_caption.setText("Uploaded per day.")
        self.chart.set_days(days)
        self.table.clear()
        for row in ledger_rows(ledger, self._tz):
            item = QTreeWidgetItem([row.when, row.apps, row.size, row.fate, row.signals])
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(4, row.signals)
            if row.destination:
                item.setToolTip(3, f"sent to {row.destination}")
            self.table.addTopLevelItem(item)

    def _ledger_failed(self, error: TrayError) -> None:
        self.summary.setText(f"The ledger cannot be shown. {failure_text(error)}")
        self.summary.setStyleSheet(ERROR_STYLE)


class ExemptionDialog(QDialog):
    """Ask for an exemption (category, reason, duration); see earlier requests."""

    def __init__(self, api: AgentApi, runner: CallRunner, *, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("exemption-dialog")
        self.setWindowTitle("Overt — request an exemption")
        self._api = api
        self._runner = runner
        layout = QVBoxLayout(self)
        intro = QLabel(
            "An admin reviews every request. If it is approved, capture changes at once, "
            "for as long as the grant lasts."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.category = QComboBox()
        for value, label in CATEGORIES:
            self.category.addItem(label, value)
        form.addRow("&Why", self.category)
        self.reason = QPlainTextEdit()
        self.reason.setPlaceholderText("In a few words, for the admin who decides.")
        self.reason.setFixedHeight(90)
        self.reason.textChanged.connect(self._update_send)
        form.addRow("&Reason", self.reason)
        self.duration = QSpinBox()
        self.duration.setRange(MIN_DAYS, MAX_DAYS)
        self.duration.setValue(DEFAULT_DAYS)
        self.duration.setSuffix(" days")
        form.addRow("&For", self.duration)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        row.addWidget(self.message, 1)
        self.send_button = QPushButton("&Send request")
        self.send_button.setEnabled(False)
        self.send_button.clicked.connect(self.send)
        row.addWidget(self.send_button)
        layout.addLayout(row)
        layout.addWidget(QLabel("<b>Your earlier requests</b>"))
        self.requests = QTreeWidget()
        self.requests.setRootIsDecorated(False)
        self.requests.setHeaderLabels(["Why", "For", "Status", "Reason"])
        header = self.requests.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.requests, 1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.resize(640, 520)
        self._sending = False
        self.load_requests()

    def _update_send(self) -> None:
        text = self.reason.toPlainText().strip()
        self.send_button.setEnabled(
            not self._sending and bool(text) and len(text) <= MAX_REASON_CHARS
        )

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet(ERROR_STYLE if error else "")
        self.message.setText(text)

    def load_requests(self) -> None:
        self._runner.run(self._api.exemption_list, self._show_requests, self._list_failed)

    def _show_requests(self, requests: tuple[RequestedExemption, ...]) -> None:
        self.requests.clear()
        rows = request_rows(requests)
        for row in rows:
            item = QTreeWidgetItem([row.category, row.duration, row.status, row.reason])
            item.setToolTip(2, row.status)
            item.setToolTip(3, row.reason)
            self.requests.addTopLevelItem(item)
        if not rows:
            self.requests.addTopLevelItem(QTreeWidgetItem(["None yet.", "", "", ""]))

    def _list_failed(self, error: TrayError) -> None:
        self.requests.clear()
        self.requests.addTopLevelItem(
            QTreeWidgetItem(["Cannot be listed:", "", "", failure_text(error)])
        )

    def send(self) -> None:
        try:
            draft = check_request(
                str(self.category.currentData()),
                self.reason.toPlainText(),
                self.duration.value(),
            )
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self._sending = True
        self._update_send()
        self._say("Sending…")
        self._runner.run(
            lambda: self._api.exemption_request(draft.category, draft.reason, draft.duration_days),
            self._sent,
            self._send_failed,
        )

    def _sent(self, request_id: str) -> None:
        log.info("exemption request %s sent", request_id)
        self._sending = False
        self.reason.clear()
        self._say("Sent. It is waiting for an admin's decision.")
        self.load_requests()

    def _send_failed(self, error: TrayError) -> None:
        self._sending = False
        self._update_send()
        self._say(f"Not sent. {failure_text(error)}", error=True)
