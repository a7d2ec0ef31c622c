"""The batch body (format 1): the records and image blobs of one batch, and its limits.

This module owns the body container — magic and version, the zstd-compressed
record section with its JSON manifest, the pointer stream and the image
blobs — and the limits a reader holds every body to, refusing one over them
(``BodyLimitError``, naming the limit) before it allocates for it. The
record section's columns are ``overt.wire._columns``; the path records'
bit-packed pointer stream is ``overt.wire._pointer``. It does not batch,
seal or store anything, and reads no clock.

docs/FORMATS.md ("Batch body") specifies the bytes and says how each limit
follows from what an agent can write. A new record kind or field is a new
body format.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import zstandard

from . import _columns, _pointer
from .errors import BodyFormatError
from .errors import BodyLimitError as BodyLimitError  # raised here; importable from here
from .records import Record

BODY_FORMAT = 1
BODY_MAGIC = b"OVTB"
ZSTD_LEVEL = 9
_PREFIX = len(BODY_MAGIC) + 1 + 4  # magic, version, length of the zstd frame

# Limits (docs/FORMATS.md says how each follows from the agent).
MAX_RECORDS = 65_536
MAX_SECTION_BYTES = 32 * 2**20
MAX_STRING_CHARS = 65_536
MAX_STRINGS_CHARS = 2**20
MAX_PATH_STEPS = 262_144
MAX_SCREENSHOTS = 8_192
MAX_TILES = 262_144
MAX_FRAME_SIDE = 7_680
MAX_FRAME_PIXELS = 7_680 * 4_320
MAX_SOURCE_SIDE = 65_535
MAX_LIVE_CHAINS = 8
#: What the limits above were derived from (tests hold the agent to them).
DERIVED_FROM_BATCH_BYTES = 512 * 1024
DERIVED_FROM_BATCH_AGE_S = 3_600
#: zstd input fed per call when decompressing the record section: a call
#: makes at most 32 KiB of output per input byte (a 128 KiB block in a
#: 4-byte RLE block), so the limit is overshot by 8 MiB at most.
_ZSTD_STEP = 256


def encode_body(records: Sequence[Record], images: Mapping[str, bytes]) -> bytes:
    """Pack records and image blobs into a body."""
    strings = _columns.Strings()
    chunks, stream = _columns.write_columns(records, strings)
    blobs = list(images.items())
    manifest = {
        "records": len(records),
        "strings": strings.table,
        "images": [[k, len(v)] for k, v in blobs],
    }
    mbytes = json.dumps(manifest, separators=(",", ":"), ensure_ascii=True).encode()
    section = struct.pack("<I", len(mbytes)) + mbytes + b"".join(chunks)
    frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(section)
    return b"".join(
        [BODY_MAGIC, bytes([BODY_FORMAT]), struct.pack("<I", len(frame)), frame, stream]
        + [v for _, v in blobs]
    )


def decode_body(data: bytes) -> tuple[list[Record], dict[str, bytes]]:
    """Unpack a body; raises ``BodyFormatError`` when it is not one, and
    ``BodyLimitError`` (before allocating for it) when it is over a limit."""
    if len(data) < _PREFIX or data[: len(BODY_MAGIC)] != BODY_MAGIC:
        raise BodyFormatError("not a batch body (bad magic)")
    if data[len(BODY_MAGIC)] != BODY_FORMAT:
        raise BodyFormatError(f"unknown batch body format {data[len(BODY_MAGIC)]}")
    try:
        return _decode(data)
    except BodyFormatError:
        raise
    except (
        zstandard.ZstdError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        struct.error,
        OverflowError,
        RecursionError,
    ) as exc:
        raise BodyFormatError(f"corrupt batch body: {exc}") from exc


def _decompress_section(frame: bytes) -> bytearray:
    """The record section from its zstd frame, which must be all of ``frame``.

    The frame's own header is checked first (python-zstandard allocates
    what a frame declares, whatever ``max_output_size`` says), then the
    frame is decompressed a little at a time and given up as soon as it
    makes more than the limit (a frame need not declare its size, and a
    lying one is caught here too).
    """
    declared = zstandard.frame_content_size(frame)  # -1: not declared
    if declared > MAX_SECTION_BYTES:
        raise BodyLimitError(
            "record section",
            f"its zstd frame declares {declared} bytes, at most {MAX_SECTION_BYTES}",
        )
    window = zstandard.get_frame_parameters(frame).window_size
    if window > MAX_SECTION_BYTES:
        raise BodyLimitError(
            "record section",
            f"its zstd frame asks for a {window}-byte window, at most {MAX_SECTION_BYTES}",
        )
    reader = zstandard.ZstdDecompressor(max_window_size=MAX_SECTION_BYTES).decompressobj()
    section = bytearray()
    view = memoryview(frame)
    for pos in range(0, len(frame), _ZSTD_STEP):
        section += reader.decompress(view[pos : pos + _ZSTD_STEP])
        if len(section) > MAX_SECTION_BYTES:
            raise BodyLimitError(
                "record section", f"it decompresses to over {MAX_SECTION_BYTES} bytes"
            )
        if reader.eof:
            if reader.unused_data or pos + _ZSTD_STEP < len(frame):
                raise BodyFormatError("bytes after the record section's zstd frame")
            break
    if not reader.eof:
        raise BodyFormatError("the record section's zstd frame is cut off")
    if declared >= 0 and len(section) != declared:
        raise BodyFormatError("the record section is not the size its zstd frame declares")
    return section


def _manifest(section: bytearray) -> tuple[dict[str, Any], int]:
    """The section's JSON manifest, checked against the limits, and where the columns start."""
    (m,) = struct.unpack_from("<I", section, 0)
    if 4 + m > len(section):
        raise BodyFormatError("the manifest is longer than the record section")
    manifest = json.loads(section[4 : 4 + m])
    if not isinstance(manifest, dict):
        raise BodyFormatError("the manifest is not a JSON object")
    strings = manifest["strings"]
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise BodyFormatError("string table holds a non-string")
    longest = max(map(len, strings), default=0)
    if longest > MAX_STRING_CHARS:
        raise BodyLimitError(
            "string length", f"a string of {longest} characters, at most {MAX_STRING_CHARS}"
        )
    total = sum(map(len, strings))
    if total > MAX_STRINGS_CHARS:
        raise BodyLimitError(
            "string table", f"{total} characters of strings, at most {MAX_STRINGS_CHARS}"
        )
    images = manifest["images"]
    if not isinstance(images, list):
        raise BodyFormatError("bad image list")
    if len(images) > MAX_SCREENSHOTS:
        raise BodyLimitError("images", f"{len(images)} image blobs, at most {MAX_SCREENSHOTS}")
    records = manifest.get("records")
    if type(records) is int and records > MAX_RECORDS:
        raise BodyLimitError("records", f"{records} records, at most {MAX_RECORDS}")
    return manifest, 4 + m


