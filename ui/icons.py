"""The tray icons, drawn with QPainter at run time (no image files).

Owns one drawing per :class:`~ui.presentation.IconKind` (what each means is
listed in :mod:`ui.presentation`). Every drawing is made in a unit square and
scaled, with strokes rounded to whole pixels at small sizes, so it stays
legible at 16 and 22 px and crisp at 64. Colours keep a dark outline so the
icon reads on light and dark panels alike.

:func:`render` returns a ``QImage`` and needs no application object;
:func:`tray_icon` returns a ``QIcon`` with the common tray sizes and needs a
``QGuiApplication``.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPainter, QPen, QPixmap

from ui.presentation import IconKind

SIZES = (16, 22, 24, 32, 48, 64)

RED = QColor("#d93025")
RED_DARK = QColor("#7f1d16")
AMBER = QColor("#f2a900")
AMBER_DARK = QColor("#6b4a00")
GREY = QColor("#8c8c8c")
GREY_DARK = QColor("#3c3c3c")
WHITE = QColor("#ffffff")
MID_GREY = QColor("#9a9a9a")


def _pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen


def _stroke(size: int, fraction: float) -> float:
    """A line width of ``fraction`` of the icon, never thinner than 1.5 px."""
    return max(1.5, round(size * fraction * 2) / 2)


def _disc(p: QPainter, size: int, fill: QColor, outline: QColor, radius: float = 0.45) -> None:
    c = size / 2
    r = size * radius
    p.setPen(_pen(outline, max(1.0, size / 22)))
    p.setBrush(QBrush(fill))
    p.drawEllipse(QPointF(c, c), r, r)


def _capturing(p: QPainter, size: int) -> None:
    _disc(p, size, RED, RED_DARK)


def _armed(p: QPainter, size: int) -> None:
    c = size / 2
    width = _stroke(size, 0.16)
    r = size * 0.45 - width / 2
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(_pen(RED_DARK, width + max(1.0, size / 22)))
    p.drawEllipse(QPointF(c, c), r, r)
    p.setPen(_pen(RED, width))
    p.drawEllipse(QPointF(c, c), r, r)


def _paused(p: QPainter, size: int) -> None:
    _disc(p, size, AMBER, AMBER_DARK)
    bar_w = max(2.0, round(size * 0.12))
    bar_h = round(size * 0.42)
    gap = max(2.0, round(size * 0.10))
    top = (size - bar_h) / 2
    left = (size - 2 * bar_w - gap) / 2
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(AMBER_DARK))
    p.drawRect(QRectF(left, top, bar_w, bar_h))
    p.drawRect(QRectF(left + bar_w + gap, top, bar_w, bar_h))


def _blocked(p: QPainter, size: int) -> None:
    _disc(p, size, GREY, GREY_DARK)
    # The slash runs the width of the disc, at 45 degrees, in white with a
    # dark edge so it reads on grey.
    c = size / 2
    # Inset so that the round caps stay inside the disc.
    d = size * 0.45 * 0.707 - _stroke(size, 0.13) / 2
    width = _stroke(size, 0.13)
    a, b = QPointF(c - d, c - d), QPointF(c + d, c + d)
    p.setPen(_pen(WHITE, width))
    p.drawLine(a, b)


def _attention(p: QPainter, size: int) -> None:
    _blocked(p, size)
    # An amber badge with an exclamation mark, bottom right.
    r = size * 0.24
    cx = cy = size - r - max(0.5, size / 64)
    p.setPen(_pen(AMBER_DARK, max(1.0, size / 22)))
    p.setBrush(QBrush(AMBER))
    p.drawEllipse(QPointF(cx, cy), r, r)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(AMBER_DARK))
    w = max(1.5, r * 0.36)
    p.drawRect(QRectF(cx - w / 2, cy - r * 0.62, w, r * 0.78))
    p.drawRect(QRectF(cx - w / 2, cy + r * 0.30, w, w))


def _dashed(width: float, on: float, off: float, color: QColor) -> QPen:
    pen = _pen(color, width, Qt.PenStyle.CustomDashLine)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    # A dash pattern is counted in pen widths; dividing keeps the dashes of
    # the edge and of the core the same length in pixels.
    pen.setDashPattern([on / width, off / width])
    return pen


def _not_running(p: QPainter, size: int) -> None:
    # A mid grey reads on light and dark panels alike, and is duller than
    # every other icon: nothing is running, nothing is captured.
    c = size / 2
    width = _stroke(size, 0.12)
    r = size * 0.45 - width / 2
    step = 2 * math.pi * r / 8  # eight dashes around the ring whatever the size
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(_dashed(width, step * 0.6, step * 0.4, MID_GREY))
    p.drawEllipse(QPointF(c, c), r, r)
    d = size * 0.13
    p.setPen(_pen(MID_GREY, width))
    p.drawLine(QPointF(c - d, c - d), QPointF(c + d, c + d))
    p.drawLine(QPointF(c - d, c + d), QPointF(c + d, c - d))


_DRAW = {
    IconKind.CAPTURING: _capturing,
    IconKind.ARMED: _armed,
    IconKind.PAUSED: _paused,
    IconKind.BLOCKED: _blocked,
    IconKind.ATTENTION: _attention,
    IconKind.NOT_RUNNING: _not_running,
}


def render(kind: IconKind, size: int) -> QImage:
    """The icon for ``kind`` as a square ARGB image, ``size`` pixels wide."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        _DRAW[kind](painter, size)
    finally:
        painter.end()
    return image


def tray_icon(kind: IconKind) -> QIcon:
    """A ``QIcon`` holding the drawing at every common tray size."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(QPixmap.fromImage(render(kind, size)))
    return icon
