"""Screenshot images and frames, as body format 1 holds them.

This module owns the image blobs' formats (``BLOB_FORMATS``) and ids, how
an image's format and size are read from its header before a pixel is
decoded, and delta reassembly: a keyframe is one image of the whole frame;
a delta is an image packing the tiles that changed, pasted into the frame
before it. It does not choose codecs or grab anything (the agent's
``agent.pipeline.codecs`` and ``screens`` do); its frame limits are
``overt.wire.body``'s.

docs/FORMATS.md ("Screenshot images and frames") specifies the packing.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Iterable, Iterator, Sequence

from PIL import Image

from .body import MAX_FRAME_PIXELS, MAX_FRAME_SIDE
from .errors import FrameError, ImageError
from .records import ScreenshotKind, ScreenshotRecord


def image_id(data: bytes) -> str:
    """Content address of an image blob: the first 24 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:24]


def tile_runs(
    tiles: Sequence[tuple[int, int]], columns: int
) -> Iterator[tuple[int, int, int, int]]:
    """Tiles side by side in a row of the frame that are also side by side in a
    row of the packed image, as (index of the first, how many, its column,
    its row): one crop and paste per run instead of per tile (a 1080p delta
    of half the frame at 16 px: 4,000 tiles, about 60 runs)."""
    i, count = 0, len(tiles)
    while i < count:
        col, row = tiles[i]
        n = 1
        while i + n < count and (i + n) % columns and tiles[i + n] == (col + n, row):
            n += 1
        yield i, n, col, row
        i += n


#: The formats a screenshot blob is in: what ``encode_image`` writes, and PNG.
BLOB_FORMATS = ("WEBP", "JPEG", "PNG")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PPM_HEADER = re.compile(rb"P6\s+(\d{1,9})\s+(\d{1,9})\s+255\s")
#: JPEG start-of-frame markers; the agent (Pillow's default) writes baseline, 0xC0.
_JPEG_FRAMES = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD))
_JPEG_SEQUENTIAL = frozenset((0xC0, 0xC1))


def image_header(blob: bytes) -> tuple[str, int, int]:
    """The format (a ``BLOB_FORMATS`` name, or ``"PPM"``) and the width and
    height an image states in its header, read without decoding it.

    Raises ``ImageError`` for anything else, and for images the agent
    never writes and that cost far more to decode than their size says: an
    animated WebP, a progressive or arithmetic-coded JPEG.
    """
    kind, width, height = _header(blob)
    if width <= 0 or height <= 0:
        raise ImageError(f"a {kind} image of {width}x{height} pixels")
    return kind, width, height


def _header(blob: bytes) -> tuple[str, int, int]:
    if blob[:8] == _PNG_SIGNATURE:
        if len(blob) < 24 or blob[12:16] != b"IHDR":
            raise ImageError("a PNG image without its header chunk")
        width, height = struct.unpack(">II", blob[16:24])
        return "PNG", width, height
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return ("WEBP", *_webp_size(blob))
    if blob[:3] == b"\xff\xd8\xff":
        return ("JPEG", *_jpeg_size(blob))
    ppm = _PPM_HEADER.match(blob[:32])
    if ppm is not None:
        return "PPM", int(ppm[1]), int(ppm[2])
    raise ImageError("not a PNG, WebP or JPEG image")


