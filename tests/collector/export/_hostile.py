"""Batches a malicious enrolled device could seal: one of each kind of attack
on the exporter's memory, each with a header that agrees with its body (the
device signs whatever it likes, so the attack has to be caught in the body).

Bodies are made with the agent's own encoder (``make_batch``) where the attack fits
the format (a huge text, a huge frame), or put together by hand where it
needs what the encoder never writes (a zstd frame that lies about its size,
two million records in a few hundred bytes). ``HOSTILE`` names each kind
with the reason the export must give and a word its detail must hold.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import zstandard
from PIL import Image

from overt.wire.batch import Batch, BatchHeader, SignalCounts
from overt.wire.body import BODY_FORMAT, BODY_MAGIC, MAX_RECORDS, MAX_SECTION_BYTES
from overt.wire.frames import image_id
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    TextSpanRecord,
    TitleState,
)

from ._batches import T_MS, batch_id, make_batch, png, screen

EVIL = "ee" * 16
GiB = 2**30


def flat_png(width: int, height: int, colour: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A 1-bit palette PNG of one colour: a few kB at any size, ``width x height x 4``
    bytes of memory once decoded to RGB."""
    row = b"\x00" + bytes((width + 7) // 8)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(body, zlib.crc32(kind))
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0))
        + chunk(b"PLTE", bytes(colour))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )


def ctx(t: int, w: int = 64, h: int = 48) -> ContextRecord:
    return ContextRecord(t, "editor", "Doc", TitleState.KEPT, 0, 0, w, h, 1.0)


def click(t: int) -> list[Record]:
    return [ClickRecord(t, "left", True, 5, 5), ClickRecord(t + 80, "left", False, 5, 5)]


def keyframe(t: int, blob: bytes, w: int, h: int) -> ScreenshotRecord:
    return ScreenshotRecord(t, ScreenshotKind.KEYFRAME, image_id(blob), w, h, w, h)


def delta(t: int, base: str, blob: bytes, w: int, h: int, tile: int = 16) -> ScreenshotRecord:
    return ScreenshotRecord(
        t, ScreenshotKind.DELTA, image_id(blob), w, h, w, h, base, tile, 1, ((0, 0),)
    )


def honest(seq: int, t0: int, device_id: str) -> Batch:
    """A small honest batch: a context, a keyframe and a click."""
    blob = png(screen(64, 48, seq))
    records = [ctx(t0), keyframe(t0 + 10, blob, 64, 48), *click(t0 + 500)]
    return make_batch(records, {image_id(blob): blob}, seq=seq, device_id=device_id)


def _with_body(seq: int, device_id: str, body: bytes, counts: SignalCounts, t0: int) -> Batch:
    """A hand-made body under the header a device would sign for it."""
    header = BatchHeader(
        device_id=device_id,
        batch_id=batch_id(device_id, seq),
        seq=seq,
        start_ms=t0,
        end_ms=t0 + 60_000,
        policy_version=1,
        dataset_key_id="ds-2027",
        counts=counts,
        app_ids=(),  # no context records
        body_size=len(body),
    )
    return Batch(header, body)


def _body(manifest: dict[str, object], columns: bytes, frame: bytes | None = None) -> bytes:
    """A body from its manifest and columns (``frame``: their zstd frame, as given)."""
    if frame is None:
        mbytes = json.dumps(manifest).encode()
        section = struct.pack("<I", len(mbytes)) + mbytes + columns
        frame = zstandard.ZstdCompressor(level=19).compress(section)
    return BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(frame)) + frame


def lying_frame(section: bytes, declared: int) -> bytes:
    """A zstd frame of ``section`` whose header says it holds ``declared`` bytes."""
    plain = zstandard.ZstdCompressor(level=9, write_content_size=False).compress(section)
    # magic, a descriptor without a content size and the window byte; then the blocks
    assert plain[4] & 0xE0 == 0
    return (
        plain[:4] + bytes([plain[4] | 0xC0]) + plain[5:6] + struct.pack("<Q", declared) + plain[6:]
    )


