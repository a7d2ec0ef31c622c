"""The batch body (``overt.wire.body``): records and images round-trip exactly,
every column and the pointer stream are the bytes docs/FORMATS.md describes,
and a corrupt body is a clear ``BodyFormatError``. The limits are
``test_body_limits``; the frozen bytes of one body are ``test_vectors``."""

from __future__ import annotations

import json
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from overt.wire import _pointer
from overt.wire._columns import SCHEMAS
from overt.wire.body import BODY_FORMAT, BODY_MAGIC, decode_body, encode_body
from overt.wire.errors import BodyFormatError, FormatError
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


def _body(manifest: dict[str, object], columns: bytes, after: bytes = b"") -> bytes:
    """A body put together by hand, to say exactly what is wrong with it;
    ``after`` follows the frame (a pointer stream)."""
    mbytes = json.dumps(manifest).encode()
    frame = zstandard.ZstdCompressor().compress(struct.pack("<I", len(mbytes)) + mbytes + columns)
    return BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(frame)) + frame + after


def _cols(records: int, columns: bytes) -> bytes:
    """A body of ``records`` records (no strings, no images) from its columns."""
    return _body({"records": records, "strings": [], "images": []}, columns)


def _paths(count: int, stream: bytes, declared: int | None = None) -> bytes:
    """A body of ``count`` path records: the order column, the pointer
    stream's tag and length (``declared``, if given), and the stream after
    the frame."""
    length = len(stream) if declared is None else declared
    columns = bytes([0] + [3] * count) + bytes([3, length])
    return _body({"records": count, "strings": [], "images": []}, columns, stream)


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
    assert decode_body(_cols(1, _TIMING))[0] == [KeyTimingRecord(5, True)]
    hover = MousePathRecord(5, PathKind.HOVER, 1, 2, (), (), (), 3)
    assert decode_body(_paths(1, _HOVER))[0] == [hover]
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
            BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(bad_manifest)) + bad_manifest,
        ),
        ("record count missing", _body({"strings": [], "images": []}, _TIMING)),
        ("record count not an integer", _cols("1", _TIMING)),  # type: ignore[arg-type]
        ("a column missing", _cols(1, _TIMING[:-2])),
        ("a column too short", _cols(2, bytes([0, 6, 6]) + _TIMING[2:])),
        ("unknown column tag", _cols(1, _TIMING[:2] + bytes([7, 5]) + _TIMING[4:])),
        ("varint cut off", _cols(1, _TIMING[:2] + bytes([0, 0x85]))),
        (
            "varint over 64 bits",
            _cols(1, _TIMING[:2] + bytes([0]) + b"\xff" * 9 + b"\x01" + _TIMING[4:]),
        ),
        ("unknown record kind", _cols(1, bytes([0, len(SCHEMAS)]))),
        ("boolean out of range", _cols(1, _TIMING[:-1] + bytes([2]))),
        ("trailing bytes after the columns", _cols(1, _TIMING + bytes([0]))),
        # A context record: t, app_id, title, title_state, x, y, width, height, then scale.
        ("f64 column cut off", _cols(1, bytes([0, 0]) + bytes([0, 1] + [0, 0] * 7 + [2, 1]))),
        (
            "negative tuple length",
            _cols(1, bytes([0, 3]) + bytes([0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])),
        ),
        ("pointer stream missing", _cols(1, bytes([0, 3]))),
        ("path columns where the pointer stream belongs", _cols(1, bytes([0, 3]) + bytes(16))),
        ("pointer stream cut off", _paths(1, _HOVER, declared=len(_HOVER) + 1)),
        ("pointer stream shorter than its records", _paths(1, _HOVER[:-1])),
        ("pointer stream padding not zero", _paths(1, _HOVER[:-1] + bytes([_HOVER[-1] | 1]))),
        ("pointer stream longer than its records", _paths(1, _HOVER + bytes([0]))),
        (  # a hover of 2**20 samples, starting at 0 with no dwell, and its steps missing
            "more samples than the stream holds",
            _paths(1, _bits("0", "01", "0" * 20 + "1" + "1" * 20, "011" * 4, "01")),
        ),
        ("an Exp-Golomb code over 64 bits", _paths(1, _bits("0", "0" * 80))),
        ("an Exp-Golomb order over 64", _paths(1, _bits("0", "0", "0000001000010") + bytes(8))),
        ("a negative sample count", _paths(1, _bits("0", "1", "1", "010") + bytes(8))),
    ]


@pytest.mark.parametrize(("name", "data"), _corrupt_cases(), ids=[c[0] for c in _corrupt_cases()])
def test_corrupt_body_is_a_clear_error(name: str, data: bytes) -> None:
    with pytest.raises(BodyFormatError) as info:
        decode_body(data)
    assert isinstance(info.value, FormatError)
    assert str(info.value)


