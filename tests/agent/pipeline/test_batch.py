from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from itertools import count
from typing import Any
from unittest import mock

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.batcher import Batcher
from overt.wire import body as batch_module
from overt.wire.batch import BatchHeader, SignalCounts
from overt.wire.body import _SCHEMAS, BODY_FORMAT, BODY_MAGIC, ZSTD_LEVEL, decode_body, encode_body
from overt.wire.errors import BodyFormatError, HeaderFormatError
from overt.wire.errors import FormatError as PipelineError
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    MarkerKind,
    MarkerRecord,
    MousePathRecord,
    PathKind,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
    TitleState,
)

T_MS = 1_800_000_000_000
T = T_MS / 1000

ints = st.integers(-(2**31), 2**31)
times = st.integers(0, 2**50)
small = st.integers(-(2**15), 2**15)
text = st.text(max_size=40)
coords = st.lists(small, max_size=30).map(tuple)


@st.composite
def paths(draw: st.DrawFn) -> MousePathRecord:
    n = draw(st.integers(0, 30))
    vals = st.lists(small, min_size=n, max_size=n).map(tuple)
    return MousePathRecord(
        draw(times),
        draw(st.sampled_from(PathKind)),
        draw(ints),
        draw(ints),
        draw(vals),
        draw(vals),
        draw(vals),
        draw(st.integers(0, 10**6)),
    )


records = st.one_of(
    st.builds(
        ContextRecord,
        times,
        text,
        st.none() | text,
        st.sampled_from(TitleState),
        ints,
        ints,
        ints,
        ints,
        st.floats(allow_nan=False),
    ),
    st.builds(
        ClickRecord, times, st.sampled_from(["left", "right", "x1"]), st.booleans(), ints, ints
    ),
    st.builds(ScrollRecord, times, ints, ints, small, small),
    paths(),
    st.builds(TextSpanRecord, times, times, text, st.integers(0, 100)),
    st.builds(ShortcutRecord, times, text),
    st.builds(KeyTimingRecord, times, st.booleans()),
    st.builds(
        ScreenshotRecord,
        times,
        st.sampled_from(ScreenshotKind),
        text,
        ints,
        ints,
        ints,
        ints,
        st.none() | text,
        st.integers(0, 256),
        st.integers(0, 16),
        st.lists(st.tuples(small, small), max_size=20).map(tuple),
    ),
    st.builds(MarkerRecord, times, st.sampled_from(MarkerKind), text, st.integers(0, 10**9)),
)


@settings(max_examples=200)
@given(st.lists(records, max_size=40), st.dictionaries(text, st.binary(max_size=64), max_size=4))
def test_body_round_trips_exactly(recs: list[Record], images: dict[str, bytes]) -> None:
    body = encode_body(recs, images)
    out, out_images = decode_body(body)
    assert out == recs
    assert [type(r) for r in out] == [type(r) for r in recs]
    assert out_images == images


def test_empty_body_round_trips() -> None:
    assert decode_body(encode_body([], {})) == ([], {})


def test_image_blobs_are_stored_as_is() -> None:
    blob = b"RIFF\x00\x00\x00\x00WEBPfake-image-bytes"
    body = encode_body([], {"abc": blob})
    assert body.endswith(blob)


SAMPLE: list[Record] = [
    ContextRecord(T_MS, "editor", "doc", TitleState.KEPT, 0, 0, 800, 600, 1.0),
    ClickRecord(T_MS + 5, "left", True, 10, 20),
    TextSpanRecord(T_MS + 10, T_MS + 900, "hello", 0),
]


def _body(
    manifest: dict[str, object], columns: bytes, version: int = BODY_FORMAT, after: bytes = b""
) -> bytes:
    """A body put together by hand, to say exactly what is wrong with it;
    ``after`` follows the frame (a pointer stream)."""
    mbytes = json.dumps(manifest).encode()
    frame = zstandard.ZstdCompressor().compress(struct.pack("<I", len(mbytes)) + mbytes + columns)
    return BODY_MAGIC + bytes([version]) + struct.pack("<I", len(frame)) + frame + after


def _v2(records: int, columns: bytes) -> bytes:
    return _body({"records": records, "strings": [], "images": []}, columns, version=2)


def _v3(records: int, columns: bytes) -> bytes:
    return _body({"records": records, "strings": [], "images": []}, columns, version=3)


def _paths_v3(count: int, stream: bytes, declared: int | None = None, version: int = 3) -> bytes:
    """A format-3 (or ``version``) body of ``count`` path records: the order
    column, the pointer stream's tag and length (``declared``, if given), and
    the stream after the frame."""
    length = len(stream) if declared is None else declared
    columns = bytes([0] + [3] * count) + bytes([3, length])
    return _body({"records": count, "strings": [], "images": []}, columns, version, stream)


def _bits(*fields: str) -> bytes:
    """Bits written as strings of 0 and 1, padded with zeros to whole bytes."""
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


# The pointer stream of one hover at t=5, (1, 2), dwell 3: kind 0; samples less
# one: sign 0, k=0 ("1"), value 0 ("1"); t, x, y, dwell: sign 0, k=0, the value
# at order 0 (5 = "00110", 1 = "010", 2 = "011", 3 = "00100").
_HOVER = _bits("0", "011", "0100110", "01010", "01011", "0100100")


# A keytiming record (kind 6): order column, then its t and pressed columns;
# each column is a tag (0 unsigned, 1 zigzag, 2 f64) and its values.
_TIMING = bytes([0, 6]) + bytes([0, 5]) + bytes([0, 1])


