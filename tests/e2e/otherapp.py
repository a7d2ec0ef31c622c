"""A second, NOT allow-listed app for desktop tests: loud magenta everywhere.

Run as ``python -m tests.e2e.otherapp --x .. --y .. --width .. --height ..``.
WM_CLASS is ``("overt-otherapp", "overt-otherapp")``. The whole client area is
solid magenta (255, 0, 255) with big white text "PRIVATE-OTHER-APP", so a test
can assert that none of its pixels reached a frame of another window. Ignores
SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

WM_CLASS = "overt-otherapp"
COLOR = (255, 0, 255)
TEXT = "PRIVATE-OTHER-APP"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=WM_CLASS)
    parser.add_argument("--title", default="Private Other App")
    parser.add_argument("--x", type=int, default=500)
    parser.add_argument("--y", type=int, default=300)
    parser.add_argument("--width", type=int, default=600)
    parser.add_argument("--height", type=int, default=400)
    parser.add_argument(
        "--on-top", action="store_true", help="stay above other windows, even focused ones"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QFont, QPalette
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication([WM_CLASS])
    app.setApplicationName(WM_CLASS)
    app.setDesktopFileName(WM_CLASS)

    label = QLabel(TEXT)
    label.setWindowTitle(args.title)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    font = QFont()
    font.setPointSize(36)
    font.setBold(True)
    label.setFont(font)
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor(*COLOR))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(255, 255, 255))
    label.setPalette(palette)
    label.setAutoFillBackground(True)
    label.setGeometry(args.x, args.y, args.width, args.height)
    if args.on_top:
        label.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint, True)
    label.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
