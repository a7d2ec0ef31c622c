from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pipeline.mouse import MouseCoalescer, resample
from overt.wire.records import MousePathRecord, PathKind, to_ms

T = 1_800_000_000.0


def _segment_distance(p: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    norm = dx * dx + dy * dy
    if norm == 0:
        return math.hypot(px - ax, py - ay)
    u = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / norm))
    return math.hypot(px - (ax + u * dx), py - (ay + u * dy))


def test_random_walk_then_click_keeps_only_the_approach() -> None:
    rng = random.Random(7)
    m = MouseCoalescer()
    x, y = 500, 400
    moves = []
    for i in range(2000):  # 1 kHz for 2 s
        x += rng.choice((-3, -2, 2, 3))
        y += rng.choice((-3, -2, 2, 3))
        moves.append((T + i / 1000, x, y))
    emitted = [m.move(*mv) for mv in moves]
    assert emitted == [None] * len(moves)
    press_t = moves[-1][0] + 0.05
    path = m.press(press_t, x, y)
    assert isinstance(path, MousePathRecord)
    assert path.kind is PathKind.APPROACH
    points = path.points()
    assert points[0][0] >= to_ms(press_t - 1.0)
    assert points[-1][1:] == (x, y)
    assert path.dwell_ms == 50
    assert 2 <= path.samples < 1000  # resampled
    assert set(path.dt[:-1]) <= {30, 60, 90}  # every 30 ms (longer across a rest)
    assert m.release(press_t + 0.08, x, y) is None  # a click, not a drag


def test_drag_path_is_resampled_and_keeps_exact_end_points() -> None:
    m = MouseCoalescer(interval_ms=30)
    rng = random.Random(1)
    assert m.press(T, 10, 10) is None
    raw = [(to_ms(T), 10, 10)]
    for i in range(1, 1001):  # a quarter circle at 1 kHz, with 1 px jitter
        a = i / 1000 * math.pi / 2
        px = round(10 + 300 * math.sin(a)) + rng.choice((0, 1))
        py = round(310 - 300 * math.cos(a))
        raw.append((to_ms(T + i / 1000), px, py))
        assert m.move(T + i / 1000, px, py) is None
    path = m.release(T + 1.2, 311, 310)
    raw.append((to_ms(T + 1.2), 311, 310))
    assert isinstance(path, MousePathRecord)
    assert path.kind is PathKind.DRAG
    pts = path.points()
    assert pts[0] == (to_ms(T), 10, 10)
    assert pts[-1] == (to_ms(T + 1.2), 311, 310)
    assert path.dt[:33] == (30,) * 33  # the pointer moved the whole second
    assert path.samples < 50
    # A replay puts the pointer, at every reported instant, near where it was:
    # the arc bends less than a pixel between samples 30 ms apart, plus the
    # jitter; the worst is the abrupt stop at 470 px/s, which a replay eases
    # over the 30 ms around it.
    for t, x, y in raw:
        assert math.dist((x, y), _replayed(pts, t)) <= 4.0
    kept = [(x, y) for _, x, y in pts]
    for _, x, y in raw:
        assert min(_segment_distance((x, y), a, b) for a, b in itertools.pairwise(kept)) <= 2.0


def _replayed(samples: list[tuple[int, int, int]], t: int) -> tuple[float, float]:
    """Where a replay of the kept samples puts the pointer at ``t``: on the
    straight line between the samples around it, at constant speed."""
    for (t1, x1, y1), (t2, x2, y2) in itertools.pairwise(samples):
        if t1 <= t <= t2:
            f = 0.0 if t2 == t1 else (t - t1) / (t2 - t1)
            return x1 + f * (x2 - x1), y1 + f * (y2 - y1)
    raise AssertionError(f"{t} is outside the path")


