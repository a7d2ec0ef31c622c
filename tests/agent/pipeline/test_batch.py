from __future__ import annotations

import json
import struct
from itertools import count

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.batch import (
    BODY_MAGIC,
    Batcher,
    BatchHeader,
    SignalCounts,
    decode_body,
    encode_body,
)
from agent.pipeline.records import (
    BodyFormatError,
    ClickRecord,
    ContextRecord,
    HeaderFormatError,
    KeyTimingRecord,
    MarkerKind,
    MarkerRecord,
    MousePathRecord,
    PathKind,
    PipelineError,
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


def _corrupt_cases() -> list[tuple[str, bytes]]:
    good = encode_body(SAMPLE, {"img": b"x" * 10})
    frame_len = struct.unpack_from("<I", good, 5)[0]
    flipped = bytearray(good)
    flipped[9 + frame_len // 2] ^= 0xFF
    bad_manifest = zstandard.ZstdCompressor().compress(struct.pack("<I", 5) + b"{nope")
    return [
        ("empty", b""),
        ("bad magic", b"NOPE" + good[4:]),
        ("unknown version", good[:4] + bytes([2]) + good[5:]),
        ("truncated frame", good[:20]),
        ("truncated image", good[:-3]),
        ("trailing bytes", good + b"!"),
        ("flipped byte in frame", bytes(flipped)),
        (
            "manifest not json",
            BODY_MAGIC + b"\x01" + struct.pack("<I", len(bad_manifest)) + bad_manifest,
        ),
    ]


@pytest.mark.parametrize(("name", "data"), _corrupt_cases(), ids=[c[0] for c in _corrupt_cases()])
def test_corrupt_body_is_a_clear_error(name: str, data: bytes) -> None:
    with pytest.raises(BodyFormatError) as info:
        decode_body(data)
    assert isinstance(info.value, PipelineError)
    assert str(info.value)


def test_unknown_version_says_so() -> None:
    good = encode_body(SAMPLE, {})
    with pytest.raises(BodyFormatError, match="unknown batch body format 2"):
        decode_body(good[:4] + bytes([2]) + good[5:])


def test_integers_beyond_64_bits_are_refused() -> None:
    with pytest.raises(PipelineError):
        encode_body([ClickRecord(2**70, "left", True, 0, 0)], {})


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