def _corrupt_cases() -> list[tuple[str, bytes]]:
    good = encode_body(SAMPLE, {"img": b"x" * 10})
    frame_len = struct.unpack_from("<I", good, 5)[0]
    flipped = bytearray(good)
    flipped[9 + frame_len // 2] ^= 0xFF
    bad_manifest = zstandard.ZstdCompressor().compress(struct.pack("<I", 5) + b"{nope")
    assert decode_body(_v2(1, _TIMING))[0] == [KeyTimingRecord(5, True)]
    hover = MousePathRecord(5, PathKind.HOVER, 1, 2, (), (), (), 3)
    assert decode_body(_paths_v3(1, _HOVER))[0] == [hover]
    return [
        ("empty", b""),
        ("bad magic", b"NOPE" + good[4:]),
        ("unknown version", good[:4] + bytes([BODY_FORMAT + 1]) + good[5:]),
        ("version 0", good[:4] + bytes([0]) + good[5:]),
        ("truncated frame", good[:20]),
        ("truncated image", good[:-3]),
        ("trailing bytes", good + b"!"),
        ("flipped byte in frame", bytes(flipped)),
        (
            "manifest not json",
            BODY_MAGIC + b"\x02" + struct.pack("<I", len(bad_manifest)) + bad_manifest,
        ),
        ("record count missing", _body({"strings": [], "images": []}, _TIMING)),
        ("record count not an integer", _v2("1", _TIMING)),  # type: ignore[arg-type]
        ("a column missing", _v2(1, _TIMING[:-2])),
        ("a column too short", _v2(2, bytes([0, 6, 6]) + _TIMING[2:])),
        ("unknown column tag", _v2(1, _TIMING[:2] + bytes([7, 5]) + _TIMING[4:])),
        ("varint cut off", _v2(1, _TIMING[:2] + bytes([0, 0x85]))),
        (
            "varint over 64 bits",
            _v2(1, _TIMING[:2] + bytes([0]) + b"\xff" * 9 + b"\x01" + _TIMING[4:]),
        ),
        ("unknown record kind", _v2(1, bytes([0, len(_SCHEMAS)]))),
        ("boolean out of range", _v2(1, _TIMING[:-1] + bytes([2]))),
        ("trailing bytes after the columns", _v2(1, _TIMING + bytes([0]))),
        # A context record: t, app_id, title, title_state, x, y, width, height, then scale.
        ("f64 column cut off", _v2(1, bytes([0, 0]) + bytes([0, 1] + [0, 0] * 7 + [2, 1]))),
        (
            "negative tuple length",
            _v2(1, bytes([0, 3]) + bytes([0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])),
        ),
        ("pointer stream missing", _v3(1, bytes([0, 3]))),
        ("path columns where the pointer stream belongs", _v3(1, bytes([0, 3]) + bytes(16))),
        ("pointer stream cut off", _paths_v3(1, _HOVER, declared=len(_HOVER) + 1)),
        ("pointer stream shorter than its records", _paths_v3(1, _HOVER[:-1])),
        ("pointer stream padding not zero", _paths_v3(1, _HOVER[:-1] + bytes([_HOVER[-1] | 1]))),
        ("pointer stream longer than its records", _paths_v3(1, _HOVER + bytes([0]))),
        (  # a hover of 2**20 samples, starting at 0 with no dwell, and its steps missing
            "more samples than the stream holds",
            _paths_v3(1, _bits("0", "01", "0" * 20 + "1" + "1" * 20, "011" * 4, "01")),
        ),
        ("an Exp-Golomb code over 64 bits", _paths_v3(1, _bits("0", "0" * 80))),
        ("an Exp-Golomb order over 64", _paths_v3(1, _bits("0", "0", "0000001000010") + bytes(8))),
        ("a negative sample count", _paths_v3(1, _bits("0", "1", "1", "010") + bytes(8))),
    ]


@pytest.mark.parametrize(("name", "data"), _corrupt_cases(), ids=[c[0] for c in _corrupt_cases()])
def test_corrupt_body_is_a_clear_error(name: str, data: bytes) -> None:
    with pytest.raises(BodyFormatError) as info:
        decode_body(data)
    assert isinstance(info.value, PipelineError)
    assert str(info.value)


def _drag_stream(mode: int, *steps: list[int]) -> bytes:
    """A format-4 pointer stream of one drag from (0, 0) at t=0 with no dwell,
    its steps in ``mode`` (0 raw, 1 predicted) given column by column."""
    w = batch_module._BitWriter()
    w.write(0b11, 2)
    for values in ([len(steps[-1])], [0], [0], [0], [0]):  # samples less one, t, x, y, dwell
        batch_module._write_pointer_column(w, values)
    w.write(mode, 1)
    for values in steps:
        batch_module._write_pointer_column(w, values)
    return w.getvalue()


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        (  # 2**62, then predicted 2**62 again plus 2**62: beyond 64 bits
            "a predicted step beyond 64 bits",
            _drag_stream(1, [1], [0, 0, 0], [2**62, 2**62, 0], [0, 0, 0]),
        ),
        ("a period beyond 64 bits", _drag_stream(1, [2**63 - 1], [0, 9], [0, 0], [0, 0])),
        ("predicted steps cut off", _drag_stream(1, [30], [0, 0])[:-1]),
        ("raw steps cut off", _drag_stream(0, [30, 30], [1, 1])),
    ],
)
def test_a_corrupt_format_4_pointer_stream_is_a_clear_error(name: str, stream: bytes) -> None:
    with pytest.raises(BodyFormatError):
        decode_body(_paths_v3(1, stream, version=4))


