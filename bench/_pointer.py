"""How faithful the kept pointer paths are, next to what the old simplification kept.

Used by ``bench/pipeline.py`` and ``bench/session_bytes.py``. ``PathTap``
watches :func:`agent.pipeline.mouse.resample` while a benchmark runs and keeps
each path's reported moves next to the samples kept from them. From those:

- **replay error**: at each reported instant, the distance between where the
  pointer was and where a replay of the kept samples puts it (straight lines
  at constant speed between samples) — what a demonstration replayed in time
  shows;
- **shape error**: each reported point's distance to the kept polyline,
  whatever the time — what the Ramer-Douglas-Peucker simplification bounded;
- **the comparison**: the same paths as that simplification at 2 px (what
  the agent kept up to body format 3) would have kept them, re-encoded with
  today's encoder in the same batches, so both byte figures come from one
  run.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from agent.pipeline import mouse
from overt.wire.records import MousePathRecord, to_ms

Sample = tuple[int, int, int]  # (t ms, x, y)


def rdp(points: Sequence[Sample], tolerance: float) -> list[Sample]:
    """Ramer-Douglas-Peucker on (x, y) by distance to the segment, as the agent
    simplified paths up to body format 3 (commit 5e4684b): the first and last
    points kept, every dropped point within ``tolerance`` of the polyline."""
    n = len(points)
    if n < 3:
        return list(points)
    keep = [False] * n
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        worst, worst_d = -1, tolerance
        for i in range(first + 1, last):
            d = _segment_distance(points[i][1:], points[first][1:], points[last][1:])
            if d > worst_d:
                worst, worst_d = i, d
        if worst >= 0:
            keep[worst] = True
            stack += [(first, worst), (worst, last)]
    return [p for p, k in zip(points, keep, strict=True) if k]


def _segment_distance(p: Sequence[int], a: Sequence[int], b: Sequence[int]) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    norm = dx * dx + dy * dy
    u = 0.0 if norm == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / norm))
    return math.hypot(px - ax - u * dx, py - ay - u * dy)


def replay_errors(reported: Sequence[Sample], kept: Sequence[Sample]) -> list[float]:
    """For each reported sample, its distance to the replay of ``kept`` at its time."""
    out = []
    pairs = list(itertools.pairwise(kept))
    i = 0
    for t, x, y in reported:
        while i + 1 < len(pairs) and pairs[i][1][0] <= t:
            i += 1
        if not pairs:
            out.append(math.hypot(x - kept[0][1], y - kept[0][2]))
            continue
        (t1, x1, y1), (t2, x2, y2) = pairs[i]
        f = 0.0 if t2 == t1 else min(1.0, max(0.0, (t - t1) / (t2 - t1)))
        out.append(math.hypot(x - x1 - f * (x2 - x1), y - y1 - f * (y2 - y1)))
    return out


def shape_errors(reported: Sequence[Sample], kept: Sequence[Sample]) -> list[float]:
    """For each reported sample, its distance to the polyline of ``kept``."""
    if len(kept) < 2:
        return [math.hypot(x - kept[0][1], y - kept[0][2]) for _, x, y in reported]
    segments = list(itertools.pairwise(kept))
    return [min(_segment_distance(p[1:], a[1:], b[1:]) for a, b in segments) for p in reported]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class PathTap:
    """Each resampled path's reported moves and kept samples, by the kept first sample."""

    paths: dict[Sample, list[tuple[list[Sample], list[Sample]]]] = field(default_factory=dict)

    @contextmanager
    def watching(self) -> Iterator[PathTap]:
        real = mouse.resample

        def tapped(points: Sequence[mouse.Point], interval_ms: int) -> list[Sample]:
            kept = real(points, interval_ms)
            reported, latest = [], -(2**63)
            for t, x, y in points:  # as resample reads them: milliseconds, never back in time
                latest = max(latest, to_ms(t))
                reported.append((latest, x, y))
            self.paths.setdefault(kept[0], []).append((reported, kept))
            return kept

        mouse.resample = tapped
        try:
            yield self
        finally:
            mouse.resample = real

    def reported_of(self, path: MousePathRecord) -> list[Sample] | None:
        """The reported moves a kept path was resampled from (None: not seen)."""
        for reported, kept in self.paths.get((path.t, path.x, path.y), []):
            if kept == path.points():
                return reported
        return None

    def errors(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """Replay and shape errors of the kept paths, then of RDP at 2 px on the same moves."""
        kept_r: list[float] = []
        kept_s: list[float] = []
        rdp_r: list[float] = []
        rdp_s: list[float] = []
        for entries in self.paths.values():
            for reported, kept in entries:
                old = rdp(reported, 2.0)
                kept_r += replay_errors(reported, kept)
                kept_s += shape_errors(reported, kept)
                rdp_r += replay_errors(reported, old)
                rdp_s += shape_errors(reported, old)
        return kept_r, kept_s, rdp_r, rdp_s

    def as_rdp(self, paths_by_batch: list[list[MousePathRecord]]) -> list[list[MousePathRecord]]:
        """The same batches' paths with the samples RDP at 2 px keeps of the same moves."""
        out = []
        for paths in paths_by_batch:
            converted = []
            for p in paths:
                reported = self.reported_of(p) if p.samples > 1 else None
                if reported is not None:
                    q = mouse.path_record(p.kind, rdp(reported, 2.0), p.dwell_ms)
                    p = replace(p, dt=q.dt, dx=q.dx, dy=q.dy)
                converted.append(p)
            out.append(converted)
        return out


def summary(
    tap: PathTap,
    paths_by_batch: list[list[MousePathRecord]],
    per_batch_bytes: float,
    rdp_per_batch_bytes: float,
) -> list[str]:
    """Lines for a benchmark's output: how closely the kept paths follow the
    reported moves, and what RDP at 2 px keeps of the same moves."""
    kept_r, kept_s, rdp_r, rdp_s = tap.errors()
    samples = sum(p.samples for ps in paths_by_batch for p in ps)
    rdp_samples = sum(p.samples for ps in tap.as_rdp(paths_by_batch) for p in ps)
    moving = [p for ps in paths_by_batch for p in ps if p.samples > 1]  # hovers: one sample
    seen = sum(1 for p in moving if tap.reported_of(p) is not None)

    def errs(replay: list[float], shape: list[float]) -> str:
        if not replay:
            return "no moves"
        return (
            f"replayed {statistics.median(replay):.1f} px from the reported position at the "
            f"median reported instant, {percentile(replay, 0.99):.1f} at p99, "
            f"{max(replay):.1f} at most; off the kept polyline {percentile(shape, 0.99):.1f} px "
            f"at p99, {max(shape):.1f} at most"
        )

    return [
        f"fidelity:  {sum(len(r) for e in tap.paths.values() for r, _ in e):,} reported moves in "
        f"{seen} of the {len(moving)} paths with more than one sample: {errs(kept_r, kept_s)}",
        f"vs RDP:    the same moves simplified as before format 4 (RDP at 2 px): {rdp_samples:,} "
        f"samples instead of {samples:,}, {rdp_per_batch_bytes:.2f} bytes per kept sample "
        f"within the same batches ({rdp_per_batch_bytes * rdp_samples:,.0f} bytes in all, "
        f"against {per_batch_bytes * samples:,.0f}); {errs(rdp_r, rdp_s)}",
    ]
