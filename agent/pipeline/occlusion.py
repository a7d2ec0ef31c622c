"""Blank out other windows' pixels in a grabbed frame.

A screen grab of an allow-listed window's rectangle also shows whatever is
stacked above it: a chat popup, a colleague's message, a window of an app the
policy never captures. Those pixels must never leave the machine, so before a
frame is encoded every rectangle covered by another window is filled with
black. This module owns that pure operation; which rectangles are covered is
the window probe's answer (``WindowProbe.covering``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from agent.events import Frame, Rect


def blank_covered(frame: Frame, covered: Sequence[Rect]) -> Frame:
    """``frame`` with every covered screen rectangle filled with black.

    Rectangles are in screen coordinates; parts outside the frame are
    ignored. The input frame is not modified.
    """
    if not covered:
        return frame
    pixels: bytearray | None = None
    stride = frame.width * 3
    # Screen points to frame pixels (HiDPI grabs have more pixels than points);
    # rounding widens the blanked area, never narrows it.
    sx = frame.width / frame.rect.width
    sy = frame.height / frame.rect.height
    for rect in covered:
        inside = rect.intersect(frame.rect)
        if inside is None:
            continue
        if pixels is None:
            pixels = bytearray(frame.rgb)
        x0 = math.floor((inside.x - frame.rect.x) * sx)
        x1 = min(frame.width, math.ceil((inside.x + inside.width - frame.rect.x) * sx))
        y0 = math.floor((inside.y - frame.rect.y) * sy)
        y1 = min(frame.height, math.ceil((inside.y + inside.height - frame.rect.y) * sy))
        zeros = bytes((x1 - x0) * 3)
        for row in range(y0, y1):
            offset = row * stride
            pixels[offset + x0 * 3 : offset + x1 * 3] = zeros
    if pixels is None:
        return frame
    return replace(frame, rgb=bytes(pixels))
