"""A small bar chart of bytes uploaded per day against the daily budget.

Owns drawing :class:`~ui.ledger_view.BudgetDay` values with QPainter: one bar
per day (blue, red when over that day's budget) standing in a light box as
tall as that day's budget, with the budget as a dark tick across it, and the
day and the amount uploaded written under each bar. No chart
library. The scale is the larger of the highest budget and the highest day,
so a day over budget still fits.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.ledger_view import BudgetDay
from ui.presentation import human_bytes

BAR = QColor("#3b78c3")
OVER = QColor("#d93025")
BUDGET = QColor("#333333")
AXIS = QColor("#9a9a9a")
EMPTY_BAR = QColor("#e3e3e3")
AMOUNT = QColor("#555555")

_CENTRE_TOP = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


class BudgetChart(QWidget):
    """Bytes uploaded per day, as bars, against the daily upload budget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._days: tuple[BudgetDay, ...] = ()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Bytes uploaded per day against the daily budget")

    @property
    def days(self) -> tuple[BudgetDay, ...]:
        return self._days

    def set_days(self, days: Sequence[BudgetDay]) -> None:
        self._days = tuple(days)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(520, 180)

    def minimumSizeHint(self) -> QSize:
        return QSize(240, 180)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, p: QPainter) -> None:
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        # Two lines under the axis: the day, then the amount uploaded that day.
        area = QRectF(self.rect()).adjusted(8, 8, -8, -(2 * line + 8))
        p.setPen(QPen(AXIS, 1))
        p.drawLine(area.bottomLeft(), area.bottomRight())
        if not self._days:
            p.setPen(self.palette().text().color())
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "No uploads in these days.")
            return
        top = max(max(d.budget for d in self._days), max(d.uploaded for d in self._days), 1)
        scale = area.height() / top
        slot = area.width() / len(self._days)
        bar_width = min(slot * 0.6, 56.0)
        text = self.palette().text().color()
        for i, day in enumerate(self._days):
            centre = area.left() + slot * (i + 0.5)
            left = centre - bar_width / 2
            height = day.uploaded * scale
            if 0 < height < 1:
                height = 1.0  # a day with any upload shows a sliver
            p.setPen(Qt.PenStyle.NoPen)
            if day.budget:
                p.setBrush(EMPTY_BAR)
                budget_h = day.budget * scale
                p.drawRect(QRectF(left, area.bottom() - budget_h, bar_width, budget_h))
            p.setBrush(OVER if day.over else BAR)
            p.drawRect(QRectF(left, area.bottom() - height, bar_width, height))
            if day.budget:
                y = area.bottom() - day.budget * scale
                p.setPen(QPen(BUDGET, 2))
                p.drawLine(QPointF(left - 3, y), QPointF(left + bar_width + 3, y))
            p.setPen(text)
            day_box = QRectF(centre - slot / 2, area.bottom() + 3, slot, line)
            p.drawText(day_box, _CENTRE_TOP, day.label)
            amount = human_bytes(day.uploaded) if day.uploaded else "none"
            elided = metrics.elidedText(amount, Qt.TextElideMode.ElideRight, int(slot))
            p.setPen(OVER if day.over else AMOUNT)
            p.drawText(day_box.translated(0, line), _CENTRE_TOP, elided)