def _uleb128(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _timings(n: int) -> tuple[dict[str, object], bytes]:
    """``n`` key timing records as a manifest and columns (each a tag 0, unsigned,
    and its values): the order (kind 6), ``t`` (the first absolute, then
    differences of 0) and ``pressed``."""
    order = bytes([0]) + bytes([6]) * n
    t = bytes([0]) + _uleb128(T_MS) + bytes(n - 1)
    pressed = bytes([0]) + bytes([1, 0]) * (n // 2) + bytes([1]) * (n % 2)
    return {"records": n, "strings": [], "images": []}, order + t + pressed


# ---------------------------------------------------------------- the attacks


def lying_zstd_frame(seq: int, device_id: str, t0: int) -> Batch:
    """An honest body whose record section's zstd frame declares 16 GiB."""
    records = [ctx(t0), *click(t0 + 100)]
    good = make_batch(records, seq=seq, device_id=device_id)
    (n,) = struct.unpack_from("<I", good.body, 5)
    section = zstandard.ZstdDecompressor().decompress(good.body[9 : 9 + n])
    frame = lying_frame(section, 16 * GiB)
    body = (
        BODY_MAGIC
        + bytes([BODY_FORMAT])
        + struct.pack("<I", len(frame))
        + frame
        + good.body[9 + n :]
    )
    return Batch(replace(good.header, body_size=len(body)), body)


def unsized_zstd_frame(seq: int, device_id: str, t0: int) -> Batch:
    """A zstd frame that declares no size and decompresses past the section limit."""
    manifest, columns = _timings(1)
    mbytes = json.dumps(manifest).encode()
    section = struct.pack("<I", len(mbytes)) + mbytes + columns + bytes(MAX_SECTION_BYTES)
    frame = zstandard.ZstdCompressor(level=9, write_content_size=False).compress(section)
    return _with_body(seq, device_id, _body({}, b"", frame), SignalCounts(key_timings=1), t0)


def two_million_records(seq: int, device_id: str, t0: int) -> Batch:
    """2,000,000 key timing records in a few kB (the issue's 1,578-byte batch)."""
    n = 2_000_000
    manifest, columns = _timings(n)
    body = _body(manifest, columns)
    return _with_body(seq, device_id, body, SignalCounts(key_timings=n), T_MS)


def records_over_the_limit(seq: int, device_id: str, t0: int) -> Batch:
    """One record more than the limit, written by the agent's own encoder."""
    records: list[Record] = [
        KeyTimingRecord(t0 + i // 2, i % 2 == 0) for i in range(MAX_RECORDS + 1)
    ]
    return make_batch(records, seq=seq, device_id=device_id)


def huge_text(seq: int, device_id: str, t0: int) -> Batch:
    """A text span of 4,000,000 characters (a few kB compressed)."""
    text = "typed text " * 363_637
    records: list[Record] = [ctx(t0), TextSpanRecord(t0 + 10, t0 + 20, text, 0)]
    return make_batch(records, seq=seq, device_id=device_id)


def huge_keyframes(seq: int, device_id: str, t0: int) -> Batch:
    """Twenty keyframes of 8192 x 8192, each followed by a click (the issue's 165 KB)."""
    records: list[Record] = [ctx(t0, 8192, 8192)]
    images = {}
    for i in range(20):
        blob = flat_png(8192, 8192, (i, 2 * i, 3 * i))
        images[image_id(blob)] = blob
        records += [keyframe(t0 + 10 + 1000 * i, blob, 8192, 8192), *click(t0 + 500 + 1000 * i)]
    return make_batch(records, images, seq=seq, device_id=device_id)


def lying_png(seq: int, device_id: str, t0: int) -> Batch:
    """A PNG whose header says 13000 x 13000 where its record says 64 x 64."""
    blob = flat_png(13_000, 13_000)
    records = [ctx(t0, 64, 64), keyframe(t0 + 10, blob, 64, 64), *click(t0 + 500)]
    return make_batch(records, {image_id(blob): blob}, seq=seq, device_id=device_id)


def huge_base(seq: int, device_id: str, t0: int) -> Batch:
    """A delta on a keyframe of 13000 x 13000 (its PNG says so too)."""
    base = flat_png(13_000, 13_000)
    tile = png(Image.new("RGB", (16, 16), (200, 10, 10)))
    records = [
        ctx(t0, 13_000, 13_000),
        keyframe(t0 + 10, base, 13_000, 13_000),
        delta(t0 + 20, image_id(base), tile, 13_000, 13_000),
        *click(t0 + 500),
    ]
    images = {image_id(base): base, image_id(tile): tile}
    return make_batch(records, images, seq=seq, device_id=device_id)


def huge_tile_image(seq: int, device_id: str, t0: int) -> Batch:
    """A delta of one 16 px tile whose packed image is 13000 x 13000."""
    base = png(screen(64, 48, 1))
    tiles = flat_png(13_000, 13_000)
    records = [
        ctx(t0),
        keyframe(t0 + 10, base, 64, 48),
        delta(t0 + 20, image_id(base), tiles, 64, 48),
        *click(t0 + 500),
    ]
    images = {image_id(base): base, image_id(tiles): tiles}
    return make_batch(records, images, seq=seq, device_id=device_id)


def garbage_image(seq: int, device_id: str, t0: int) -> Batch:
    """A keyframe blob of random bytes."""
    blob = random.Random(seq).randbytes(4096)
    records = [ctx(t0), keyframe(t0 + 10, blob, 64, 48), *click(t0 + 500)]
    return make_batch(records, {image_id(blob): blob}, seq=seq, device_id=device_id)


def undecodable_second_frame(seq: int, device_id: str, t0: int) -> Batch:
    """A good keyframe and a click (written first), then a keyframe whose PNG
    header is right and whose pixels are garbage: all of it must be undone."""
    good = png(screen(64, 48, 2))
    broken = flat_png(64, 48)  # signature, IHDR and PLTE: 48 bytes; IDAT's data from 56
    broken = broken[:56] + bytes(b ^ 0x5A for b in broken[56:-16]) + broken[-16:]
    records = [
        ctx(t0),
        keyframe(t0 + 10, good, 64, 48),
        *click(t0 + 500),
        keyframe(t0 + 1000, broken, 64, 48),
        *click(t0 + 1500),
    ]
    images = {image_id(good): good, image_id(broken): broken}
    return make_batch(records, images, seq=seq, device_id=device_id)


def progressive_jpeg(seq: int, device_id: str, t0: int) -> Batch:
    """A progressive JPEG, which the agent never writes (many scans: slow to decode)."""
    buf = io.BytesIO()
    screen(64, 48, 3).save(buf, format="JPEG", progressive=True)
    blob = buf.getvalue()
    records = [ctx(t0), keyframe(t0 + 10, blob, 64, 48), *click(t0 + 500)]
    return make_batch(records, {image_id(blob): blob}, seq=seq, device_id=device_id)


def too_many_chains(seq: int, device_id: str, t0: int) -> Batch:
    """Nine keyframes whose deltas all come after the last of them: nine
    frames to hold at once, where the agent continues four windows' chains."""
    records: list[Record] = [ctx(t0)]
    images = {}
    keys = []
    for i in range(9):
        blob = png(screen(64, 48, 10 + i, [(4 * i, 30)]))
        images[image_id(blob)] = blob
        keys.append(image_id(blob))
        records.append(keyframe(t0 + 10 + i, blob, 64, 48))
    for i, key in enumerate(keys):
        tile = png(Image.new("RGB", (16, 16), (i, 0, 0)))
        images[image_id(tile)] = tile
        records.append(delta(t0 + 100 + i, key, tile, 64, 48))
    records += click(t0 + 500)
    return make_batch(records, images, seq=seq, device_id=device_id)


@dataclass(frozen=True)
class Attack:
    make: Callable[[int, str, int], Batch]
    reason: str
    #: Words the rejection's detail must hold.
    detail: str


HOSTILE: dict[str, Attack] = {
    "zstd frame declaring 16 GiB": Attack(lying_zstd_frame, "over a limit", "declares"),
    "zstd frame without a size, past the limit": Attack(
        unsized_zstd_frame, "over a limit", "decompresses to over"
    ),
    "2,000,000 tiny records": Attack(two_million_records, "over a limit", "2000000 records"),
    "one record over the limit": Attack(records_over_the_limit, "over a limit", "65537 records"),
    "a text of 4,000,000 characters": Attack(huge_text, "over a limit", "string length"),
    "20 keyframes of 8192 x 8192": Attack(huge_keyframes, "over a limit", "8192x8192 frame"),
    "a 13000 x 13000 PNG the record calls 64 x 64": Attack(
        lying_png, "inconsistent body", "13000x13000, its record says 64x64"
    ),
    "a delta on a 13000 x 13000 keyframe": Attack(huge_base, "over a limit", "13000x13000"),
    "a delta whose tiles image is 13000 x 13000": Attack(
        huge_tile_image, "inconsistent body", "13000x13000, its record says 16x16"
    ),
    "an image of random bytes": Attack(garbage_image, "invalid body", "not a PNG, WebP or JPEG"),
    "a second keyframe whose pixels are garbage": Attack(
        undecodable_second_frame, "invalid body", "does not reassemble"
    ),
    "a progressive JPEG": Attack(progressive_jpeg, "invalid body", "progressive"),
    "nine chains held at once": Attack(too_many_chains, "over a limit", "9 chains"),
}