def test_a_format_4_stream_that_predicts_sanely_decodes() -> None:
    """The streams above are wrong only where they say they are."""
    stream = _drag_stream(1, [30], [0, 0, -20], [10, 10, -2], [0, -2, 0])
    expected = MousePathRecord(0, PathKind.DRAG, 0, 0, (30, 30, 10), (10, 20, 5), (0, -2, -1), 0)
    assert decode_body(_paths_v3(1, stream, version=4))[0] == [expected]


def test_unknown_version_says_so() -> None:
    good = encode_body(SAMPLE, {})
    with pytest.raises(BodyFormatError, match="unknown batch body format 5"):
        decode_body(good[:4] + bytes([5]) + good[5:])


def test_bodies_are_written_in_format_4() -> None:
    assert encode_body(SAMPLE, {})[4] == BODY_FORMAT == 4


def test_integers_beyond_64_bits_are_refused() -> None:
    with pytest.raises(PipelineError):
        encode_body([ClickRecord(2**70, "left", True, 0, 0)], {})


def test_path_starts_whose_difference_overflows_64_bits_are_refused() -> None:
    far = [
        MousePathRecord(T_MS, PathKind.HOVER, 2**62, 0, (), (), (), 0),
        MousePathRecord(T_MS, PathKind.HOVER, -(2**62) - 1, 0, (), (), (), 0),
    ]
    with pytest.raises(PipelineError):
        encode_body(far, {})


def _leb128_columns(body: bytes, counts: list[int]) -> list[tuple[int, list[int]]]:
    """The first columns of a format-3 body as (tag, values), ``counts[i]`` values each."""
    frame = zstandard.ZstdDecompressor().decompress(body[9:])
    (m,) = struct.unpack_from("<I", frame)
    data, pos, out = frame[4 + m :], 0, []
    for n in counts:
        tag, values = data[pos], list[int]()
        pos += 1
        while len(values) < n:
            acc = shift = 0
            while data[pos] & 0x80:
                acc |= (data[pos] & 0x7F) << shift
                shift += 7
                pos += 1
            acc |= data[pos] << shift
            pos += 1
            values.append(acc if tag == 0 else (acc >> 1) ^ -(acc & 1))
        out.append((tag, values))
    return out


def _pointer_columns(body: bytes) -> tuple[list[str], dict[str, tuple[int, list[int]]]]:
    """The path kinds and the columns (sign bit, values) of a format-4 body that
    holds only path records, read as the module docstring describes them; the
    step columns are ``dt``, ``dx``, ``dy`` when they are raw (``mode`` 0) and
    ``period``, ``dt-period``, ``dx-predicted``, ``dy-predicted`` when they
    are predicted (``mode`` 1)."""
    section, after = _unframe(body)
    (m,) = struct.unpack_from("<I", section)
    count = json.loads(section[4 : 4 + m])["records"]
    data = section[4 + m :]
    assert data[: 1 + count] == bytes([0] + [3] * count)  # the order column: all paths
    assert data[1 + count :] == bytes([3, len(after)])  # the stream's tag and length ...
    bits = "".join(f"{b:08b}" for b in after)  # ... and the stream, after the frame
    pos = 0

    def take(n: int) -> str:
        nonlocal pos
        pos += n
        return bits[pos - n : pos]

    def exp_golomb(k: int) -> int:
        zeros = len(bits[pos:]) - len(bits[pos:].lstrip("0"))
        take(zeros)
        return int(take(zeros + k + 1), 2) - (1 << k)

    def column(n: int) -> tuple[int, list[int]]:
        if n == 0:
            return (0, [])
        sign = int(take(1))
        k = exp_golomb(0)
        values = [exp_golomb(k) for _ in range(n)]
        return sign, [(u >> 1) ^ -(u & 1) for u in values] if sign else values

    kinds = [
        "hover" if take(1) == "0" else "approach" if take(1) == "0" else "drag"
        for _ in range(count)
    ]
    cols = {"samples": column(count)}
    for name in ("t1", "x1", "y1"):
        cols[name] = column(1)
    for name in ("t", "x", "y"):
        cols[name] = column(count - 1)
    cols["dwell"] = column(count)
    steps = sum(cols["samples"][1])
    if steps:
        mode = int(take(1))
        cols["mode"] = (0, [mode])
        if mode:
            cols["period"] = column(1)
        names = ("dt-period", "dx-predicted", "dy-predicted") if mode else ("dt", "dx", "dy")
        for name in names:
            cols[name] = column(steps)
    assert set(bits[pos:]) <= {"0"}  # zero padding ...
    assert len(bits) - pos < 8  # ... to a whole byte
    return kinds, cols


def test_a_path_starts_from_where_and_when_the_last_one_stopped() -> None:
    """The pointer stream codes a path's first sample from the previous path's
    last sample (its time plus the dwell): a hover where an approach ended, an
    approach from where the hover was, cost a few bits each."""
    approach = MousePathRecord(T_MS, PathKind.APPROACH, 512, 384, (90, 80), (40, 31), (-60, -7), 70)
    hover = MousePathRecord(T_MS + 240, PathKind.HOVER, 583, 317, (), (), (), 4000)
    after = MousePathRecord(T_MS + 4240, PathKind.APPROACH, 583, 317, (75,), (120,), (3,), 20)
    body = encode_body([approach, hover, after], {})
    assert decode_body(body)[0] == [approach, hover, after]
    kinds, cols = _pointer_columns(body)
    assert kinds == ["approach", "hover", "approach"]
    assert cols["samples"] == (0, [2, 0, 1])
    assert (cols["t1"], cols["x1"], cols["y1"]) == ((0, [T_MS]), (0, [512]), (0, [384]))
    assert cols["t"] == cols["x"] == cols["y"] == (0, [0, 0])  # sign 0: none negative
    assert cols["dwell"] == (0, [70, 4000, 20])
    assert cols["mode"] == (0, [0])  # three irregular steps: predicting them does not pay
    assert cols["dt"] == (0, [90, 80, 75])
    assert cols["dx"] == (0, [40, 31, 120])
    assert cols["dy"] == (1, [-60, -7, 3])


