"""Keep only the allowed window's own pixels in a grabbed frame.

A screen grab of an allow-listed window's rectangle also shows whatever else
is on screen there: a chat popup, a colleague's message, another window of
the same program that the policy skips, the desktop behind a see-through
(shaped) part. Those pixels must never leave the machine, so before a frame
is encoded everything outside the window's own visible region is filled with
black. This module owns that pure operation; the region is the window
probe's answer (``WindowProbe.visible_region``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from agent.events import Frame, Rect


def keep_visible(frame: Frame, visible: Sequence[Rect]) -> Frame:
    """``frame`` with every pixel outside ``visible`` (screen rectangles) made black.

    Rectangles may lie partly outside the frame. Pixels only partly inside the
    region (HiDPI grabs, where a screen point is several pixels) are blanked:
    rounding narrows what is kept, never widens it. The input frame is not
    modified; a frame wholly inside the region is returned as it is.
    """
    inside = [part for r in visible if (part := r.intersect(frame.rect)) is not None]
    if any(part == frame.rect for part in inside):
        return frame
    stride = frame.width * 3
    kept = bytearray(len(frame.rgb))
    sx = frame.width / frame.rect.width
    sy = frame.height / frame.rect.height
    source = memoryview(frame.rgb)
    for part in inside:
        x0 = math.ceil((part.x - frame.rect.x) * sx)
        x1 = min(frame.width, math.floor((part.x + part.width - frame.rect.x) * sx))
        y0 = math.ceil((part.y - frame.rect.y) * sy)
        y1 = min(frame.height, math.floor((part.y + part.height - frame.rect.y) * sy))
        if x1 <= x0:
            continue
        for row in range(y0, y1):
            start, end = row * stride + x0 * 3, row * stride + x1 * 3
            kept[start:end] = source[start:end]
    return replace(frame, rgb=bytes(kept))
