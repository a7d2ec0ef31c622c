"""Pointer coalescing: from a 1 kHz stream of moves to the paths a demonstration needs.

This module owns which pointer movement is kept. It does not record clicks or
scrolls (``pipeline`` does, one record each) and it does not convert to
window-relative coordinates (its caller gives it window-relative ones).

Kept, as ``MousePathRecord`` (see ``records`` for the delta layout):

- **drag** — while any button is held: the path from the press to the release,
  simplified with Ramer-Douglas-Peucker at ``tolerance_px``; the first and the
  last sample are the exact press and release points and times.
- **approach** — at a press: the moves of the last ``approach_s`` (1 s) before
  it, simplified the same way, ending at the press point, with ``dwell_ms``
  the time between the last move and the press.
- **hover** — the pointer rested within ``hover_radius_px`` of one point for at
  least ``hover_s`` (400 ms) and then moved on (or the coalescer was flushed):
  one sample, with the rest's duration as ``dwell_ms``.

Everything else is dropped. The coalescer holds at most ``approach_s`` of
moves plus the path of a drag in progress, never reads a clock, and is not
thread-safe.
"""

from __future__ import annotations

import itertools
from collections import deque

from .records import MousePathRecord, PathKind, to_ms

Point = tuple[float, int, int]  # (t seconds, x, y)


def simplify(points: list[Point], tolerance: float) -> list[Point]:
    """Ramer-Douglas-Peucker on (x, y), by distance to the segment; the first and
    last points are always kept, and every dropped point lies within
    ``tolerance`` of the kept polyline."""
    n = len(points)
    if n < 3:
        return list(points)
    keep = [False] * n
    keep[0] = keep[-1] = True
    tol2 = tolerance * tolerance
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        _, x1, y1 = points[first]
        _, x2, y2 = points[last]
        dx, dy = x2 - x1, y2 - y1
        norm = dx * dx + dy * dy
        worst, worst_d = -1, float(tol2)
        for i in range(first + 1, last):
            _, px, py = points[i]
            # Distance to the segment, not the line: a path that doubles back
            # along itself (a slider dragged back) must keep its turning point.
            dot = (px - x1) * dx + (py - y1) * dy
            if norm == 0 or dot <= 0:
                d: float = (px - x1) ** 2 + (py - y1) ** 2
            elif dot >= norm:
                d = (px - x2) ** 2 + (py - y2) ** 2
            else:
                cross = dx * (py - y1) - dy * (px - x1)
                d = cross * cross / norm
            if d > worst_d:
                worst, worst_d = i, d
        if worst >= 0:
            keep[worst] = True
            if worst - first > 1:
                stack.append((first, worst))
            if last - worst > 1:
                stack.append((worst, last))
    return [p for p, k in zip(points, keep, strict=True) if k]


def path_record(kind: PathKind, points: list[Point], dwell_ms: int = 0) -> MousePathRecord:
    """Pack absolute samples into a delta-encoded path record."""
    ts = [to_ms(p[0]) for p in points]
    t0, x0, y0 = ts[0], points[0][1], points[0][2]
    dt = tuple(b - a for a, b in itertools.pairwise(ts))
    dx = tuple(b[1] - a[1] for a, b in itertools.pairwise(points))
    dy = tuple(b[2] - a[2] for a, b in itertools.pairwise(points))
    return MousePathRecord(t0, kind, x0, y0, dt, dx, dy, dwell_ms)


class MouseCoalescer:
    """Keeps drags, approaches and hovers; drops the rest of the movement."""

    __slots__ = (
        "_approach",
        "_at",
        "_ax",
        "_ay",
        "_drag",
        "_held",
        "_hover",
        "_last",
        "_radius",
        "_recent",
        "_tolerance",
    )

    def __init__(
        self,
        *,
        tolerance_px: float = 2.0,
        approach_s: float = 1.0,
        hover_s: float = 0.4,
        hover_radius_px: int = 3,
    ) -> None:
        self._tolerance = tolerance_px
        self._approach = approach_s
        self._hover = hover_s
        self._radius = hover_radius_px
        self._recent: deque[Point] = deque()
        self._drag: list[Point] | None = None
        self._held = 0
        self._last: Point | None = None
        self._at = 0.0  # when the pointer came to rest near (_ax, _ay)
        self._ax = 0
        self._ay = 0

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    def move(self, t: float, x: int, y: int) -> MousePathRecord | None:
        """One pointer move; returns a hover record when a rest just ended."""
        p = (t, x, y)
        if self._drag is not None:
            self._drag.append(p)
            self._last = p
            return None
        out = None
        r = self._radius
        if self._last is None:
            self._at, self._ax, self._ay = t, x, y
        elif x - self._ax > r or self._ax - x > r or y - self._ay > r or self._ay - y > r:
            rest = t - self._at
            if rest >= self._hover:
                _, lx, ly = self._last
                out = path_record(PathKind.HOVER, [(self._at, lx, ly)], to_ms(rest))
            self._at, self._ax, self._ay = t, x, y
        recent = self._recent
        recent.append(p)
        horizon = t - self._approach
        while recent[0][0] < horizon:
            recent.popleft()
        self._last = p
        return out

    def press(self, t: float, x: int, y: int) -> MousePathRecord | None:
        """A button went down; returns the approach path, if the pointer moved lately."""
        self._held += 1
        out = None
        if self._held == 1:
            horizon = t - self._approach
            pts = [p for p in self._recent if p[0] >= horizon]
            if pts:
                dwell = to_ms(t) - to_ms(pts[-1][0])
                if (pts[-1][1], pts[-1][2]) != (x, y):
                    pts.append((t, x, y))
                out = path_record(PathKind.APPROACH, simplify(pts, self._tolerance), dwell)
            self._recent.clear()
            self._drag = [(t, x, y)]
        self._at, self._ax, self._ay = t, x, y
        self._last = (t, x, y)
        return out

    def release(self, t: float, x: int, y: int) -> MousePathRecord | None:
        """A button went up; returns the drag path when the last button is released
        after the pointer moved."""
        self._held = max(0, self._held - 1)
        out = None
        if self._held == 0 and self._drag is not None:
            drag = self._drag
            self._drag = None
            drag.append((t, x, y))
            if any((p[1], p[2]) != (drag[0][1], drag[0][2]) for p in drag):
                out = path_record(PathKind.DRAG, simplify(drag, self._tolerance))
        self._at, self._ax, self._ay = t, x, y
        self._last = (t, x, y)
        return out

    def flush(self, now: float) -> MousePathRecord | None:
        """A hover in progress at ``now`` (focus change, end of a batch)."""
        last = self._last
        if last is None or self._drag is not None:
            return None
        rest = now - self._at
        if rest < self._hover:
            return None
        self._at = now
        return path_record(PathKind.HOVER, [(now - rest, last[1], last[2])], to_ms(rest))

    def reset(self) -> None:
        """Forget everything (capture stopped, window changed, pause)."""
        self._recent.clear()
        self._drag = None
        self._held = 0
        self._last = None