def test_regular_steps_are_coded_as_what_their_prediction_missed() -> None:
    """A resampled path: steps every 30 ms and a last, shorter one. The times
    cost a bit each (less the period), the steps what the pointer's
    acceleration did not foretell."""
    dx = (10, 20, 28, 33, 35, 34, 12)
    dy = (0, -2, -4, -5, -5, -4, -1)
    dt = (30, 30, 30, 30, 30, 30, 10)
    drag = MousePathRecord(T_MS, PathKind.DRAG, 100, 200, dt, dx, dy, 0)
    body = encode_body([drag], {})
    assert decode_body(body)[0] == [drag]
    _kinds, cols = _pointer_columns(body)
    assert cols["mode"] == (0, [1])
    assert cols["period"] == (0, [30])
    assert cols["dt-period"] == (1, [0, 0, 0, 0, 0, 0, -20])
    # first step: as is; second: the first again (no acceleration known yet);
    # then 2 * last - the one before; the last, 10 ms step: 34 scaled to 10/30.
    assert cols["dx-predicted"] == (1, [10, 10, -2, -3, -3, -3, 1])
    assert cols["dy-predicted"] == (1, [0, -2, 0, 1, 1, 1, 0])
    raw = MousePathRecord(T_MS, PathKind.DRAG, 100, 200, dt, dx, dy, 0)
    assert len(body) < len(_format_3_body([raw]))


def _pointer_stream_v3(paths: list[MousePathRecord]) -> bytes:
    """The format-3 pointer stream: format 4's without the mode bit, steps raw."""
    w = batch_module._BitWriter()
    for p in paths:
        code = batch_module._POINTER_KINDS.index(p.kind)
        w.write((0, 0b10, 0b11)[code], min(2, code + 1))
    starts = batch_module._chain(paths)
    columns: list[list[int]] = [[len(p.dt) for p in paths]]
    columns += [starts[name][:1] for name in ("t", "x", "y")]
    columns += [starts[name][1:] for name in ("t", "x", "y")]
    columns.append([p.dwell_ms for p in paths])
    for name in ("dt", "dx", "dy"):
        columns.append([v for p in paths for v in getattr(p, name)])
    for values in columns:
        batch_module._write_pointer_column(w, values)
    return w.getvalue()


def _format_3_body(records: list[Record], images: dict[str, bytes] | None = None) -> bytes:
    """A body as the format-3 encoder wrote it (commit 5e4684b): the container
    of format 4 with the format-3 pointer stream."""
    with (
        mock.patch.object(batch_module, "BODY_FORMAT", 3),
        mock.patch.object(batch_module, "_pointer_stream", _pointer_stream_v3),
    ):
        return encode_body(records, images or {})