def _decode(data: bytes) -> tuple[list[Record], dict[str, bytes]]:
    (n,) = struct.unpack_from("<I", data, len(BODY_MAGIC) + 1)
    pos = _PREFIX + n
    if pos > len(data):
        raise BodyFormatError("truncated batch body")
    section = _decompress_section(data[_PREFIX:pos])
    manifest, columns_at = _manifest(section)
    cols, stream_length = _columns.read_columns(
        section, columns_at, manifest["records"], max_steps=MAX_PATH_STEPS, max_tiles=MAX_TILES
    )
    del section
    order = cols["order"]
    shots = order.count(_columns.SCREENSHOT)
    if shots > MAX_SCREENSHOTS:
        raise BodyLimitError("screenshots", f"{shots} screenshots, at most {MAX_SCREENSHOTS}")
    paths = []
    if stream_length:
        if pos + stream_length > len(data):
            raise BodyFormatError("truncated pointer stream")
        paths = _pointer.read_stream(
            data[pos : pos + stream_length], order.count(_columns.PATH), MAX_PATH_STEPS
        )
        pos += stream_length
    elif _columns.PATH in order:
        raise BodyFormatError("the path records' pointer stream is empty")
    images: dict[str, bytes] = {}
    for image_id, length in manifest["images"]:
        if not isinstance(image_id, str) or not isinstance(length, int) or length < 0:
            raise BodyFormatError("bad image entry")
        if pos + length > len(data):
            raise BodyFormatError("truncated image blob")
        images[image_id] = data[pos : pos + length]
        pos += length
    if pos != len(data):
        raise BodyFormatError("trailing bytes after the image blobs")
    return _columns.build_records(cols, manifest["strings"], paths), images