def test_a_pointer_that_speeds_up_and_slows_down_is_kept_in_time() -> None:
    """A straight reach with a bell-shaped speed: the old shape-only
    simplification kept its two ends, and a replay was then 60 px off at the
    middle of the movement; the resampled path is where the hand was."""
    m = MouseCoalescer()
    raw = []
    for i in range(1, 401):  # 400 ms at 1 kHz, minimum-jerk from x=100 to x=500
        tau = i / 400
        x = round(100 + 400 * tau**3 * (10 - 15 * tau + 6 * tau * tau))
        raw.append((T + i / 1000, x, 300))
        m.move(*raw[-1])
    path = m.press(T + 0.5, 500, 300)
    assert isinstance(path, MousePathRecord)
    pts = path.points()
    assert len(pts) == 15  # 0.4 s every 30 ms: 14 samples, and the last move
    worst = max(math.dist((x, y), _replayed(pts, to_ms(t))) for t, x, y in raw)
    assert worst < 3.0


def test_hover_is_one_point_with_its_dwell() -> None:
    m = MouseCoalescer()
    for i in range(50):
        assert m.move(T + i / 1000, 100 + i, 100) is None
    rest_start = T + 0.049
    # Resting: a one-pixel tremble does not end the rest.
    assert m.move(rest_start + 0.3, 150, 100) is None
    hover = m.move(rest_start + 0.6, 170, 120)
    assert isinstance(hover, MousePathRecord)
    assert hover.kind is PathKind.HOVER
    assert hover.samples == 1
    assert (hover.x, hover.y) == (150, 100)
    assert abs(hover.dwell_ms - 600) <= 2  # the rest began when it came within the radius


def test_short_rest_is_not_a_hover() -> None:
    m = MouseCoalescer()
    m.move(T, 100, 100)
    assert m.move(T + 0.3, 200, 200) is None


def test_flush_reports_a_hover_in_progress_once() -> None:
    m = MouseCoalescer()
    m.move(T, 100, 100)
    assert m.flush(T + 0.2) is None
    hover = m.flush(T + 1.0)
    assert isinstance(hover, MousePathRecord)
    assert hover.dwell_ms == 1000
    assert m.flush(T + 1.1) is None


def test_press_without_recent_movement_has_no_approach() -> None:
    m = MouseCoalescer()
    m.move(T, 100, 100)
    assert m.press(T + 5, 100, 100) is None


def test_reset_forgets_a_drag() -> None:
    m = MouseCoalescer()
    m.press(T, 0, 0)
    m.move(T + 0.1, 50, 50)
    m.reset()
    assert m.release(T + 0.2, 60, 60) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 80), st.integers(-500, 500), st.integers(-500, 500)),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 100),
)
def test_resample_keeps_the_ends_and_the_positions_at_every_interval(
    steps: list[tuple[int, int, int]], interval: int
) -> None:
    pts, t = [], T
    for gap, x, y in steps:  # reports in time order, some at the same millisecond
        t += gap / 1000
        pts.append((t, x, y))
    reported = [(to_ms(t), x, y) for t, x, y in pts]
    out = resample(pts, interval)
    assert out[0] == reported[0]
    assert out[-1] == reported[-1]
    if len(pts) == 1:
        assert out == reported
    inner = out[1:-1]
    start = reported[0][0]
    assert all((s[0] - start) % interval == 0 and start < s[0] < reported[-1][0] for s in inner)
    assert [s[0] for s in out] == sorted(s[0] for s in out)
    for s in inner:  # each position is the interpolation between the reports around it
        before = [r for r in reported if r[0] <= s[0]][-1]
        after = next(r for r in reported if r[0] > s[0])
        f = (s[0] - before[0]) / (after[0] - before[0])
        assert abs(s[1] - (before[1] + f * (after[1] - before[1]))) <= 0.5 + 1e-9
        assert abs(s[2] - (before[2] + f * (after[2] - before[2]))) <= 0.5 + 1e-9
    # The middle of a rest is left out: no three kept samples in a row at one place
    # unless the interval between them was skipped.
    for a, b, c in zip(out, out[1:], out[2:], strict=False):
        assert not (a[1:] == b[1:] == c[1:]) or c[0] - a[0] > 2 * interval


def test_resample_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        resample([(T, 0, 0), (T + 1, 5, 5)], 0)
    with pytest.raises(ValueError, match="interval"):
        MouseCoalescer(interval_ms=-30)
