"""The body's limits (``overt.wire.body``, ``overt.wire.frames``): a reader
refuses a body or an image over one of them, naming the limit, before it
allocates for it. Each case hands ``decode_body``, ``image_header``,
``open_image`` or ``reassemble`` what a hostile device could send. That the
agent stays under the limits is ``tests/agent/pipeline/test_body_limits``.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from PIL import Image

from overt.wire import _pointer
from overt.wire import frames as screens
from overt.wire._columns import uvarint
from overt.wire.body import (
    BODY_FORMAT,
    BODY_MAGIC,
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    MAX_PATH_STEPS,
    MAX_RECORDS,
    MAX_SCREENSHOTS,
    MAX_SECTION_BYTES,
    MAX_STRING_CHARS,
    MAX_STRINGS_CHARS,
    MAX_TILES,
    BodyLimitError,
    decode_body,
    encode_body,
)
from overt.wire.errors import BodyFormatError, FormatError, FrameError
from overt.wire.frames import apply_delta, image_header, open_image, reassemble
from overt.wire.records import (
    KeyTimingRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    TextSpanRecord,
)

T_MS = 1_800_000_000_000
GiB = 2**30

# ------------------------------------------------------------------ bodies over them


def _body(
    manifest: dict[str, object],
    columns: bytes,
    after: bytes = b"",
    frame: bytes | None = None,
) -> bytes:
    if frame is None:
        mbytes = json.dumps(manifest).encode()
        frame = zstandard.ZstdCompressor().compress(
            struct.pack("<I", len(mbytes)) + mbytes + columns
        )
    return BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(frame)) + frame + after


def _uleb(*values: int) -> bytes:
    return uvarint(list(values))


def _unsized(section: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=9, write_content_size=False).compress(section)


def _lying(section: bytes, declared: int) -> bytes:
    """A frame of ``section`` whose header says it holds ``declared`` bytes."""
    plain = _unsized(section)
    assert plain[4] & 0xE0 == 0  # no content size, a window byte at plain[5]
    return (
        plain[:4] + bytes([plain[4] | 0xC0]) + plain[5:6] + struct.pack("<Q", declared) + plain[6:]
    )


def _section(manifest: dict[str, object], columns: bytes = b"") -> bytes:
    mbytes = json.dumps(manifest).encode()
    return struct.pack("<I", len(mbytes)) + mbytes + columns


EMPTY: dict[str, object] = {"records": 0, "strings": [], "images": []}
_TIMING = _uleb(0, 6) + _uleb(0, 5) + _uleb(0, 1)  # tag 0 and values: order, t, pressed


def _timings(n: int) -> bytes:
    """A body of ``n`` key timing records, by hand: a few kB for any ``n``."""
    columns = bytes([0]) + bytes([6]) * n + bytes([0]) + bytes(n) + bytes([0]) + bytes(n)
    return _body({"records": n, "strings": [], "images": []}, columns)


def _pointer_stream_of(steps: int) -> bytes:
    """A pointer stream of one drag that says it has ``steps`` steps (and
    ends where they would start)."""
    w = _pointer.BitWriter()
    w.write(0b11, 2)
    for values in ([steps], [0], [0], [0], [0]):  # samples less one, t, x, y, dwell
        _pointer.write_column(w, values)
    return w.getvalue()


def _delta_tiles(tiles: int) -> bytes:
    """A body of one delta whose ``tiles.n`` column says ``tiles``."""
    strings = ["delta", "img", "key"]
    # order; t, kind, image, width, height, source width, height, base, tile, columns; tiles.n
    columns = _uleb(0, 7) + b"".join(
        _uleb(0, v) for v in (5, 0, 1, 64, 48, 64, 48, 3, 16, 16, tiles)
    )
    return _body({"records": 1, "strings": strings, "images": []}, columns)


def _screenshots(n: int) -> bytes:
    records: list[Record] = [
        ScreenshotRecord(T_MS + i, ScreenshotKind.KEYFRAME, "img", 64, 48, 64, 48) for i in range(n)
    ]
    return encode_body(records, {})


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "a zstd frame declaring 16 GiB": (
        lambda: _body({}, b"", frame=_lying(_section(EMPTY), 16 * GiB)),
        "record section",
    ),
    "a zstd frame declaring one byte over the limit": (
        lambda: _body({}, b"", frame=_lying(_section(EMPTY), MAX_SECTION_BYTES + 1)),
        "record section",
    ),
    "a zstd frame asking for a 1 GiB window": (
        lambda: _body(
            {}, b"", frame=b"\x28\xb5\x2f\xfd" + bytes([0x00, (30 - 10) << 3]) + b"\x01\x00\x00"
        ),
        "record section",
    ),
    "a zstd frame without a size, past the limit": (
        lambda: _body({}, b"", frame=_unsized(_section(EMPTY) + bytes(MAX_SECTION_BYTES))),
        "record section",
    ),
    "2,000,000 records": (lambda: _timings(2_000_000), "records"),
    "one record over the limit": (
        lambda: encode_body([KeyTimingRecord(T_MS, True)] * (MAX_RECORDS + 1), {}),
        "records",
    ),
    "a text one character over the limit": (
        lambda: encode_body([TextSpanRecord(T_MS, T_MS, "a" * (MAX_STRING_CHARS + 1), 0)], {}),
        "string length",
    ),
    "texts over the limit together": (
        lambda: encode_body(
            [
                TextSpanRecord(T_MS, T_MS, f"{i:04d}" * (MAX_STRING_CHARS // 4), 0)
                for i in range(MAX_STRINGS_CHARS // MAX_STRING_CHARS + 1)
            ],
            {},
        ),
        "string table",
    ),
    "image entries over the limit": (
        lambda: _body(
            {"records": 0, "strings": [], "images": [["x", 0]] * (MAX_SCREENSHOTS + 1)}, b""
        ),
        "images",
    ),
    "screenshots over the limit": (lambda: _screenshots(MAX_SCREENSHOTS + 1), "screenshots"),
    "a pointer stream of too many steps": (
        lambda: _body(
            {"records": 1, "strings": [], "images": []},
            _uleb(0, 3) + bytes([3]) + _uleb(len(_pointer_stream_of(MAX_PATH_STEPS + 1))),
            after=_pointer_stream_of(MAX_PATH_STEPS + 1),
        ),
        "path steps",
    ),
    "a delta of too many tiles": (lambda: _delta_tiles(MAX_TILES + 1), "delta tiles"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_a_body_over_a_limit_is_refused_naming_the_limit(case: str) -> None:
    make, limit = HOSTILE[case]
    data = make()
    assert len(data) < 2**20  # the attack fits in a small sealed batch
    with pytest.raises(BodyLimitError) as info:
        decode_body(data)
    assert info.value.limit == limit
    assert isinstance(info.value, BodyFormatError)
    assert str(info.value).startswith(f"over the {limit} limit: ")


def test_a_frame_without_a_size_is_given_up_as_soon_as_it_passes_the_limit() -> None:
    data = _body({}, b"", frame=_unsized(_section(EMPTY) + bytes(8 * MAX_SECTION_BYTES)))
    tracemalloc.start()
    try:
        with pytest.raises(BodyLimitError):
            decode_body(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_SECTION_BYTES + 16 * 2**20  # the limit, and one step's overshoot


def test_a_frame_that_lies_about_its_size_below_the_limit_is_corrupt() -> None:
    section = _section({"records": 1, "strings": [], "images": []}, _TIMING)
    for declared in (len(section) - 1, len(section) + 1):
        with pytest.raises(BodyFormatError) as info:
            decode_body(_body({}, b"", frame=_lying(section, declared)))
        assert not isinstance(info.value, BodyLimitError)
    assert decode_body(_body({}, b"", frame=_unsized(section)))[0] == [KeyTimingRecord(5, True)]


def test_bytes_after_the_zstd_frame_are_refused() -> None:
    frame = zstandard.ZstdCompressor().compress(_section(EMPTY))
    with pytest.raises(BodyFormatError, match="bytes after the record section"):
        decode_body(_body({}, b"", frame=frame + b"\x00"))
    with pytest.raises(BodyFormatError, match="bytes after the record section"):
        decode_body(_body({}, b"", frame=frame + frame))


def test_a_body_at_the_record_limit_decodes() -> None:
    records = [KeyTimingRecord(T_MS + i, i % 2 == 0) for i in range(MAX_RECORDS)]
    assert decode_body(encode_body(records, {}))[0] == records


# ------------------------------------------------------------------ image headers


def _img(w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), (250, 250, 250))
    img.paste((20, 40, 200), (w // 4, h // 4, w // 2, h // 2))
    return img


def _saved(img: Image.Image, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **options)
    return buf.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (64, 48), (13_000, 3)])
def test_the_header_of_a_png_and_a_ppm_gives_its_size(size: tuple[int, int]) -> None:
    img = _img(*size)
    assert image_header(_saved(img, format="PNG")) == ("PNG", *size)
    assert image_header(b"P6 %d %d 255\n" % size + img.tobytes()) == ("PPM", *size)


def _flat_png(width: int, height: int) -> bytes:
    """A 1-bit palette PNG: a few kB, ``width x height x 4`` bytes decoded."""
    row = b"\x00" + bytes((width + 7) // 8)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", b"\x00\x00\x00")
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )


NOT_AGENT_IMAGES: dict[str, Callable[[], bytes]] = {
    "random bytes": lambda: bytes(range(256)) * 4,
    "a GIF": lambda: _saved(_img(8, 8), format="GIF"),
    "a BMP": lambda: _saved(_img(8, 8), format="BMP"),
    "a progressive JPEG": lambda: _saved(_img(64, 48), format="JPEG", progressive=True),
    "an animated WebP": lambda: _saved(
        _img(16, 16), format="WEBP", save_all=True, append_images=[_img(16, 16).rotate(90)]
    ),
    "a PNG cut before its size": lambda: _saved(_img(8, 8), format="PNG")[:20],
    "a PNG of no pixels": lambda: _flat_png(8, 8)[:16] + struct.pack(">II", 0, 8),
    "a JPEG without a frame header": lambda: b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02",
    "a WebP cut before its size": lambda: _saved(_img(8, 8), format="WEBP", quality=50)[:22],
}


@pytest.mark.parametrize("case", list(NOT_AGENT_IMAGES), ids=list(NOT_AGENT_IMAGES))
def test_an_image_the_agent_never_writes_is_refused_from_its_header(case: str) -> None:
    blob = NOT_AGENT_IMAGES[case]()
    try:
        kind = image_header(blob)[0]
    except FormatError:
        kind = None
    assert kind not in screens.BLOB_FORMATS
    with pytest.raises(FormatError):
        open_image(blob, (8, 8))


@pytest.fixture
def pillow_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image Pillow is asked to open from here on."""
    opened: list[tuple[int, int]] = []
    real = Image.open

    def spy(fp: Any, *args: Any, **kwargs: Any) -> Any:
        img = real(fp, *args, **kwargs)
        opened.append(img.size)
        return img

    monkeypatch.setattr(Image, "open", spy)
    return opened