@st.composite
def wide_paths(draw: st.DrawFn) -> list[MousePathRecord]:
    """Paths with values across the 64-bit range, whose anchor differences
    still fit in 64 bits (anything else is refused, see above)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(0, 8))
        steps = st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n).map(tuple)
        out.append(
            MousePathRecord(
                draw(st.integers(-(2**60), 2**60)),
                draw(st.sampled_from(PathKind)),
                draw(st.integers(-(2**60), 2**60)),
                draw(st.integers(-(2**60), 2**60)),
                draw(steps),
                draw(steps),
                draw(steps),
                draw(st.integers(0, 2**40)),
            )
        )
    return out


@settings(max_examples=200)
@given(wide_paths())
def test_the_pointer_stream_round_trips_wide_values(paths: list[MousePathRecord]) -> None:
    assert decode_body(encode_body(paths, {}))[0] == paths


@settings(max_examples=200)
@given(wide_paths())
def test_format_3_pointer_streams_round_trip_through_the_decoder(
    paths: list[MousePathRecord],
) -> None:
    assert decode_body(_format_3_body(paths))[0] == paths


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.sampled_from((30, 30, 30, 60, 7)), small, small), min_size=1, max_size=40)
)
def test_resampled_paths_round_trip(steps: list[tuple[int, int, int]]) -> None:
    dt, dx, dy = (tuple(c) for c in zip(*steps, strict=True))
    paths = [
        MousePathRecord(T_MS, PathKind.APPROACH, 5, 6, dt, dx, dy, 40),
        MousePathRecord(T_MS + 9000, PathKind.HOVER, 1, 2, (), (), (), 700),
    ]
    assert decode_body(encode_body(paths, {}))[0] == paths


def test_steps_whose_predictions_overflow_are_kept_raw() -> None:
    """A residual beyond 64 bits cannot be written; the raw coding always can."""
    big = 2**62
    path = MousePathRecord(0, PathKind.DRAG, 0, 0, (1, 1, 1), (-big, big, -big), (0, 0, 0), 0)
    body = encode_body([path], {})
    assert decode_body(body)[0] == [path]
    assert _pointer_columns(body)[1]["mode"] == (0, [0])


def test_a_path_whose_steps_differ_in_length_is_refused() -> None:
    bad = MousePathRecord(T_MS, PathKind.DRAG, 0, 0, (5, 5), (1,), (1, 1), 0)
    with pytest.raises(PipelineError, match="differ in length"):
        encode_body([bad], {})


def test_a_column_with_a_negative_value_is_zigzag_coded() -> None:
    body = encode_body([ScrollRecord(T_MS, 5, 6, 0, -3), ScrollRecord(T_MS + 9, 5, 6, 0, 3)], {})
    _order, t, _x, _y, dx, dy = _leb128_columns(body, [2] * 6)
    assert t == (0, [T_MS, 9])
    assert dx == (0, [0, 0])
    assert dy == (1, [-3, 3])


# The format-1 body of FORMAT_1_RECORDS, as the format-1 encoder wrote it
# (commit 8e3743e); it must keep decoding.
FORMAT_1_RECORDS: list[Record] = [
    ContextRecord(T_MS, "editor", "doc \u2014 draft", TitleState.KEPT, -4, 20, 800, 600, 1.25),
    MousePathRecord(
        T_MS + 10, PathKind.APPROACH, 400, 300, (8, 8, 9), (-30, -12, -2), (5, 1, 0), 120
    ),
    ClickRecord(T_MS + 150, "left", True, 368, 306),
    ClickRecord(T_MS + 230, "left", False, 368, 306),
    MousePathRecord(T_MS + 230, PathKind.HOVER, 368, 306, (), (), (), 900),
    ScrollRecord(T_MS + 1200, 368, 306, 0, -3),
    TextSpanRecord(T_MS + 1300, T_MS + 2100, "hello [EMAIL]", 1),
    ShortcutRecord(T_MS + 2200, "ctrl+s"),
    KeyTimingRecord(T_MS + 2300, True),
    ScreenshotRecord(
        T_MS + 2400, ScreenshotKind.KEYFRAME, "img-1", 640, 480, 800, 600, None, 64, 10, ()
    ),
    ScreenshotRecord(
        T_MS + 2900,
        ScreenshotKind.DELTA,
        "img-2",
        640,
        480,
        800,
        600,
        "img-1",
        64,
        10,
        ((1, 2), (3, 4)),
    ),
    MousePathRecord(T_MS + 3000, PathKind.DRAG, 100, 100, (16, 16), (50, 50), (0, -1), 0),
    MarkerRecord(T_MS + 4000, MarkerKind.GAP, "queue full", 12),
]
FORMAT_1_IMAGES = {"img-1": b"RIFFkey", "img-2": b"RIFFdelta"}
FORMAT_1_BODY = base64.b64decode(
    "T1ZUQgH+AgAAKLUv/WBuB6UXAJZgdEIgjbYNCIlhAgzYn6gApkqgYVwKKxMihBq3f22p0au9Ful2281yxf6aLjJI"
    "YQR8L6Baa5D8+UR1xAVk7/ERjZ6QiAxcAFoAYAAeL7eW81TPPSfBo28S8+jWpgCmVY8ut/3XZPZ4OsPmPT369cAB"
    "AwgNPips7WMyfwjOPHo2Jc7bJt9u//Ho2yMzrTg2GxYXoZqYevSMd6XvHwlcY7fmrX0ChJYLAdbFe3Mg1gEOD4+c"
    "emdY/czKNq0iXrfl1p23u+4NrZ1tkx5xa8SLs4mcTfR9a5YhNGP/uBpn8cz/yVLDmb7/2K1a3dzcGWd6y82jW4vz"
    "1B79M6ud3e+LJ731EwQs0wQzlJGTD6ShMhnMhWKiJImCFK4LQXQrXgYek9fl8LRV7qcg8mrot3VrCdL5mTmsH5Na"
    "taL1H31x3VPSz/R+h9Y61r6I53VdR+ygV2NTz6PjbGwih3qdx9HR1/rzFhgDBGQoIyclvgleXESgCIQBK0own+Wz"
    "fBfQBYQB4MLCEgLEJ6GQ0JyUSJlQCA8ZYKZCJCKCULpMkKJ0IoCCCVJVZaHRTJCKTKaU6UNkUglRJJgLRQaGiQ2f"
    "hQrsEJpSppRKqBKCEkVFJBw0LBgBK0owX4CBoFE5copsSUFJCpXGYAIZc0PrvMXkksgKKmIWQVIskhcF8UXsEKk0"
    "SDJXrwPEmWHQnPpN4NdCLrwAzxagjDH67QwComkYTDycJEfICGMWy/cK3uepOKsEE5c9OBl7St9U/l5I2HOQVnCD"
    "qPsBnQBDRaNzIeeD4XTZ2x+29L+CDKL81JNgwR/+llmrT5wub+8xX+ZmfS+wsyCr2jsE/PYCubDlwxgol05rq1Lb"
    "8uAvet9fhOUuKOz2IYBJJyK1J3qF7G28/mxNUAUUC++3+GMKgwon+CATN+JPwYc+eBt5aWdoe64KD27v2xM5BHEj"
    "chkf3MstOB7yLL/UA7EswFrkNpxPtEGRCWjMCBAWAZr2Lx+3K0pQKMZ9cT6+F9AaqlJJRkZrZXlSSUZGZGVsdGE="
)


def _reference_columns(records: list[Record], version: int) -> tuple[list[str], list[Any]]:
    """The string table and the named columns of formats 1 and 2, as their
    encoders built them (format 2: path starts from the previous path's anchor)."""
    strings: dict[str, int] = {}

    def ref(v: str) -> int:
        return strings.setdefault(v, len(strings))

    kinds = [s[1] for s in _SCHEMAS]
    order = [kinds.index(type(r)) for r in records]
    columns: list[tuple[str, list[int]]] = [("order", order)]
    for k, (kind, _, schema) in enumerate(_SCHEMAS):
        recs: list[Any] = [r for r, o in zip(records, order, strict=True) if o == k]
        if not recs:
            continue
        anchored: dict[str, list[int]] = {}
        if kind == "path" and version == 2:
            at = ax = ay = 0
            for p in recs:
                anchored.setdefault("t", []).append(p.t - at)
                anchored.setdefault("x", []).append(p.x - ax)
                anchored.setdefault("y", []).append(p.y - ay)
                at, ax, ay = p.t + sum(p.dt) + p.dwell_ms, p.x + sum(p.dx), p.y + sum(p.dy)
        for name, ftype, _enum in schema:
            col, values = f"{kind}.{name}", [getattr(r, name) for r in recs]
            if name in anchored:
                columns.append((col, anchored[name]))
            elif ftype == "t":
                columns.append((col, [b - a for a, b in zip([0, *values], values, strict=False)]))
            elif ftype in "ib":
                columns.append((col, [int(v) for v in values]))
            elif ftype in "se":
                columns.append((col, [ref(str(v)) for v in values]))
            elif ftype == "o":
                columns.append((col, [0 if v is None else ref(v) + 1 for v in values]))
            elif ftype == "f":
                columns.append(
                    (
                        col,
                        list(
                            struct.unpack(
                                f"<{len(values)}q", struct.pack(f"<{len(values)}d", *values)
                            )
                        ),
                    )
                )
            elif ftype == "I":
                columns.append((col + ".n", [len(v) for v in values]))
                columns.append((col, [x for v in values for x in v]))
            else:
                columns.append((col + ".n", [len(v) for v in values]))
                columns.append((col + ".a", [p[0] for v in values for p in v]))
                columns.append((col + ".b", [p[1] for v in values for p in v]))
    return list(strings), columns


def _shuffled_f64(values: list[int]) -> bytes:
    raw = struct.pack(f"<{len(values)}q", *values)
    return b"".join(raw[i::8] for i in range(8))


def _encode_body_v1(records: list[Record], images: dict[str, bytes]) -> bytes:
    """The format-1 encoder as it was (commit 8e3743e), for round trips through
    the format-1 decoder."""
    strings, columns = _reference_columns(records, 1)
    entries, chunks = [], []
    for name, values in columns:
        if name.endswith(".scale"):
            encoding, chunk = "f64", _shuffled_f64(values)
        else:
            encoding, chunk = "varint", _zigzag_leb128(values)
        entries.append([name, encoding, len(values), len(chunk)])
        chunks.append(chunk)
    manifest = {
        "strings": strings,
        "kinds": [s[0] for s in _SCHEMAS],
        "columns": entries,
        "images": [[k, len(v)] for k, v in images.items()],
    }
    mbytes = json.dumps(manifest, separators=(",", ":")).encode()
    section = struct.pack("<I", len(mbytes)) + mbytes + b"".join(chunks)
    frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(section)
    return b"".join([BODY_MAGIC, b"\x01", struct.pack("<I", len(frame)), frame, *images.values()])


def _encode_body_v2(records: list[Record], images: dict[str, bytes]) -> bytes:
    """The format-2 encoder as it was (commit bcaceb9), for round trips through
    the format-2 decoder."""
    strings, columns = _reference_columns(records, 2)
    chunks = []
    for name, values in columns:
        if name.endswith(".scale"):
            chunks.append(b"\x02" + _shuffled_f64(values))
        elif all(v >= 0 for v in values):
            chunks.append(b"\x00" + _leb128(values))
        else:
            chunks.append(b"\x01" + _zigzag_leb128(values))
    manifest = {
        "records": len(records),
        "strings": strings,
        "images": [[k, len(v)] for k, v in images.items()],
    }
    mbytes = json.dumps(manifest, separators=(",", ":")).encode()
    section = struct.pack("<I", len(mbytes)) + mbytes + b"".join(chunks)
    frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(section)
    return b"".join([BODY_MAGIC, b"\x02", struct.pack("<I", len(frame)), frame, *images.values()])


def _leb128(values: list[int]) -> bytes:
    out = bytearray()
    for u in values:
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


def _zigzag_leb128(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        u = (v << 1) ^ (v >> 63)
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


def _unframe(body: bytes) -> tuple[bytes, bytes]:
    """A body's decompressed record section and its image blobs (zstd's output
    may differ between library versions; what it holds may not)."""
    (n,) = struct.unpack_from("<I", body, 5)
    return zstandard.ZstdDecompressor().decompress(body[9 : 9 + n]), body[9 + n :]


@settings(max_examples=100)
@given(st.lists(records, max_size=40), st.dictionaries(text, st.binary(max_size=64), max_size=4))
def test_format_1_bodies_round_trip_through_the_decoder(
    recs: list[Record], images: dict[str, bytes]
) -> None:
    assert decode_body(_encode_body_v1(recs, images)) == (recs, images)


# The format-2 body of FORMAT_1_RECORDS, as the format-2 encoder wrote it
# (commit bcaceb9); it must keep decoding.
FORMAT_2_BODY = base64.b64decode(
    "T1ZUQgJ9AQAAKLUv/WDOAJ0LAIYUTUEwiTgdAKp8WCpVVEjBOsA+c+TAfJq8DjBZ9bw6bsKt1v9s1nC1BlooQ2FX"
    "g1OslgV96vECZWS3DfxhEBIRIXvvFDsAPQA5ANi7GQsAN217w10wh+HFX4hD2vaoubnLLpUJCwmScWDXtjM4cjrc"
    "GqZFDwAnj2JbigqmxS6DHM5d4H+FFTXROmf9DWybhWa3Cg17d+vvIzUZJjEZoG2H12vbloqE1+G07Tt+GHdu1hAQ"
    "I748cm1769jI8NDQMvD7Aq+vDT6J5rQAoipnRU2fUOBAcGr+Dz6nIRo6JVHSP1/rPxwoOEbpdBK9Ku9wa9LT/xfQ"
    "BAul51e1rJJP3iCh/ERfJ4Y9k7nkn0RV+Tqqo1MeynMJw7HIayk0+rzwC8Tg89YnAoQEv3VgwLGuqw8Xk0KJXNdp"
    "GygwAgKZ9hBoWw4B8Gj4t4QBCDPsosNRmTNGsHZmEIRl+47sDVNbJCVloXBeJdbULUzgFd1rNa61wtsDUklGRmtl"
    "eVJJRkZkZWx0YQ=="
)


@settings(max_examples=100)
@given(st.lists(records, max_size=40), st.dictionaries(text, st.binary(max_size=64), max_size=4))
def test_format_2_bodies_round_trip_through_the_decoder(
    recs: list[Record], images: dict[str, bytes]
) -> None:
    assert decode_body(_encode_body_v2(recs, images)) == (recs, images)


# The format-3 body of FORMAT_1_RECORDS, as the format-3 encoder wrote it
# (commit 5e4684b); it must keep decoding.
FORMAT_3_BODY = base64.b64decode(
    "T1ZUQgM+AQAAKLUv/WB5AKUJAObQPzlApUYdc0DU2eHDGL4L37ITwjqlZDEHYiaLrcubfgWjcbOypWYi8X3gxj0O"
    "tSwckKtg8KYBM0L23ikxADMALQAfxnfi4sylaNshl+WtqlgHFFGi0r6tbecv9Lbbl6XBrsLLIdgWwbI0uOVPu7kx"
    "/ocEGKZwWSzhul2GNcYiV13xihZtO5N1bZtiGXQYr21nIb4Xk2XuAizAOdTaNvbgwADRcFUB8/fQnJa0PPVQzz9f"
    "6yM6Nr7wOYU4l8gPfJr09H9lMwKAHC+p0yRFEK1z1j8jAg84JUIeoq+Ton65fPJDHIl87dTOozEaP5F8kl4/Zecz"
    "wKMNx+chDciHxglqFBUIEGBvO0HgFuvzIQaKsBguFpXYppMJ2Co2FD0ci1WbUrODwflpYoUiIaSUIqbWemUPmksC"
    "lUYwuKAUOdActg6LDx0qgET8Azg64HiQBEEEWGJlveMhCExb0FJJRkZrZXlSSUZGZGVsdGE="
)


OLD_BODIES = [
    pytest.param(1, FORMAT_1_BODY, _encode_body_v1, id="format 1"),
    pytest.param(2, FORMAT_2_BODY, _encode_body_v2, id="format 2"),
    pytest.param(3, FORMAT_3_BODY, _format_3_body, id="format 3"),
]


@pytest.mark.parametrize(("version", "body", "encoder"), OLD_BODIES)
def test_a_body_an_older_encoder_wrote_still_decodes(
    version: int, body: bytes, encoder: Callable[..., bytes]
) -> None:
    assert body[4] == version
    assert decode_body(body) == (FORMAT_1_RECORDS, FORMAT_1_IMAGES)


@pytest.mark.parametrize(("version", "body", "encoder"), OLD_BODIES)
def test_the_reference_encoder_writes_what_the_older_encoder_wrote(
    version: int, body: bytes, encoder: Callable[..., bytes]
) -> None:
    """The reference encoders, which the round-trip tests use, are faithful."""
    ours = encoder(FORMAT_1_RECORDS, FORMAT_1_IMAGES)
    assert ours[:5] == body[:5]
    assert _unframe(ours) == _unframe(body)


# ------------------------------------------------------------------ header


def header(**changes: object) -> BatchHeader:
    fields: dict[str, object] = {
        "device_id": "dev-1",
        "batch_id": "ab" * 16,
        "seq": 4,
        "start_ms": T_MS,
        "end_ms": T_MS + 1000,
        "policy_version": 3,
        "dataset_key_id": "ds-2026",
        "counts": SignalCounts(clicks=2, text_spans=1),
        "app_ids": ("editor", "sheets"),
        "body_size": 1234,
    }
    fields.update(changes)
    return BatchHeader(**fields)  # type: ignore[arg-type]


def test_header_json_is_canonical_and_round_trips() -> None:
    h = header()
    data = h.to_json()
    assert BatchHeader.from_json(data) == h
    doc = json.loads(data)
    assert doc["format"] == 1
    assert list(doc) == sorted(doc)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("format 2", lambda d: d.update(format=2)),
        ("missing seq", lambda d: d.pop("seq")),
        ("extra field", lambda d: d.update(extra=1)),
        ("seq as string", lambda d: d.update(seq="4")),
        ("counts missing a signal", lambda d: d["counts"].pop("clicks")),
    ],
)
def test_bad_header_is_rejected(name: str, mutate: object) -> None:
    doc = json.loads(header().to_json())
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(HeaderFormatError):
        BatchHeader.from_json(json.dumps(doc).encode())


