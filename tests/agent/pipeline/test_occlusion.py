"""keep_visible: a grabbed frame keeps only the window's own visible pixels."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.events import Frame, Rect
from agent.pipeline.occlusion import keep_visible

BLACK = (0, 0, 0)


def painted(rect: Rect, width: int | None = None, height: int | None = None) -> Frame:
    """A frame of ``rect`` whose every pixel is a colour other than black."""
    width = rect.width if width is None else width
    height = rect.height if height is None else height
    rgb = bytearray()
    for row in range(height):
        for col in range(width):
            rgb += bytes((col % 250 + 1, row % 250 + 1, 200))
    return Frame(1.0, 7, rect, width, height, bytes(rgb), width / rect.width)


def pixel(frame: Frame, col: int, row: int) -> tuple[int, int, int]:
    i = (row * frame.width + col) * 3
    r, g, b = frame.rgb[i : i + 3]
    return (r, g, b)


def kept(before: Frame, after: Frame) -> set[tuple[int, int]]:
    """The pixels ``after`` still has from ``before`` (every other one must be black)."""
    out = set()
    for row in range(before.height):
        for col in range(before.width):
            now = pixel(after, col, row)
            if now == pixel(before, col, row):
                out.add((col, row))
            else:
                assert now == BLACK, (col, row, now)
    return out


def block(x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
    return {(c, r) for r in range(y0, y1) for c in range(x0, x1)}


FRAME_RECT = Rect(100, 50, 40, 30)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        pytest.param([], set(), id="nothing visible: all black"),
        pytest.param([Rect(0, 0, 10, 10)], set(), id="a rectangle off the frame"),
        pytest.param([Rect(100, 50, 20, 30)], block(0, 0, 20, 30), id="the left half"),
        pytest.param(
            [Rect(110, 60, 5, 4), Rect(130, 70, 10, 10)],
            block(10, 10, 15, 14) | block(30, 20, 40, 30),
            id="two pieces",
        ),
        pytest.param([Rect(90, 40, 15, 15)], block(0, 0, 5, 5), id="partly outside the frame"),
        pytest.param(
            [Rect(100, 50, 40, 10), Rect(100, 60, 40, 20)],
            block(0, 0, 40, 30),
            id="the whole frame in two rectangles",
        ),
    ],
)
def test_keeps_exactly_the_visible_rectangles_and_blacks_out_the_rest(
    visible: list[Rect], expected: set[tuple[int, int]]
) -> None:
    frame = painted(FRAME_RECT)
    assert kept(frame, keep_visible(frame, visible)) == expected


def test_a_hidpi_frame_keeps_two_pixels_per_point() -> None:
    frame = painted(FRAME_RECT, 80, 60)
    out = keep_visible(frame, [Rect(110, 60, 5, 4)])
    assert kept(frame, out) == block(20, 20, 30, 28)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        # At 1.5 pixels per point, screen x 101..103 is pixels 1.5..4.5: only
        # pixels 2 and 3 lie wholly inside it.
        pytest.param([Rect(101, 51, 2, 2)], block(2, 2, 4, 4), id="both edges inside a pixel"),
        pytest.param([Rect(100, 50, 1, 1)], block(0, 0, 1, 1), id="one point, one whole pixel"),
        pytest.param([Rect(100, 50, 2, 2)], block(0, 0, 3, 3), id="edges on pixel boundaries"),
    ],
)
def test_a_fractional_scale_rounds_inward(
    visible: list[Rect], expected: set[tuple[int, int]]
) -> None:
    frame = painted(FRAME_RECT, 60, 45)
    assert kept(frame, keep_visible(frame, visible)) == expected


def test_a_region_covering_the_whole_frame_returns_the_same_frame() -> None:
    frame = painted(FRAME_RECT)
    assert keep_visible(frame, [Rect(0, 0, 1920, 1080)]) is frame
    assert keep_visible(frame, [Rect(0, 0, 5, 5), FRAME_RECT]) is frame


def test_the_input_frame_is_not_modified() -> None:
    frame = painted(FRAME_RECT)
    copy = Frame(frame.t, frame.window_id, frame.rect, frame.width, frame.height, frame.rgb)
    out = keep_visible(frame, [Rect(110, 60, 5, 4)])
    assert out is not frame
    assert frame == copy
    assert (out.t, out.window_id, out.rect, out.width, out.height, out.scale) == (
        frame.t,
        frame.window_id,
        frame.rect,
        frame.width,
        frame.height,
        frame.scale,
    )


@st.composite
def regions(draw: st.DrawFn) -> list[Rect]:
    """Disjoint rectangles around a frame at (100, 50) of 40x30 points."""
    edges = sorted(draw(st.sets(st.integers(min_value=90, max_value=150), max_size=5)))
    out = []
    for left, right in pairwise(edges):
        top = draw(st.integers(min_value=40, max_value=85))
        out.append(Rect(left, top, right - left, draw(st.integers(min_value=1, max_value=40))))
    return out


@given(visible=regions(), pixels_per_point=st.sampled_from([1, 1.25, 1.5, 2]))
def test_a_pixel_is_kept_only_if_it_lies_wholly_in_a_visible_rectangle(
    visible: list[Rect], pixels_per_point: float
) -> None:
    frame = painted(
        FRAME_RECT,
        int(FRAME_RECT.width * pixels_per_point),
        int(FRAME_RECT.height * pixels_per_point),
    )
    sx = Fraction(frame.width, FRAME_RECT.width)
    sy = Fraction(frame.height, FRAME_RECT.height)

    def whole_pixels(start: int, length: int, origin: int, scale: Fraction, n: int) -> range:
        """The pixels along one axis whose footprint lies wholly in [start, start + length)."""
        first = next((i for i in range(n) if origin + i / scale >= start), n)
        last = next((i for i in range(n) if origin + (i + 1) / scale > start + length), n)
        return range(first, last)

    expected = {
        (col, row)
        for r in visible
        for row in whole_pixels(r.y, r.height, FRAME_RECT.y, sy, frame.height)
        for col in whole_pixels(r.x, r.width, FRAME_RECT.x, sx, frame.width)
    }
    assert kept(frame, keep_visible(frame, visible)) == expected