def test_a_png_larger_than_its_record_says_is_refused_before_pillow_sees_it(
    pillow_opens: list[tuple[int, int]],
) -> None:
    lying = _flat_png(13_000, 13_000)
    with pytest.raises(FrameError, match="13000x13000 where its record says 64x64"):
        open_image(lying, (64, 64))
    with pytest.raises(FrameError, match="13000x13000 where its record says 64x64"):
        reassemble(lying, size=(64, 64))
    with pytest.raises(FrameError, match="over the frame limits"):
        reassemble(lying)  # no size given: the limits still hold
    with pytest.raises(FrameError, match="over the frame limits"):
        open_image(lying, (13_000, 13_000))
    assert pillow_opens == []


def test_a_delta_whose_tiles_image_is_not_its_packed_size_is_refused_before_decoding(
    pillow_opens: list[tuple[int, int]],
) -> None:
    frame = _img(64, 48)
    rec = ScreenshotRecord(
        T_MS, ScreenshotKind.DELTA, "t", 64, 48, 64, 48, "k", 16, 2, ((0, 0), (1, 0), (2, 0))
    )
    with pytest.raises(FrameError, match="13000x13000 where its record says 32x32"):
        apply_delta(frame, rec, _flat_png(13_000, 13_000))
    assert pillow_opens == []
    packed = _img(32, 32)
    apply_delta(frame, rec, _saved(packed, format="PNG"))
    assert frame.crop((0, 0, 32, 16)).tobytes() == packed.crop((0, 0, 32, 16)).tobytes()
    assert frame.crop((32, 0, 48, 16)).tobytes() == packed.crop((0, 16, 16, 32)).tobytes()


def test_a_frame_at_the_limits_is_decoded() -> None:
    blob = _flat_png(MAX_FRAME_SIDE, MAX_FRAME_PIXELS // MAX_FRAME_SIDE)
    img = open_image(blob, (7680, 4320))
    assert img.mode == "RGB"
    assert img.size == (7680, 4320)