def test_header_that_is_not_json_is_rejected() -> None:
    with pytest.raises(HeaderFormatError):
        BatchHeader.from_json(b"\xff not json")


# ------------------------------------------------------------------ batcher


def batcher(**kw: object) -> Batcher:
    ids = count()
    args: dict[str, object] = {
        "device_id": "dev-1",
        "policy_version": 3,
        "dataset_key_id": "ds-2026",
        "next_seq": 10,
        "new_id": lambda: f"{next(ids):032x}",
    }
    args.update(kw)
    return Batcher(**args)  # type: ignore[arg-type]


def test_batch_is_emitted_when_old_enough() -> None:
    b = batcher(max_age_s=60)
    assert b.add(ClickRecord(T_MS, "left", True, 1, 1), T) is None
    assert b.add(ClickRecord(T_MS + 30_000, "left", False, 1, 1), T + 30) is None
    assert b.due == pytest.approx(T + 60)
    assert b.flush(T + 59.9) is None
    batch = b.flush(T + 60)
    assert batch is not None
    assert batch.header.seq == 10
    assert b.next_seq == 11
    assert b.flush(T + 200) is None


def test_add_past_the_age_emits_including_the_record() -> None:
    b = batcher(max_age_s=60)
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    batch = b.add(ClickRecord(T_MS + 61_000, "left", False, 1, 1), T + 61)
    assert batch is not None
    recs, _ = decode_body(batch.body)
    assert len(recs) == 2
    assert b.pending == 0


