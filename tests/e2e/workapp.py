"""A small "work app" for desktop tests: a Qt window with the usual widgets.

Run as its own process: ``python -m tests.e2e.workapp --title "..." --x 100
--y 120 --width 800 --height 600``. Its WM_CLASS is exactly
``("overt-workapp", "overt-workapp")`` (instance and class), set before the
QApplication exists so it does not depend on how the process was started.

It holds a text editor (QPlainTextEdit), a drop-down (QComboBox), a menu bar
with a File and a Window menu, and a table (QTableWidget). Window > Rename
(Ctrl+R) sets the title to ``--rename-to``, so tests can watch a title change.
It ignores SIGINT (``xdotool key ctrl+c`` must not kill it) and prints nothing
per keystroke.
"""

from __future__ import annotations

import argparse
import signal
import sys

WM_CLASS = "overt-workapp"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=WM_CLASS)
    parser.add_argument("--title", default="Overt Work App")
    parser.add_argument("--rename-to", default="Overt Work App (renamed)")
    parser.add_argument("--x", type=int, default=100)
    parser.add_argument("--y", type=int, default=100)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import (
        QApplication,
        QComboBox,
        QMainWindow,
        QPlainTextEdit,
        QTableWidget,
        QTableWidgetItem,
        QVBoxLayout,
        QWidget,
    )

    # Qt's xcb plugin takes WM_CLASS from argv[0] (instance) and the
    # application name (class); pin both.
    app = QApplication([WM_CLASS])
    app.setApplicationName(WM_CLASS)
    app.setDesktopFileName(WM_CLASS)
    # A blinking text cursor would change the window's pixels twice a second;
    # tests that check "unchanged window, no new screenshot" need it still.
    app.setCursorFlashTime(0)

    window = QMainWindow()
    window.setWindowTitle(args.title)

    central = QWidget()
    layout = QVBoxLayout(central)
    combo = QComboBox()
    combo.setObjectName("status")
    combo.addItems(["Open", "In progress", "Blocked", "Done"])
    layout.addWidget(combo)
    editor = QPlainTextEdit()
    editor.setObjectName("editor")
    layout.addWidget(editor, stretch=2)
    table = QTableWidget(5, 3)
    table.setObjectName("table")
    table.setHorizontalHeaderLabels(["Ticket", "Owner", "State"])
    for row in range(5):
        for col, text in enumerate((f"T-{100 + row}", f"user{row}", "Open")):
            table.setItem(row, col, QTableWidgetItem(text))
    layout.addWidget(table, stretch=1)
    window.setCentralWidget(central)

    file_menu = window.menuBar().addMenu("&File")
    file_menu.addAction("&New")
    file_menu.addAction("&Save")
    window_menu = window.menuBar().addMenu("&Window")
    rename = QAction("&Rename", window)
    rename.setShortcut(QKeySequence("Ctrl+R"))
    rename.triggered.connect(lambda: window.setWindowTitle(args.rename_to))
    window_menu.addAction(rename)

    # setGeometry positions the client area (not the frame) and marks the
    # position as program-specified, which openbox honours.
    window.setGeometry(args.x, args.y, args.width, args.height)
    window.show()
    editor.setFocus()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
