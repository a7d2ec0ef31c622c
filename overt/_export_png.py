"""PNG files of the exported frames, written fast.

This module owns how a frame becomes PNG bytes. Frames are RGB, 8 bits per
channel, non-interlaced, one ``IDAT`` chunk, every row with filter type 0
(None), deflated by ``zlib`` at the level asked for. Any PNG reader reads
them; they are lossless (the pixels decode exactly).

Why not ``Image.save(format="PNG")``: Pillow chooses a filter per row, which
costs more than it saves on these frames. On 1280x800 frames of
``bench/export.py`` Pillow at level 1 took 20-28 ms and wrote 82-343 kB;
filter None with ``zlib`` at level 1 took 9-10 ms and wrote 79-252 kB (text
and widgets; a JPEG-decoded frame). ``zlib`` releases the GIL while it
compresses, so :class:`PngEncoder` can compress frames on worker threads.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(img: Image.Image, level: int = 1) -> bytes:
    """``img`` (converted to RGB) as PNG bytes, rows unfiltered, deflated at ``level``."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    width, height = rgb.size
    raw = rgb.tobytes()
    stride = 3 * width
    rows = bytearray((stride + 1) * height)  # each row: filter byte 0, then its pixels
    for y in range(height):
        start = y * (stride + 1) + 1
        rows[start : start + stride] = raw[y * stride : (y + 1) * stride]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, level))
        + _chunk(b"IEND", b"")
    )


class PngEncoder:
    """Encodes frames here (``jobs`` 0) or on ``jobs`` worker threads.

    ``submit`` returns a thunk that yields the bytes; ``close`` stops the
    threads (frames not yet asked for are dropped).
    """

    def __init__(self, level: int, jobs: int = 0) -> None:
        self.level = level
        self.jobs = jobs
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="overt-png") if jobs else None

    def submit(self, img: Image.Image) -> Callable[[], bytes]:
        if self._pool is None:
            data = encode_png(img, self.level)
            return lambda: data
        future: Future[bytes] = self._pool.submit(encode_png, img, self.level)
        return future.result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
