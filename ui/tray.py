"""The tray icon and its menu: the thin Qt layer over :mod:`ui.presentation`.

:class:`TrayController` owns one ``QSystemTrayIcon`` and its ``QMenu``. It
asks the agent for its status (through a :class:`~ui.calls.CallRunner`, never
on the GUI thread), hands the answer to :func:`~ui.presentation.present`, and
shows the result: icon, tooltip, menu labels and which entries are enabled.
Menu entries send the matching control command; the answer updates the icon
at once. It announces an automatic resume shortly before and when it happens,
opens the consent notice when the agent needs an answer, and opens the
"What is captured" and exemption windows.

It holds no capture state: every decision is the agent's, and a tray that
crashes or quits changes nothing the agent does (except that a tray that
started the agent stops it on Quit, see :mod:`ui.app`). Without an agent it
says so and offers to start one when it can.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCursor, QIcon
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from overt.wire.control_results import ConsentOffer, DiscardReport, Status
from ui.agent_api import AgentApi
from ui.calls import CallRunner
from ui.dialogs import CapturedDialog, ConsentDialog, ExemptionDialog, failure_text
from ui.errors import AgentUnreachable, LaunchError, TrayError
from ui.icons import tray_icon
from ui.launcher import AgentLauncher
from ui.presentation import (
    RESUME_WARNING_MS,
    AgentState,
    ConsentPrompter,
    IconKind,
    MenuEntry,
    Notification,
    ResumeAnnouncer,
    TrayView,
    Unreachable,
    next_poll_ms,
    present,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrayConfig:
    """How the tray behaves; built once at the entry point."""

    poll_interval_ms: int = 2000
    resume_warning_ms: int = RESUME_WARNING_MS
    #: How long a notification balloon stays up.
    notification_ms: int = 8000
    ledger_days: int = 7
    #: Open the consent notice by itself when the agent needs an answer.
    prompt_consent: bool = True
    #: When set, every time the menu opens, write where each entry is on the
    #: screen to this JSON file (for UI automation; see ``menu_map``).
    menu_map: Path | None = None


#: Keyboard mnemonics (Alt+letter in the menu) by entry id or command.
_MNEMONICS = {
    "consent": "n",
    "start_agent": "s",
    "resume": "r",
    "discard:5": "d",
    "captured": "w",
    "exemption": "e",
    "quit": "q",
}


def with_mnemonic(label: str, letter: str | None) -> str:
    """``label`` for a QAction: ``&`` escaped, and ``&`` before ``letter``."""
    text = label.replace("&", "&&")
    if not letter:
        return text
    lower = text.lower()
    # Prefer the letter where a word starts: "Answer the capture &notice".
    starts = [i for i, c in enumerate(lower) if c == letter and (i == 0 or lower[i - 1] == " ")]
    at = starts[0] if starts else lower.find(letter)
    return text if at < 0 else text[:at] + "&" + text[at:]


def _without_mnemonic(text: str) -> str:
    return "&".join(part.replace("&", "") for part in text.split("&&"))


def _rect(x: int, y: int, w: int, h: int) -> list[int]:
    return [x, y, w, h]


def discard_message(minutes: int, result: DiscardReport) -> str:
    """What a discard did, in one or two sentences."""
    if not result.batches_deleted and not result.events_dropped:
        text = f"Nothing captured in the last {minutes} minutes was waiting on this computer."
    else:
        n = result.batches_deleted
        what = f"{n} {'batch' if n == 1 else 'batches'}" if n else "what was not yet batched"
        text = f"Deleted {what} from the last {minutes} minutes."
    if result.erasure_requested:
        text += " Part of it was already uploaded: the collector was asked to erase it."
    return text


class _Headline(QWidgetAction):
    """The first line of the menu: the state icon and sentence, in bold.

    A disabled menu entry would grey out the one line that matters most, so
    the sentence is a label: readable, and not something to click.
    """

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(10, 6, 14, 6)
        row.setSpacing(8)
        self.icon_label = QLabel()
        self.icon_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.text_label = QLabel()
        font = self.text_label.font()
        font.setBold(True)
        self.text_label.setFont(font)
        self.detail_label = QLabel()
        self.detail_label.setStyleSheet("color: palette(placeholder-text);")
        self.detail_label.setTextFormat(Qt.TextFormat.PlainText)
        self.text_label.setTextFormat(Qt.TextFormat.PlainText)
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addWidget(self.text_label)
        column.addWidget(self.detail_label)
        row.addWidget(self.icon_label)
        row.addLayout(column, 1)
        self._box = box
        self.setDefaultWidget(box)

    def show_state(self, icon: QIcon, text: str, detail: str) -> None:
        self.icon_label.setPixmap(icon.pixmap(20, 20))
        self.text_label.setText(text)
        self.detail_label.setText(detail)
        self.detail_label.setVisible(bool(detail))
        # The menu sizes a widget entry from its size hint, and only looks
        # again when the action changes: refresh the hint, then say so.
        self._box.adjustSize()
        self.setText(text)
        self.setStatusTip(detail)


class TrayController(QObject):
    """Keeps the tray icon and menu in step with the agent."""

    #: Emitted with the new :class:`TrayView` after every update.
    view_changed = Signal(object)
    #: Emitted with each :class:`Notification` shown.
    notified = Signal(object)
    #: Emitted when the employee chose Quit.
    quit_requested = Signal()

    def __init__(
        self,
        api: AgentApi,
        runner: CallRunner,
        config: TrayConfig | None = None,
        *,
        launcher: AgentLauncher | None = None,
        tz: tzinfo | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._api = api
        self._runner = runner
        self._config = config or TrayConfig()
        self._launcher = launcher
        self._tz = tz
        self._announcer = ResumeAnnouncer(self._config.resume_warning_ms, tz)
        self._prompter = ConsentPrompter()
        self._icons: dict[IconKind, QIcon] = {}
        self._actions: dict[str, QAction] = {}
        self._layout: tuple[str, ...] = ()
        self._polling = False
        self._in_flight = False
        self.state: AgentState = Unreachable(why="Asking the agent…")
        self.view: TrayView = present(self.state, tz)
        self.notifications: list[Notification] = []
        self.dialogs: dict[str, QDialog] = {}

        self.menu = QMenu()
        self.menu.setObjectName("overt-tray-menu")
        self._menu_opened = 0
        if self._config.menu_map is not None:
            self.menu.installEventFilter(self)
        self.tray = QSystemTrayIcon()
        self.tray.setContextMenu(self.menu)
        self.tray.activated.connect(self._activated)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh)
        self._render(self.view)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Show the icon and start asking the agent for its status."""
        self._polling = True
        self.tray.show()
        self.refresh()

    def close(self) -> None:
        self._polling = False
        self._timer.stop()
        for dialog in list(self.dialogs.values()):
            dialog.close()
        self.tray.hide()

    def action(self, entry_id: str) -> QAction:
        """The menu action of ``entry_id`` (``pause:30``, ``resume``, …)."""
        return self._actions[entry_id]

    # -- talking to the agent ---------------------------------------------------

    def refresh(self) -> None:
        """Ask the agent for its status now."""
        self._timer.stop()
        if self._in_flight:
            return
        self._in_flight = True
        self._runner.run(self._api.status, self._status_arrived, self._status_failed)

    def _status_arrived(self, status: Status) -> None:
        self._in_flight = False
        self.apply(status)

    def _status_failed(self, error: TrayError) -> None:
        self._in_flight = False
        self._failed(error)

    def _failed(self, error: TrayError, doing: str = "") -> None:
        if isinstance(error, AgentUnreachable):
            self.apply(self._unreachable(str(error)))
            return
        log.warning("agent call failed: %s", type(error).__name__)
        if doing:
            self.notify(Notification(f"Could not {doing}", failure_text(error)))
        self._schedule()

    def _unreachable(self, why: str) -> Unreachable:
        if self._launcher is not None:
            return self._launcher.describe(why)
        return Unreachable(why=why)

    def apply(self, state: AgentState) -> None:
        """Show ``state``: icon, tooltip, menu; announce and prompt as needed."""
        self.state = state
        self.view = present(state, self._tz)
        self._render(self.view)
        for notification in self._announcer.observe(state):
            self.notify(notification)
        if self._config.prompt_consent and self._prompter.observe(state):
            self.open_consent()
        self.view_changed.emit(self.view)
        self._schedule()

    def _schedule(self) -> None:
        if not self._polling:
            return
        delay = next_poll_ms(
            self.state, self._config.poll_interval_ms, self._config.resume_warning_ms
        )
        self._timer.start(delay)

    def notify(self, notification: Notification) -> None:
        self.notifications.append(notification)
        log.info("notification: %s", notification.title)
        self.tray.showMessage(
            notification.title,
            notification.message,
            QSystemTrayIcon.MessageIcon.Information,
            self._config.notification_ms,
        )
        self.notified.emit(notification)

    # -- rendering --------------------------------------------------------------

    def _icon(self, kind: IconKind) -> QIcon:
        if kind not in self._icons:
            self._icons[kind] = tray_icon(kind)
        return self._icons[kind]

    def _render(self, view: TrayView) -> None:
        icon = self._icon(view.icon)
        self.tray.setIcon(icon)
        self.tray.setToolTip(f"Overt — {view.tooltip}")
        layout = tuple(entry.id for entry in view.menu)
        if layout != self._layout:
            self._rebuild_menu(view)
            self._layout = layout
        for entry in view.menu:
            if entry.separator:
                continue
            action = self._actions[entry.id]
            if isinstance(action, _Headline):
                action.show_state(icon, entry.label, view.detail)
                continue
            label = self._label(entry, view)
            if action.text() != label:
                action.setText(label)
            action.setEnabled(entry.enabled)

    def _rebuild_menu(self, view: TrayView) -> None:
        self.menu.clear()
        self._actions.clear()
        for entry in view.menu:
            if entry.separator:
                self.menu.addSeparator()
                continue
            if entry.id == "status":
                headline = _Headline(self.menu)
                headline.setObjectName(entry.id)
                self.menu.addAction(headline)
                self._actions[entry.id] = headline
                continue
            action = self.menu.addAction(self._label(entry, view))
            action.setObjectName(entry.id)
            action.triggered.connect(self._handler(entry))
            self._actions[entry.id] = action

    def _label(self, entry: MenuEntry, view: TrayView) -> str:
        letter = _MNEMONICS.get(entry.id)
        if entry.command == "pause" and entry.minutes == view.menu_pause_max:
            letter = "p"  # the one-click pause
        return with_mnemonic(entry.label, letter)

    # -- the menu map, for UI automation ------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.menu and event.type() == QEvent.Type.Show:
            # Where the menu lands is known once it is shown.
            QTimer.singleShot(0, self._write_menu_map)
        return False

    def menu_map(self) -> dict[str, object]:
        """Each entry's label, state and rectangle on the screen (x, y, w, h)."""
        origin = self.menu.pos()
        entries: dict[str, object] = {}
        for entry_id, action in self._actions.items():
            box = self.menu.actionGeometry(action).translated(origin)
            entries[entry_id] = {
                "label": _without_mnemonic(action.text()),
                "detail": self.view.detail if entry_id == "status" else "",
                "enabled": action.isEnabled(),
                "rect": _rect(box.x(), box.y(), box.width(), box.height()),
            }
        g = self.menu.geometry()
        return {
            "opened": self._menu_opened,
            "menu": _rect(g.x(), g.y(), g.width(), g.height()),
            "entries": entries,
        }

    def _write_menu_map(self) -> None:
        target = self._config.menu_map
        if target is None or not self.menu.isVisible():
            return
        self._menu_opened += 1
        data = json.dumps(self.menu_map(), indent=1).encode("utf-8")
        try:
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(temp, target)
        except OSError as exc:
            log.warning("cannot write the menu map: %s", exc.strerror)

    def _handler(self, entry: MenuEntry) -> Callable[[], None]:
        def triggered() -> None:
            self.choose(entry.id)

        return triggered

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A left click opens the same menu as a right click: the menu is
        # the whole interface, and people click the icon to find it.
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.menu.popup(QCursor.pos())

    # -- menu commands ----------------------------------------------------------

    def choose(self, entry_id: str) -> None:
        """Carry out the menu entry ``entry_id``, as if it had been clicked."""
        command, _, number = entry_id.partition(":")
        minutes = int(number) if number else 0
        log.info("menu: %s", command)
        if command == "pause":
            self._send(lambda: self._api.pause(minutes), "pause")
        elif command == "resume":
            self._send(self._api.resume, "resume")
        elif command == "discard":
            self._runner.run(
                lambda: self._api.discard(minutes),
                lambda result: self._discarded(minutes, result),
                lambda error: self._failed(error, "discard"),
            )
        elif command == "consent":
            self.open_consent()
        elif command == "captured":
            self._open("captured", lambda: CapturedDialog(
                self._api, self._runner, days=self._config.ledger_days, tz=self._tz))  # fmt: skip
        elif command == "exemption":
            self._open("exemption", lambda: ExemptionDialog(self._api, self._runner))
        elif command == "start_agent":
            self.start_agent()
        elif command == "quit":
            self.quit_requested.emit()
        else:
            log.warning("unknown menu entry %s", command)

    def _send(self, call: Callable[[], Status], doing: str) -> None:
        self._runner.run(call, self.apply, lambda error: self._failed(error, doing))

    def _discarded(self, minutes: int, result: DiscardReport) -> None:
        self.notify(Notification("Discarded", discard_message(minutes, result)))
        self.refresh()

    def start_agent(self) -> None:
        if self._launcher is None:
            return
        try:
            self._launcher.start()
        except LaunchError as exc:
            self.notify(Notification("Could not start the agent", str(exc)))
        self.refresh()

    # -- windows ----------------------------------------------------------------

    def _open(self, name: str, make: Callable[[], QDialog]) -> QDialog:
        dialog = self.dialogs.get(name)
        if dialog is None or not dialog.isVisible():
            dialog = make()
            self.dialogs[name] = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def open_consent(self) -> None:
        """Fetch the notice of the policy in force and show it with Accept/Decline."""
        self._runner.run(
            self._api.consent_show,
            self._show_consent,
            lambda error: self._failed(error, "show the capture notice"),
        )

    def _show_consent(self, offer: ConsentOffer) -> None:
        existing = self.dialogs.get("consent")
        if (
            isinstance(existing, ConsentDialog)
            and existing.isVisible()
            and existing.offer.policy_version == offer.policy_version
        ):
            existing.raise_()
            existing.activateWindow()
            return
        if existing is not None:
            existing.close()
        declined = isinstance(self.state, Status) and self.state.reason == "consent_declined"
        dialog = ConsentDialog(offer, self._api, self._runner, declined_before=declined)
        dialog.answered.connect(self.apply)
        self._open("consent", lambda: dialog)
