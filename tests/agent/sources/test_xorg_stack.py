"""RootStack fed by hand, as the X probe feeds it the root's events: no X server."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.events import Rect
from agent.sources._xorg_stack import (
    SHAPE_BOUNDING,
    SHAPE_CLIP,
    SHAPE_INPUT,
    RootStack,
    TopLevel,
)

SCREEN = Rect(0, 0, 1920, 1080)
DESK = TopLevel(1, SCREEN, mapped=True)
WORK = TopLevel(2, Rect(100, 100, 800, 600), mapped=True)
CHAT = TopLevel(3, Rect(500, 300, 400, 300), mapped=True)
#: Not a window the stack knows.
STRANGER = 99


def stack(*children: TopLevel) -> RootStack:
    s = RootStack()
    s.reset(list(children))
    return s


def top_id(s: RootStack, x: int, y: int) -> int | None:
    top = s.top_at(x, y)
    return None if top is None else top.window_id


def area(rects: list[Rect]) -> int:
    return sum(r.width * r.height for r in rects)


def holds(rects: list[Rect], x: int, y: int) -> bool:
    return any(r.contains(x, y) for r in rects)


# -- loading ------------------------------------------------------------------


def test_a_new_stack_is_dirty_until_the_tree_is_read() -> None:
    s = RootStack()
    assert s.dirty
    s.reset([DESK, WORK])
    assert not s.dirty
    assert s.order == [1, 2]


def test_top_at_finds_the_topmost_mapped_child_and_none_over_the_bare_root() -> None:
    s = stack(DESK, WORK, CHAT)
    assert top_id(s, 600, 400) == 3  # where chat overlaps work
    assert top_id(s, 150, 150) == 2
    assert top_id(s, 1800, 1000) == 1
    assert top_id(stack(WORK), 10, 10) is None


# -- the life of a window -----------------------------------------------------


def test_a_created_window_is_on_top_but_takes_nothing_until_mapped() -> None:
    s = stack(DESK, WORK)
    s.created(5, Rect(120, 120, 50, 50), 0, override_redirect=False)
    assert s.order == [1, 2, 5]
    assert top_id(s, 130, 130) == 2
    assert s.visible_part(5, Rect(120, 120, 50, 50)) is None
    s.mapped(5, override_redirect=False)
    assert top_id(s, 130, 130) == 5
    assert not s.dirty


def test_an_unmapped_window_lets_the_pointer_through_and_covers_nothing() -> None:
    s = stack(DESK, WORK, CHAT)
    s.unmapped(3)
    assert top_id(s, 600, 400) == 2
    assert s.visible_part(2, WORK.rect) == [WORK.rect]
    assert s.visible_part(3, CHAT.rect) is None


def test_a_destroyed_window_is_gone_from_the_stack() -> None:
    s = stack(DESK, WORK, CHAT)
    s.destroyed(3)
    assert s.order == [1, 2]
    assert 3 not in s.windows
    assert top_id(s, 600, 400) == 2
    assert not s.dirty


def test_a_window_created_again_with_a_known_id_replaces_the_old_one() -> None:
    s = stack(DESK, WORK, CHAT)
    s.created(2, Rect(0, 0, 10, 10), 0, override_redirect=False)
    assert s.order == [1, 3, 2]
    assert not s.windows[2].mapped


# -- stacking -----------------------------------------------------------------


def test_configured_above_sibling_zero_puts_the_window_at_the_bottom() -> None:
    s = stack(DESK, WORK, CHAT)
    s.configured(3, CHAT.rect, 0, 0, override_redirect=False)
    assert s.order == [3, 1, 2]
    assert top_id(s, 600, 400) == 2
    assert not s.dirty


def test_configured_above_a_known_sibling_puts_the_window_just_above_it() -> None:
    s = stack(DESK, WORK, CHAT)
    s.configured(3, CHAT.rect, 0, 1, override_redirect=False)
    assert s.order == [1, 3, 2]
    s.configured(1, SCREEN, 0, 2, override_redirect=False)
    assert s.order == [3, 2, 1]
    assert not s.dirty


def test_configured_takes_the_new_geometry() -> None:
    s = stack(DESK, WORK)
    s.configured(2, Rect(1000, 500, 300, 200), 2, 1, override_redirect=False)
    assert s.windows[2].rect == Rect(1000, 500, 300, 200)
    assert s.windows[2].border == 2
    assert top_id(s, 150, 150) == 1
    assert top_id(s, 1100, 600) == 2


def test_configured_above_an_unknown_sibling_marks_the_stack_dirty() -> None:
    s = stack(DESK, WORK, CHAT)
    s.configured(2, WORK.rect, 0, STRANGER, override_redirect=False)
    assert s.dirty


@pytest.mark.parametrize(
    ("on_top", "order"),
    [
        pytest.param(True, [1, 3, 2], id="raised to the top"),
        pytest.param(False, [2, 1, 3], id="lowered to the bottom"),
    ],
)
def test_circulated_moves_the_window_to_the_top_or_bottom(on_top: bool, order: list[int]) -> None:
    s = stack(DESK, WORK, CHAT)
    s.circulated(2, on_top=on_top)
    assert s.order == order
    assert not s.dirty


def test_a_gravity_notify_moves_the_window_and_keeps_its_size() -> None:
    s = stack(DESK, WORK)
    s.moved(2, 300, 250)
    assert s.windows[2].rect == Rect(300, 250, 800, 600)
    assert top_id(s, 150, 150) == 1
    assert top_id(s, 1050, 800) == 2
    assert not s.dirty


# -- reparenting --------------------------------------------------------------


def test_a_window_reparented_away_from_the_root_leaves_the_stack() -> None:
    s = stack(DESK, WORK, CHAT)
    s.reparented(3, to_root=False)
    assert s.order == [1, 2]
    assert top_id(s, 600, 400) == 2


def test_a_window_reparented_to_the_root_is_placed_on_top_and_the_tree_read_again() -> None:
    s = stack(DESK, WORK)
    s.reparented(7, to_root=True, rect=Rect(0, 0, 100, 100))
    assert s.order == [1, 2, 7]
    assert s.windows[7].rect == Rect(0, 0, 100, 100)
    # The event does not say whether it is mapped: the model is in doubt.
    assert s.dirty


# -- shapes -------------------------------------------------------------------

#: A 200x200 window at (300, 300) with a 100x100 hole in its middle: four bands.
RING = (
    Rect(0, 0, 200, 50),
    Rect(0, 150, 200, 50),
    Rect(0, 50, 50, 100),
    Rect(150, 50, 50, 100),
)


def test_a_point_in_a_bounding_shape_hole_falls_through_to_the_window_below() -> None:
    s = stack(DESK, WORK)
    s.created(4, Rect(300, 300, 200, 200), 0, override_redirect=False)
    s.mapped(4, override_redirect=False)
    s.shaped(4, SHAPE_BOUNDING, RING)
    assert top_id(s, 310, 310) == 4  # on the ring
    assert top_id(s, 400, 400) == 2  # in the hole: the work app below
    s.shaped(4, SHAPE_BOUNDING, None)  # unshaped again
    assert top_id(s, 400, 400) == 4


def test_a_bounding_shape_is_relative_to_the_origin_inside_the_border() -> None:
    s = stack(DESK)
    s.created(4, Rect(300, 300, 210, 210), 5, override_redirect=False)
    s.mapped(4, override_redirect=False)
    s.shaped(4, SHAPE_BOUNDING, (Rect(0, 0, 10, 10),))
    assert top_id(s, 305, 305) == 4
    assert top_id(s, 300, 300) == 1  # the border is outside that shape
    assert top_id(s, 315, 315) == 1


def test_an_input_shape_lets_the_pointer_through_where_it_leaves_a_point_out() -> None:
    s = stack(DESK, WORK)
    s.created(4, Rect(300, 300, 200, 200), 0, override_redirect=False)
    s.mapped(4, override_redirect=False)
    s.shaped(4, SHAPE_INPUT, (Rect(0, 0, 200, 20),))  # only its top strip takes input
    assert top_id(s, 350, 310) == 4
    assert top_id(s, 350, 400) == 2
    # The input shape does not change what it shows: it still covers the work app.
    visible = s.visible_part(2, WORK.rect)
    assert visible is not None
    assert not holds(visible, 350, 400)


def test_a_clip_shape_changes_nothing() -> None:
    s = stack(DESK, WORK)
    before = s.generation
    s.shaped(2, SHAPE_CLIP, (Rect(0, 0, 1, 1),))
    assert top_id(s, 500, 500) == 2
    assert s.generation == before


def test_a_window_shows_pixels_only_inside_its_bounding_shape() -> None:
    s = stack(DESK, WORK)
    s.shaped(2, SHAPE_BOUNDING, (Rect(0, 0, 100, 100),))
    assert s.visible_part(2, WORK.rect) == [Rect(100, 100, 100, 100)]


def test_covering_ignores_the_shape_of_the_window_above() -> None:
    # Conservative: a see-through part of a window above still hides the one below.
    s = stack(DESK, WORK)
    s.created(4, Rect(300, 300, 200, 200), 0, override_redirect=False)
    s.mapped(4, override_redirect=False)
    s.shaped(4, SHAPE_BOUNDING, RING)
    visible = s.visible_part(2, WORK.rect)
    assert visible is not None
    assert not holds(visible, 400, 400)
    assert area(visible) == 800 * 600 - 200 * 200


# -- popups -------------------------------------------------------------------


def test_an_override_redirect_popup_takes_the_pointer_and_covers_the_window_below() -> None:
    s = stack(DESK, WORK)
    s.created(6, Rect(200, 200, 150, 300), 0, override_redirect=True)
    s.mapped(6, override_redirect=True)
    popup = s.top_at(250, 250)
    assert popup is not None
    assert popup.window_id == 6
    assert popup.override_redirect
    visible = s.visible_part(2, WORK.rect)
    assert visible is not None
    assert not holds(visible, 250, 250)
    assert area(visible) == 800 * 600 - 150 * 300


# -- visible_part -------------------------------------------------------------


def test_visible_part_leaves_out_every_window_above_whoever_owns_it() -> None:
    # The model knows nothing of processes: a window of the same program
    # ('My Bank' next to 'Work') covers like any other.
    s = stack(DESK, WORK, CHAT)
    visible = s.visible_part(2, WORK.rect)
    assert visible is not None
    assert area(visible) == 800 * 600 - 400 * 300
    assert not holds(visible, 600, 400)
    assert holds(visible, 150, 150)


def test_visible_part_is_clipped_to_the_area_asked_about() -> None:
    s = stack(DESK, WORK)
    assert s.visible_part(2, Rect(0, 0, 200, 200)) == [Rect(100, 100, 100, 100)]


def test_visible_part_is_empty_when_the_window_is_wholly_covered() -> None:
    s = stack(DESK, CHAT, WORK)
    assert s.visible_part(3, CHAT.rect) == []


def test_windows_below_do_not_cover() -> None:
    s = stack(DESK, WORK, CHAT)
    assert s.visible_part(3, CHAT.rect) == [CHAT.rect]


def test_visible_part_of_an_unknown_window_is_none() -> None:
    assert stack(DESK, WORK).visible_part(STRANGER, SCREEN) is None


# -- generation and dirt ------------------------------------------------------

CHANGES: list[tuple[str, Callable[[RootStack], None]]] = [
    ("created", lambda s: s.created(8, Rect(0, 0, 5, 5), 0, override_redirect=False)),
    ("destroyed", lambda s: s.destroyed(3)),
    ("mapped", lambda s: s.mapped(3, override_redirect=False)),
    ("unmapped", lambda s: s.unmapped(3)),
    ("configured", lambda s: s.configured(3, CHAT.rect, 0, 0, override_redirect=False)),
    ("circulated", lambda s: s.circulated(3, on_top=False)),
    ("moved", lambda s: s.moved(3, 0, 0)),
    ("reparented away", lambda s: s.reparented(3, to_root=False)),
    ("reparented here", lambda s: s.reparented(8, to_root=True, rect=Rect(0, 0, 5, 5))),
    ("bounding shape", lambda s: s.shaped(3, SHAPE_BOUNDING, (Rect(0, 0, 1, 1),))),
    ("input shape", lambda s: s.shaped(3, SHAPE_INPUT, (Rect(0, 0, 1, 1),))),
    ("reset", lambda s: s.reset([DESK, WORK])),
]


@pytest.mark.parametrize("change", [c for _, c in CHANGES], ids=[name for name, _ in CHANGES])
def test_generation_grows_on_every_change(change: Callable[[RootStack], None]) -> None:
    s = stack(DESK, WORK, CHAT)
    before = s.generation
    change(s)
    assert s.generation > before


UNKNOWN: list[tuple[str, Callable[[RootStack], None]]] = [
    ("mapped", lambda s: s.mapped(STRANGER, override_redirect=False)),
    ("unmapped", lambda s: s.unmapped(STRANGER)),
    ("configured", lambda s: s.configured(STRANGER, SCREEN, 0, 0, override_redirect=False)),
    ("circulated", lambda s: s.circulated(STRANGER, on_top=True)),
    ("moved", lambda s: s.moved(STRANGER, 0, 0)),
    ("bounding shape", lambda s: s.shaped(STRANGER, SHAPE_BOUNDING, None)),
    ("input shape", lambda s: s.shaped(STRANGER, SHAPE_INPUT, None)),
]


@pytest.mark.parametrize("event", [e for _, e in UNKNOWN], ids=[name for name, _ in UNKNOWN])
def test_an_event_for_an_unknown_window_marks_the_stack_dirty_and_changes_nothing(
    event: Callable[[RootStack], None],
) -> None:
    s = stack(DESK, WORK, CHAT)
    order, windows = list(s.order), dict(s.windows)
    event(s)
    assert s.dirty
    assert s.order == order
    assert s.windows == windows


def test_a_fresh_read_of_the_tree_clears_the_dirt() -> None:
    s = stack(DESK, WORK)
    s.unmapped(STRANGER)
    s.reset([DESK, WORK])
    assert not s.dirty


# -- property: what visible_part answers is truly visible ---------------------

coord = st.integers(min_value=-50, max_value=400)
size = st.integers(min_value=0, max_value=300)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[Rect, ...] | None:
    """None (unshaped), or disjoint rectangles as the server lists them: one per
    vertical strip, each strip with a span of rows of its own."""
    if draw(st.booleans()):
        return None
    edges = sorted(draw(st.sets(st.integers(min_value=-20, max_value=320), max_size=5)))
    out = []
    for left, right in pairwise(edges):
        top = draw(st.integers(min_value=-20, max_value=320))
        out.append(Rect(left, top, right - left, draw(st.integers(min_value=1, max_value=200))))
    return tuple(out)


@st.composite
def toplevels(draw: st.DrawFn) -> list[TopLevel]:
    n = draw(st.integers(min_value=1, max_value=6))
    out = []
    for window_id in range(1, n + 1):
        rect = Rect(draw(coord), draw(coord), draw(size), draw(size))
        mapped = draw(st.booleans())
        out.append(TopLevel(window_id, rect, mapped=mapped, bounding=draw(shapes())))
    return out


@given(
    children=toplevels(),
    pick=st.integers(min_value=0, max_value=5),
    asked=st.builds(Rect, coord, coord, size, size),
    probes=st.lists(st.tuples(coord, coord), max_size=30),
)
def test_visible_part_is_disjoint_inside_the_area_and_shape_and_under_no_window_above(
    children: list[TopLevel],
    pick: int,
    asked: Rect,
    probes: list[tuple[int, int]],
) -> None:
    s = stack(*children)
    window = children[pick % len(children)]
    visible = s.visible_part(window.window_id, asked)
    if not window.mapped:
        assert visible is None
        return
    assert visible is not None
    above = [c for c in children[children.index(window) + 1 :] if c.mapped]
    for i, r in enumerate(visible):
        assert r.width > 0
        assert r.height > 0
        assert r.intersect(asked) == r
        assert r.intersect(window.rect) == r
        for later in visible[i + 1 :]:
            assert r.intersect(later) is None
        for higher in above:
            assert r.intersect(higher.rect) is None
    # Nothing visible was lost: a point of the window in the area that no
    # mapped window above holds is in the answer.
    ox, oy = window.rect.x, window.rect.y
    corners = [(r.x, r.y) for r in visible] + [(r.x + r.width - 1, r.y) for r in visible]
    for x, y in [*probes, *corners]:
        expected = (
            window.rect.contains(x, y)
            and (window.bounding is None or holds(list(window.bounding), x - ox, y - oy))
            and asked.contains(x, y)
            and not any(o.rect.contains(x, y) for o in above)
        )
        assert holds(visible, x, y) == expected
