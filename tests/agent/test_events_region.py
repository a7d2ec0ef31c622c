"""Regions as lists of disjoint rectangles: ``subtract`` and ``intersect_region``."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.events import Rect, intersect_region, subtract

coord = st.integers(min_value=-40, max_value=120)
size = st.integers(min_value=0, max_value=100)
rects = st.builds(Rect, coord, coord, size, size)
points = st.lists(st.tuples(coord, coord), max_size=40)


@st.composite
def regions(draw: st.DrawFn) -> list[Rect]:
    """Disjoint rectangles: one per vertical strip, each over rows of its own."""
    edges = sorted(draw(st.sets(st.integers(min_value=-40, max_value=160), max_size=6)))
    out = []
    for left, right in pairwise(edges):
        top = draw(coord)
        out.append(Rect(left, top, right - left, draw(st.integers(min_value=1, max_value=100))))
    return out


def area(region: list[Rect]) -> int:
    return sum(r.width * r.height for r in region)


def holds(region: list[Rect], x: int, y: int) -> bool:
    return any(r.contains(x, y) for r in region)


def overlap(region: list[Rect], hole: Rect) -> int:
    return sum(part.width * part.height for r in region if (part := r.intersect(hole)))


def assert_disjoint_and_not_empty(region: list[Rect]) -> None:
    for i, r in enumerate(region):
        assert r.width > 0
        assert r.height > 0
        for other in region[i + 1 :]:
            assert r.intersect(other) is None, (r, other)


def corners(region: list[Rect]) -> list[tuple[int, int]]:
    return [
        (x, y)
        for r in region
        for x in (r.x - 1, r.x, r.x + r.width - 1, r.x + r.width)
        for y in (r.y - 1, r.y, r.y + r.height - 1, r.y + r.height)
    ]


# -- subtract -----------------------------------------------------------------


@given(region=regions(), hole=rects, probes=points)
def test_subtract_leaves_disjoint_rectangles_with_exactly_the_hole_taken_out(
    region: list[Rect], hole: Rect, probes: list[tuple[int, int]]
) -> None:
    out = subtract(region, hole)
    assert_disjoint_and_not_empty(out)
    assert area(out) == area(region) - overlap(region, hole)
    for x, y in [*probes, *corners(region), *corners([hole])]:
        assert holds(out, x, y) == (holds(region, x, y) and not hole.contains(x, y))


@given(region=regions(), hole=rects)
def test_no_point_inside_the_hole_is_left(region: list[Rect], hole: Rect) -> None:
    out = subtract(region, hole)
    assert all(r.intersect(hole) is None for r in out)


@given(region=regions(), holes=st.lists(rects, max_size=5))
def test_subtracting_several_holes_in_turn_stays_disjoint_and_in_the_region(
    region: list[Rect], holes: list[Rect]
) -> None:
    out = region
    for hole in holes:
        out = subtract(out, hole)
    assert_disjoint_and_not_empty(out)
    for r in out:
        assert any(r.intersect(s) == r for s in region)
        assert all(r.intersect(h) is None for h in holes)


@pytest.mark.parametrize(
    ("hole", "left"),
    [
        pytest.param(Rect(200, 200, 5, 5), 100 * 100, id="apart"),
        pytest.param(Rect(-10, -10, 200, 200), 0, id="covers it all"),
        pytest.param(Rect(40, 40, 20, 20), 100 * 100 - 400, id="in the middle"),
        pytest.param(Rect(100, 0, 10, 100), 100 * 100, id="touching the right edge"),
        pytest.param(Rect(0, 0, 100, 50), 100 * 50, id="the top half"),
        pytest.param(Rect(50, 50, 0, 0), 100 * 100, id="empty hole"),
    ],
)
def test_subtract_named_cases(hole: Rect, left: int) -> None:
    square = Rect(0, 0, 100, 100)
    out = subtract([square], hole)
    assert_disjoint_and_not_empty(out)
    assert area(out) == left


def test_subtract_does_not_change_its_input() -> None:
    region = [Rect(0, 0, 10, 10)]
    subtract(region, Rect(2, 2, 2, 2))
    assert region == [Rect(0, 0, 10, 10)]


# -- intersect_region ---------------------------------------------------------


@given(a=regions(), b=regions(), probes=points)
def test_intersect_region_keeps_exactly_the_points_in_both(
    a: list[Rect], b: list[Rect], probes: list[tuple[int, int]]
) -> None:
    out = intersect_region(a, b)
    assert_disjoint_and_not_empty(out)
    for x, y in [*probes, *corners(a), *corners(b)]:
        assert holds(out, x, y) == (holds(a, x, y) and holds(b, x, y))


@given(a=regions(), b=regions())
def test_intersect_region_area_is_the_sum_of_pairwise_overlaps_and_symmetric(
    a: list[Rect], b: list[Rect]
) -> None:
    out = intersect_region(a, b)
    assert area(out) == sum(overlap(a, r) for r in b)
    assert area(out) == area(intersect_region(b, a))
    assert area(out) <= min(area(a), area(b))


@given(region=regions())
def test_a_region_intersected_with_itself_is_itself(region: list[Rect]) -> None:
    assert area(intersect_region(region, region)) == area(region)
    assert intersect_region(region, []) == []
    assert intersect_region([], region) == []


@given(region=regions(), hole=rects)
def test_subtract_then_intersect_with_the_hole_is_empty(region: list[Rect], hole: Rect) -> None:
    assert intersect_region(subtract(region, hole), [hole]) == []


@given(r=rects, dx=coord, dy=coord)
def test_translated_moves_without_resizing(r: Rect, dx: int, dy: int) -> None:
    moved = r.translated(dx, dy)
    assert (moved.x, moved.y, moved.width, moved.height) == (r.x + dx, r.y + dy, r.width, r.height)