def test_batch_is_emitted_when_large_enough() -> None:
    b = batcher(max_bytes=1000)
    emitted = []
    for i in range(200):
        out = b.add(TextSpanRecord(T_MS + i, T_MS + i, "x" * 40, 0), T + i / 1000)
        if out is not None:
            emitted.append(out)
    assert len(emitted) >= 5
    assert [e.header.seq for e in emitted] == list(range(10, 10 + len(emitted)))
    assert len({e.header.batch_id for e in emitted}) == len(emitted)


def test_image_bytes_count_towards_size() -> None:
    b = batcher(max_bytes=10_000)
    shot = ScreenshotRecord(T_MS, ScreenshotKind.KEYFRAME, "img1", 10, 10, 10, 10)
    batch = b.add(shot, T, b"\x00" * 20_000)
    assert batch is not None
    _, images = decode_body(batch.body)
    assert images == {"img1": b"\x00" * 20_000}


def test_header_counts_time_range_and_apps() -> None:
    b = batcher()
    recs: list[Record] = [
        ContextRecord(T_MS, "editor", None, TitleState.DROPPED, 0, 0, 10, 10, 1.0),
        MousePathRecord(T_MS + 1, PathKind.APPROACH, 0, 0, (5, 5), (1, 1), (1, 1), 20),
        ClickRecord(T_MS + 11, "left", True, 2, 2),
        ClickRecord(T_MS + 60, "left", False, 2, 2),
        ScrollRecord(T_MS + 70, 2, 2, 0, -3),
        TextSpanRecord(T_MS + 100, T_MS + 900, "[EMAIL] hi", 1),
        ShortcutRecord(T_MS + 950, "ctrl+s"),
        KeyTimingRecord(T_MS + 960, True),
        ContextRecord(T_MS + 970, "sheets", "Q3", TitleState.KEPT, 0, 0, 10, 10, 2.0),
        ScreenshotRecord(T_MS + 980, ScreenshotKind.KEYFRAME, "i", 1, 1, 1, 1),
        MarkerRecord(T_MS + 990, MarkerKind.CONSENT, "granted"),
    ]
    for r in recs:
        assert b.add(r, T) is None
    batch = b.flush(T, force=True)
    assert batch is not None
    h = batch.header
    assert h.counts == SignalCounts(
        clicks=1,
        scrolls=1,
        paths=1,
        path_samples=3,
        text_spans=1,
        redactions=1,
        shortcuts=1,
        key_timings=1,
        contexts=2,
        screenshots=1,
        markers=1,
    )
    assert (h.start_ms, h.end_ms) == (T_MS, T_MS + 990)
    assert h.app_ids == ("editor", "sheets")
    assert h.body_size == len(batch.body)
    assert (h.device_id, h.policy_version, h.dataset_key_id) == ("dev-1", 3, "ds-2026")
    assert decode_body(batch.body)[0] == recs