def _drag_stream(mode: int, *steps: list[int]) -> bytes:
    """A pointer stream of one drag from (0, 0) at t=0 with no dwell, its
    steps in ``mode`` (0 raw, 1 predicted) given column by column."""
    w = _pointer.BitWriter()
    w.write(0b11, 2)
    for values in ([len(steps[-1])], [0], [0], [0], [0]):  # samples less one, t, x, y, dwell
        _pointer.write_column(w, values)
    w.write(mode, 1)
    for values in steps:
        _pointer.write_column(w, values)
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
def test_a_corrupt_pointer_stream_is_a_clear_error(name: str, stream: bytes) -> None:
    with pytest.raises(BodyFormatError):
        decode_body(_paths(1, stream))


def test_a_stream_that_predicts_sanely_decodes() -> None:
    """The streams above are wrong only where they say they are."""
    stream = _drag_stream(1, [30], [0, 0, -20], [10, 10, -2], [0, -2, 0])
    expected = MousePathRecord(0, PathKind.DRAG, 0, 0, (30, 30, 10), (10, 20, 5), (0, -2, -1), 0)
    assert decode_body(_paths(1, stream))[0] == [expected]


def test_unknown_version_says_so() -> None:
    good = encode_body(SAMPLE, {})
    with pytest.raises(BodyFormatError, match="unknown batch body format 5"):
        decode_body(good[:4] + bytes([5]) + good[5:])


def test_bodies_are_written_in_format_1() -> None:
    assert encode_body(SAMPLE, {})[:5] == BODY_MAGIC + bytes([BODY_FORMAT]) == b"OVTB\x01"


def test_integers_beyond_64_bits_are_refused() -> None:
    with pytest.raises(FormatError):
        encode_body([ClickRecord(2**70, "left", True, 0, 0)], {})


def test_path_starts_whose_difference_overflows_64_bits_are_refused() -> None:
    far = [
        MousePathRecord(T_MS, PathKind.HOVER, 2**62, 0, (), (), (), 0),
        MousePathRecord(T_MS, PathKind.HOVER, -(2**62) - 1, 0, (), (), (), 0),
    ]
    with pytest.raises(FormatError):
        encode_body(far, {})


def _leb128_columns(body: bytes, counts: list[int]) -> list[tuple[int, list[int]]]:
    """The first columns of a body as (tag, values), ``counts[i]`` values each."""
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
    """The path kinds and the columns (sign bit, values) of a body that holds
    only path records, read as docs/FORMATS.md describes them; the
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
    assert len(_pointer.write_stream([drag])) < len(_raw_stream([drag]))


def _raw_stream(paths: list[MousePathRecord]) -> bytes:
    """The pointer stream of ``paths`` with the steps coded raw (mode 0)."""
    w = _pointer.BitWriter()
    for p in paths:
        code = _pointer.KINDS.index(p.kind)
        w.write((0, 0b10, 0b11)[code], min(2, code + 1))
    starts = _pointer.chain(paths)
    columns: list[list[int]] = [[len(p.dt) for p in paths]]
    columns += [starts[name][:1] for name in ("t", "x", "y")]
    columns += [starts[name][1:] for name in ("t", "x", "y")]
    columns.append([p.dwell_ms for p in paths])
    for values in columns:
        _pointer.write_column(w, values)
    w.write(0, 1)
    for name in ("dt", "dx", "dy"):
        _pointer.write_column(w, [v for p in paths for v in getattr(p, name)])
    return w.getvalue()


def test_the_raw_coding_is_what_the_reader_takes_for_mode_0() -> None:
    drag = MousePathRecord(T_MS, PathKind.DRAG, 100, 200, (30, 25), (4, -9), (0, 2), 15)
    assert decode_body(_paths(1, _raw_stream([drag])))[0] == [drag]


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
    with pytest.raises(FormatError, match="differ in length"):
        encode_body([bad], {})


def test_a_column_with_a_negative_value_is_zigzag_coded() -> None:
    body = encode_body([ScrollRecord(T_MS, 5, 6, 0, -3), ScrollRecord(T_MS + 9, 5, 6, 0, 3)], {})
    _order, t, _x, _y, dx, dy = _leb128_columns(body, [2] * 6)
    assert t == (0, [T_MS, 9])
    assert dx == (0, [0, 0])
    assert dy == (1, [-3, 3])


def _unframe(body: bytes) -> tuple[bytes, bytes]:
    """A body's decompressed record section and its image blobs (zstd's output
    may differ between library versions; what it holds may not)."""
    (n,) = struct.unpack_from("<I", body, 5)
    return zstandard.ZstdDecompressor().decompress(body[9 : 9 + n]), body[9 + n :]
