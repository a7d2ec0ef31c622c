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

Options for the filter attack tests (all off by default):

- ``--second-window TITLE`` opens a second top-level window of the same
  process (``--second-geometry X,Y,W,H``, solid ``--second-colour RRGGBB``,
  ``--second-on-top`` to keep it above the main window), e.g. "My Bank",
  which a title ``skip`` rule excludes;
- ``--mask-hole X,Y,W,H`` gives the main window a SHAPE bounding region
  (``QWidget.setMask``): the whole window minus that client-relative hole;
- ``--text-log PATH`` writes the editor's whole text to PATH after every
  change, so a test knows which keys really reached the work app.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

WM_CLASS = "overt-workapp"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=WM_CLASS)
    parser.add_argument("--title", default="Overt Work App")
    parser.add_argument("--rename-to", default="Overt Work App (renamed)")
    parser.add_argument("--x", type=int, default=100)
    parser.add_argument("--y", type=int, default=100)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--second-window", default=None, metavar="TITLE")
    parser.add_argument("--second-geometry", type=_rect, default=(300, 250, 400, 300))
    parser.add_argument("--second-colour", default="00c800")
    parser.add_argument("--second-on-top", action="store_true")
    parser.add_argument("--mask-hole", type=_rect, default=None)
    parser.add_argument("--text-log", default=None, metavar="PATH")
    return parser.parse_args(argv)


def _rect(text: str) -> tuple[int, int, int, int]:
    x, y, w, h = (int(p) for p in text.split(","))
    return x, y, w, h


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
    if args.mask_hole is not None:
        from PySide6.QtGui import QRegion

        hx, hy, hw, hh = args.mask_hole
        whole = QRegion(0, 0, args.width, args.height)
        window.setMask(whole.subtracted(QRegion(hx, hy, hw, hh)))
    if args.text_log is not None:
        log_path = args.text_log

        def log_text() -> None:
            with open(log_path, "w", encoding="utf-8") as f:
                f.write(editor.toPlainText())

        editor.textChanged.connect(log_text)
    window.show()
    editor.setFocus()
    # Held here so the second window lives as long as the event loop.
    others = [] if args.second_window is None else [_second_window(args)]
    for other in others:
        other.show()
    return app.exec()


def _second_window(args: argparse.Namespace) -> Any:
    """Another top-level window of this process: a solid fill, a title of its own."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QLabel

    colour = args.second_colour.lstrip("#")
    rgb = (int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16))
    label = QLabel(args.second_window)
    label.setWindowTitle(args.second_window)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor(*rgb))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(*rgb))
    label.setPalette(palette)
    label.setAutoFillBackground(True)
    label.setGeometry(*args.second_geometry)
    if args.second_on_top:
        label.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint, True)
    return label


if __name__ == "__main__":
    raise SystemExit(main())
