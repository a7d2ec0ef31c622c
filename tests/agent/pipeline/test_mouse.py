from __future__ import annotations

import itertools
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from agent.pipeline.mouse import MouseCoalescer, simplify
from agent.pipeline.records import MousePathRecord, PathKind, to_ms

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
    assert 2 <= path.samples < 1000  # simplified
    assert m.release(press_t + 0.08, x, y) is None  # a click, not a drag


def test_drag_path_is_simplified_and_keeps_exact_end_points() -> None:
    m = MouseCoalescer(tolerance_px=2.0)
    rng = random.Random(1)
    assert m.press(T, 10, 10) is None
    raw = [(10, 10)]
    for i in range(1, 1001):  # a quarter circle, with 1 px jitter
        a = i / 1000 * math.pi / 2
        px = round(10 + 300 * math.sin(a)) + rng.choice((0, 1))
        py = round(310 - 300 * math.cos(a))
        raw.append((px, py))
        assert m.move(T + i / 1000, px, py) is None
    path = m.release(T + 1.2, 311, 310)
    raw.append((311, 310))
    assert isinstance(path, MousePathRecord)
    assert path.kind is PathKind.DRAG
    pts = path.points()
    assert pts[0] == (to_ms(T), 10, 10)
    assert pts[-1] == (to_ms(T + 1.2), 311, 310)
    assert path.samples < 60
    kept = [(x, y) for _, x, y in pts]
    for p in raw:
        best = min(_segment_distance(p, a, b) for a, b in itertools.pairwise(kept))
        assert best <= 2.0 + 1e-9


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


@given(st.lists(st.tuples(st.integers(-500, 500), st.integers(-500, 500)), min_size=1, max_size=80))
def test_simplify_keeps_end_points_and_stays_within_tolerance(xy: list[tuple[int, int]]) -> None:
    pts = [(float(i), x, y) for i, (x, y) in enumerate(xy)]
    out = simplify(pts, 2.0)
    assert out[0] == pts[0]
    assert out[-1] == pts[-1]
    assert all(p in pts for p in out)
    kept = [(x, y) for _, x, y in out]
    if len(kept) > 1:
        for _, x, y in pts:
            assert (
                min(_segment_distance((x, y), a, b) for a, b in itertools.pairwise(kept))
                <= 2.0 + 1e-9
            )