def _webp_size(blob: bytes) -> tuple[int, int]:
    chunk = blob[12:16]
    if chunk == b"VP8 " and len(blob) >= 30 and blob[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", blob[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(blob) >= 25 and blob[20] == 0x2F:
        bits = int.from_bytes(blob[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(blob) >= 30:
        if blob[20] & 0x02:
            raise ImageError("an animated WebP image")
        return int.from_bytes(blob[24:27], "little") + 1, int.from_bytes(blob[27:30], "little") + 1
    raise ImageError("a WebP image without its size")


def _jpeg_size(blob: bytes) -> tuple[int, int]:
    pos, end = 2, len(blob)
    while pos + 4 <= end:
        if blob[pos] != 0xFF:
            raise ImageError("a JPEG image with a broken marker")
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _JPEG_FRAMES:
            if marker not in _JPEG_SEQUENTIAL:
                raise ImageError("a progressive, lossless or arithmetic-coded JPEG image")
            if pos + 9 > end:
                break
            height, width = struct.unpack(">HH", blob[pos + 5 : pos + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            break
        (length,) = struct.unpack(">H", blob[pos + 2 : pos + 4])
        pos += 2 + length
    raise ImageError("a JPEG image without its frame header")


def open_image(
    blob: bytes, size: tuple[int, int], formats: Sequence[str] = BLOB_FORMATS
) -> Image.Image:
    """``blob`` decoded to RGB. It must be an image of one of ``formats`` and
    of ``size`` (at most ``MAX_FRAME_PIXELS``), which its header is checked
    for before a pixel is decoded; raises ``FrameError`` when it is another
    size, ``ImageError`` when it is not such an image or does not decode."""
    width, height = size
    if width <= 0 or height <= 0 or width * height > MAX_FRAME_PIXELS:
        raise FrameError(f"an image of {width}x{height} is over the frame limits")
    try:
        kind, w, h = image_header(blob)
        if kind not in formats:
            raise ImageError(f"a {kind} image where {', '.join(formats)} is expected")
        if (w, h) != size:
            raise FrameError(f"an image of {w}x{h} where its record says {width}x{height}")
        with Image.open(io.BytesIO(blob), formats=(kind,)) as opened:
            if opened.size != size or getattr(opened, "n_frames", 1) != 1:
                raise FrameError(f"an image that is not the {width}x{height} its header says")
            return opened.convert("RGB")
    except (OSError, ValueError, struct.error) as exc:
        raise ImageError(f"cannot decode screenshot: {exc}") from exc


def apply_delta(frame: Image.Image, rec: ScreenshotRecord, blob: bytes) -> None:
    """Paste the tiles of delta ``rec`` (its image ``blob``) into ``frame``, in
    place: ``frame`` is its chain's frame before it. The packed image must be
    ``columns`` tiles wide and as many rows as the tiles fill (checked before
    it is decoded)."""
    if rec.kind is not ScreenshotKind.DELTA or rec.tile <= 0 or rec.columns <= 0:
        raise ImageError("reassemble takes delta records after the keyframe")
    if (rec.width, rec.height) != frame.size:
        raise ImageError("a delta does not match the keyframe's size")
    t, w, h = rec.tile, rec.width, rec.height
    rows = -(-len(rec.tiles) // rec.columns)
    packed = open_image(blob, (rec.columns * t, rows * t), formats=(*BLOB_FORMATS, "PPM"))
    for i, n, col, row in tile_runs(rec.tiles, rec.columns):
        if col < 0 or row < 0 or (col + n - 1) * t >= w or row * t >= h:
            raise ImageError("a delta's tile lies outside the frame")
        cw, ch = min(n * t, w - col * t), min(t, h - row * t)
        sx, sy = (i % rec.columns) * t, (i // rec.columns) * t
        frame.paste(packed.crop((sx, sy, sx + cw, sy + ch)), (col * t, row * t))


def reassemble(
    keyframe: bytes,
    deltas: Iterable[tuple[ScreenshotRecord, bytes]] = (),
    *,
    size: tuple[int, int] | None = None,
) -> Image.Image:
    """The frame shown after applying ``deltas`` (in order) to ``keyframe``.

    ``keyframe`` is a blob (or the PPM of a frame reassembled before) of
    ``size`` when given, and within the frame limits of ``overt.wire.body``
    in any case: its header is read first, and no image is decoded that is
    larger than its record says (``FrameError``).
    """
    try:
        if size is None:
            _, w, h = image_header(keyframe)
            size = (w, h)
        if max(size) > MAX_FRAME_SIDE:
            raise FrameError(f"a frame of {size[0]}x{size[1]} is over the frame limits")
        img = open_image(keyframe, size, formats=(*BLOB_FORMATS, "PPM"))
        for rec, blob in deltas:
            apply_delta(img, rec, blob)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot reassemble screenshot: {exc}") from exc
    return img
