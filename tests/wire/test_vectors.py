"""Frozen test vectors: the exact bytes of one batch body and its header.

``RECORDS`` holds every record kind — a context, a click pressed and
released, a scroll, the three kinds of mouse path (their steps in the
predicted coding), a text span, a shortcut, a key timing, a keyframe and a delta
screenshot with tiny PNG images, markers — and ``vectors/`` holds what
they encode to: ``body-1.hex`` (body format 1, as hex) and
``header-1.json`` (batch header format 1). Encoding the records must give
exactly those bytes, and decoding the bytes exactly those records: a change
to either side of the format fails here.

The vectors are never rewritten by the tests. After a deliberate format
change (a new format version), or when a new zstd compresses the record
section differently (the decoding tests still pass then: only the bytes the
encoder makes changed), regenerate them with::

    .venv/bin/python -m tests.wire.test_vectors

and review the diff.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from overt.wire.batch import BatchHeader, count_signals
from overt.wire.body import decode_body, encode_body
from overt.wire.frames import image_id, reassemble
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

VECTORS = Path(__file__).parent / "vectors"
BODY_FILE = VECTORS / "body-1.hex"
HEADER_FILE = VECTORS / "header-1.json"

#: A 4x2 keyframe (light grey, a red pixel top left, a blue one bottom right)
#: and a delta's packed tiles, one 2x2 tile of green: PNG, as Pillow wrote them.
KEYFRAME = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000004000000020802000000f0caea340000001c49444154"
    "78da63382127f70b06187ffdfac5c0c0c0c0c0a0a2720e00d9210dd4f00ff7a90000000049454e44"
    "ae426082"
)
DELTA_TILES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a7300000016494441"
    "5478da63945b20c7c0c0c0c4c0c0c0c0c000000a7a00e045943af40000000049454e44ae426082"
)
IMAGES = {image_id(KEYFRAME): KEYFRAME, image_id(DELTA_TILES): DELTA_TILES}

T = 1_800_000_000_000
RECORDS: list[Record] = [
    ContextRecord(T, "editor", "notes \u2014 draft", TitleState.MASKED, -4, 20, 800, 600, 1.25),
    MarkerRecord(T, MarkerKind.CONSENT, "granted"),
    MousePathRecord(
        T + 10,
        PathKind.APPROACH,
        400,
        300,
        (30, 30, 30, 12),
        (-30, -24, -17, -4),
        (5, 3, 1, 0),
        120,
    ),
    ClickRecord(T + 232, "left", True, 329, 309),
    ClickRecord(T + 310, "left", False, 329, 309),
    MousePathRecord(T + 310, PathKind.HOVER, 329, 309, (), (), (), 900),
    ScrollRecord(T + 1210, 329, 309, 0, -3),
    TextSpanRecord(T + 1300, T + 2100, "hello [EMAIL]", 1),
    ShortcutRecord(T + 2200, "ctrl+s"),
    KeyTimingRecord(T + 2300, True),
    KeyTimingRecord(T + 2380, False),
    ScreenshotRecord(T + 2400, ScreenshotKind.KEYFRAME, image_id(KEYFRAME), 4, 2, 8, 4),
    ContextRecord(T + 2500, "browser", None, TitleState.DROPPED, 0, 0, 1280, 720, 1.0),
    ScreenshotRecord(
        T + 2900,
        ScreenshotKind.DELTA,
        image_id(DELTA_TILES),
        4,
        2,
        8,
        4,
        image_id(KEYFRAME),
        2,
        1,
        ((1, 0),),
    ),
    MousePathRecord(T + 3000, PathKind.DRAG, 100, 100, (16, 16), (50, 50), (0, -1), 0),
    MarkerRecord(T + 3500, MarkerKind.PAUSE_START),
    MarkerRecord(T + 4000, MarkerKind.GAP, "queue full", 12),
]


def header(body: bytes) -> BatchHeader:
    """The header of ``body``, the encoding of ``RECORDS`` (their counts, times and apps)."""
    return BatchHeader(
        device_id="3f0c9a1e6b2d4c8f9e7a5b3c1d2e4f60",
        batch_id="0123456789abcdef0123456789abcdef",
        seq=7,
        start_ms=RECORDS[0].t,
        end_ms=RECORDS[-1].t,
        policy_version=3,
        dataset_key_id="dataset-2026",
        counts=count_signals(RECORDS),
        app_ids=tuple(sorted({r.app_id for r in RECORDS if isinstance(r, ContextRecord)})),
        body_size=len(body),
    )


def _read_hex(path: Path) -> bytes:
    return bytes.fromhex("".join(path.read_text().split()))


def write_vectors() -> None:
    """Encode ``RECORDS`` and ``IMAGES`` and write ``vectors/``: the body as hex,
    64 digits a line, and its header's canonical JSON. Run on purpose only
    (``python -m tests.wire.test_vectors``), never from a test."""
    body = encode_body(RECORDS, IMAGES)
    VECTORS.mkdir(exist_ok=True)
    BODY_FILE.write_text("\n".join(textwrap.wrap(body.hex(), 64)) + "\n")
    HEADER_FILE.write_bytes(header(body).to_json() + b"\n")


def test_the_records_encode_to_the_frozen_body() -> None:
    assert encode_body(RECORDS, IMAGES) == _read_hex(BODY_FILE)


def test_the_frozen_body_decodes_to_the_records() -> None:
    records, images = decode_body(_read_hex(BODY_FILE))
    assert records == RECORDS
    assert [type(r) for r in records] == [type(r) for r in RECORDS]
    assert images == IMAGES
    assert list(images) == list(IMAGES)


def test_the_frozen_header_is_the_records_header() -> None:
    data = HEADER_FILE.read_bytes().rstrip(b"\n")
    expected = header(_read_hex(BODY_FILE))
    assert data == expected.to_json()
    assert BatchHeader.from_json(data) == expected


def test_every_record_kind_is_in_the_vector() -> None:
    kinds = {type(r) for r in RECORDS}
    assert len(kinds) == 9
    assert {r.kind for r in RECORDS if isinstance(r, MousePathRecord)} == set(PathKind)
    assert {r.kind for r in RECORDS if isinstance(r, ScreenshotRecord)} == set(ScreenshotKind)


def test_the_delta_of_the_vector_reassembles_over_its_keyframe() -> None:
    records, images = decode_body(_read_hex(BODY_FILE))
    key, delta = (r for r in records if isinstance(r, ScreenshotRecord))
    frame = reassemble(images[key.image], [(delta, images[delta.image])], size=(4, 2))
    assert [frame.getpixel((x, y)) for y in range(2) for x in range(4)] == [
        (200, 30, 30), (250, 250, 250), (30, 160, 30), (30, 160, 30),
        (250, 250, 250), (250, 250, 250), (30, 160, 30), (30, 160, 30),
    ]  # fmt: skip


if __name__ == "__main__":
    write_vectors()
    sys.stdout.write(f"wrote {BODY_FILE} and {HEADER_FILE}\n")
