"""Pointer coalescing: from a 1 kHz stream of moves to the paths a demonstration needs.

This module owns which pointer movement is kept. It does not record clicks or
scrolls (``pipeline`` does, one record each) and it does not convert to
window-relative coordinates (its caller gives it window-relative ones).

Kept, as ``MousePathRecord`` (see ``records`` for the delta layout):

- **drag** — while any button is held: the path from the press to the release,
  resampled (below); the first and the last sample are the exact press and
  release points and times.
- **approach** — at a press: the moves of the last ``approach_s`` (1 s) before
  it, resampled the same way, ending at the press point, with ``dwell_ms``
  the time between the last move and the press.
- **hover** — the pointer rested within ``hover_radius_px`` of one point for at
  least ``hover_s`` (400 ms) and then moved on (or the coalescer was flushed):
  one sample, with the rest's duration as ``dwell_ms``.

Everything else is dropped. Resampling keeps where the pointer was every
``interval_ms`` (30 ms, about 33 Hz): a demonstration is replayed in time, and
a hand's movement holds little above 10 Hz. Between two kept samples a replay
moves in a straight line at constant speed, which keeps the replayed pointer
close to where it was at each reported instant (``bench/pipeline.py``
measures how close; BENCHMARKS.md has the figures). Samples at regular times
rather than a simplified shape: the pointer speeds up and slows down along a
straight stretch, so a path that keeps only the shape replays far off in
time. Regular samples are also cheap to store: their times and steps are
predictable (the body format stores path records as a pointer stream).

The coalescer holds at most ``approach_s`` of moves plus the path of a drag in
progress, never reads a clock, and is not thread-safe.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

from overt.wire.records import MousePathRecord, PathKind, to_ms

Point = tuple[float, int, int]  # (t seconds, x, y), as reported
Sample = tuple[int, int, int]  # (t milliseconds, x, y), as kept


def resample(points: Sequence[Point], interval_ms: int) -> list[Sample]:
    """Where the pointer was every ``interval_ms`` from the first point on.

    The first and the last point are kept as reported. In between, the
    position at each instant is interpolated linearly between the two reports
    around it and rounded to whole pixels. A sample where the pointer stood
    still — at the position of the samples before and after it — is left out:
    the step after it spans the rest. Reports are expected in time order (a
    report that goes back in time is treated as simultaneous with the one
    before it).
    """
    if interval_ms <= 0:
        raise ValueError("the sampling interval must be positive")
    reported: list[Sample] = []
    latest = None
    for t, x, y in points:
        ms = to_ms(t)
        latest = ms if latest is None else max(latest, ms)
        reported.append((latest, x, y))
    if len(reported) < 2:
        return reported
    first, last = reported[0], reported[-1]
    grid = [first]
    j = 0
    g = first[0] + interval_ms
    while g < last[0]:
        while reported[j + 1][0] <= g:  # stops before the end: the last report is after g
            j += 1
        t1, x1, y1 = reported[j]
        t2, x2, y2 = reported[j + 1]
        f = (g - t1) / (t2 - t1)
        grid.append((g, round(x1 + f * (x2 - x1)), round(y1 + f * (y2 - y1))))
        g += interval_ms
    grid.append(last)
    kept = [first]
    for before, here, after in zip(grid, grid[1:], grid[2:], strict=False):
        if not (before[1:] == here[1:] == after[1:]):
            kept.append(here)
    kept.append(last)
    return kept


def path_record(kind: PathKind, samples: Sequence[Sample], dwell_ms: int = 0) -> MousePathRecord:
    """Pack absolute samples into a delta-encoded path record."""
    t0, x0, y0 = samples[0]
    dt = tuple(b[0] - a[0] for a, b in itertools.pairwise(samples))
    dx = tuple(b[1] - a[1] for a, b in itertools.pairwise(samples))
    dy = tuple(b[2] - a[2] for a, b in itertools.pairwise(samples))
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
        "_interval",
        "_last",
        "_radius",
        "_recent",
    )

    def __init__(
        self,
        *,
        interval_ms: int = 30,
        approach_s: float = 1.0,
        hover_s: float = 0.4,
        hover_radius_px: int = 3,
    ) -> None:
        if interval_ms <= 0:
            raise ValueError("the sampling interval must be positive")
        self._interval = interval_ms
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
                out = path_record(PathKind.HOVER, [(to_ms(self._at), lx, ly)], to_ms(rest))
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
                out = path_record(PathKind.APPROACH, resample(pts, self._interval), dwell)
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
                out = path_record(PathKind.DRAG, resample(drag, self._interval))
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
        return path_record(PathKind.HOVER, [(to_ms(now - rest), last[1], last[2])], to_ms(rest))

    def reset(self) -> None:
        """Forget everything (capture stopped, window changed, pause)."""
        self._recent.clear()
        self._drag = None
        self._held = 0
        self._last = None
