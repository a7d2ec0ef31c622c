"""The tray icons: one distinct drawing per state, legible at tray sizes."""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtGui import QColor, QImage, QPainter
from pytestqt.qtbot import QtBot

from tests.ui.qt_support import ARTIFACTS
from ui.icons import SIZES, render, tray_icon
from ui.presentation import IconKind


def _opaque_pixels(image: QImage) -> int:
    return sum(
        1
        for x in range(image.width())
        for y in range(image.height())
        if image.pixelColor(x, y).alpha() > 128
    )


@pytest.mark.parametrize("kind", list(IconKind))
@pytest.mark.parametrize("size", [16, 22, 64])
def test_every_icon_draws_something_and_stays_inside(kind: IconKind, size: int) -> None:
    image = render(kind, size)
    assert (image.width(), image.height()) == (size, size)
    assert _opaque_pixels(image) > size  # more than a stray line
    corners = [(0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)]
    assert all(image.pixelColor(x, y).alpha() == 0 for x, y in corners)


def test_the_icons_differ_from_each_other_at_22_px() -> None:
    images = {kind: render(kind, 22) for kind in IconKind}
    for a, b in itertools.combinations(IconKind, 2):
        assert images[a] != images[b], f"{a} and {b} look the same"


def test_capturing_is_red_and_paused_is_amber_in_the_middle() -> None:
    def centre(kind: IconKind) -> QColor:
        return render(kind, 22).pixelColor(11, 5)

    assert centre(IconKind.CAPTURING).red() > 200
    assert centre(IconKind.CAPTURING).green() < 80
    paused = centre(IconKind.PAUSED)
    assert paused.red() > 200
    assert 120 < paused.green() < 200


def test_tray_icon_has_every_size(qtbot: QtBot) -> None:
    icon = tray_icon(IconKind.PAUSED)
    assert sorted({s.width() for s in icon.availableSizes()}) == sorted(SIZES)


def test_icon_sheet_artifact(qtbot: QtBot) -> None:
    """All icons at 16, 22, 32 and 64 px on a light and a dark panel, to look at."""
    sizes = (16, 22, 32, 64)
    width = sum(sizes) + 10 * (len(sizes) + 1)
    sheet = QImage(width * 2, 74 * len(IconKind), QImage.Format.Format_ARGB32)
    sheet.fill(QColor("#f0f0f0"))
    painter = QPainter(sheet)
    painter.fillRect(width, 0, width, sheet.height(), QColor("#303030"))
    for row, kind in enumerate(IconKind):
        for panel in (0, width):
            x = panel + 10
            for size in sizes:
                painter.drawImage(x, row * 74 + 5, render(kind, size))
                x += size + 10
    painter.end()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert sheet.save(str(ARTIFACTS / "icons.png"))