def test_new_batch_starts_with_the_carried_context() -> None:
    b = batcher()
    ctx = ContextRecord(T_MS, "editor", "doc", TitleState.KEPT, 0, 0, 10, 10, 1.0)
    b.context = ctx
    b.add(ctx, T)
    first = b.flush(T, force=True)
    assert first is not None
    b.add(ClickRecord(T_MS + 5000, "left", True, 1, 1), T + 5)
    second = b.flush(T + 5, force=True)
    assert second is not None
    recs, _ = decode_body(second.body)
    assert recs[0] == ContextRecord(
        T_MS + 5000, "editor", "doc", TitleState.KEPT, 0, 0, 10, 10, 1.0
    )
    assert second.header.app_ids == ("editor",)


def test_drop_discards_the_open_batch() -> None:
    b = batcher()
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    assert b.drop() == 1
    assert b.flush(T + 1000, force=True) is None
    assert b.next_seq == 10


def test_policy_change_closes_the_batch_under_the_old_policy() -> None:
    b = batcher()
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    old = b.set_policy(4, "ds-2027")
    assert old is not None
    assert (old.header.policy_version, old.header.dataset_key_id) == (3, "ds-2026")
    b.add(ClickRecord(T_MS + 1, "left", False, 1, 1), T)
    new = b.flush(T, force=True)
    assert new is not None
    assert (new.header.policy_version, new.header.dataset_key_id) == (4, "ds-2027")
