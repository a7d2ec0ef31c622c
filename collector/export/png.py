"""PNG files of the exported frames, written fast and in little memory.

This module owns how a frame becomes a PNG file. Frames are RGB, 8 bits per
channel, non-interlaced, every row with filter type 0 (None), deflated by
``zlib`` at the level asked for, in ``IDAT`` chunks of at most
``IDAT_BYTES``. Any PNG reader reads them; they are lossless (the pixels
decode exactly).

Why not ``Image.save(format="PNG")``: Pillow chooses a filter per row, which
costs more than it saves on these frames (``bench/export.py``). ``zlib``
releases the GIL while it compresses, so :class:`PngEncoder` can compress
frames on worker threads.

Memory: a frame is read ``STRIP_ROWS`` rows at a time and its compressed
bytes go to the file chunk by chunk, so writing a frame costs a strip and a
chunk, not copies of the frame. :class:`PngEncoder` has at most ``jobs + 1``
frames in flight (``write`` waits for the oldest beyond that); the caller
must not change a frame while ``in_flight`` says it is.

The files are streamed in place, not through ``overt.files.atomic_write``
(which takes the whole content): they are written into the export's hidden
output directory, which is published whole once every file is fsynced.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Rows of a frame copied out of it at a time.
STRIP_ROWS = 64
#: The largest ``IDAT`` chunk written.
IDAT_BYTES = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def write_png(img: Image.Image, stream: IO[bytes], level: int = 1) -> None:
    """``img`` (converted to RGB) as a PNG on ``stream``, rows unfiltered, deflated at ``level``."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    width, height = rgb.size
    stream.write(SIGNATURE)
    stream.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
    deflate = zlib.compressobj(level)
    pending = bytearray()
    stride = 3 * width
    strip = bytearray((stride + 1) * STRIP_ROWS)  # each row: filter byte 0, then its pixels
    for top in range(0, height, STRIP_ROWS):
        rows = min(STRIP_ROWS, height - top)
        raw = rgb.crop((0, top, width, top + rows)).tobytes()
        for y in range(rows):
            start = y * (stride + 1) + 1
            strip[start : start + stride] = raw[y * stride : (y + 1) * stride]
        pending += deflate.compress(memoryview(strip)[: (stride + 1) * rows])
        while len(pending) >= IDAT_BYTES:
            stream.write(_chunk(b"IDAT", bytes(pending[:IDAT_BYTES])))
            del pending[:IDAT_BYTES]
    pending += deflate.flush()
    for start in range(0, len(pending), IDAT_BYTES):
        stream.write(_chunk(b"IDAT", bytes(pending[start : start + IDAT_BYTES])))
    stream.write(_chunk(b"IEND", b""))


def encode_png(img: Image.Image, level: int = 1) -> bytes:
    """``img`` as PNG bytes (see :func:`write_png`)."""
    buf = io.BytesIO()
    write_png(img, buf, level)
    return buf.getvalue()


def _write_file(img: Image.Image, path: Path, level: int) -> None:
    with open(path, "wb") as stream:
        write_png(img, stream, level)
        stream.flush()
        os.fsync(stream.fileno())


class PngJob:
    """One frame being written to ``path``; ``result`` waits for it and
    raises the ``OSError`` that stopped it."""

    def __init__(self, path: Path, img: Image.Image, future: Future[None] | None) -> None:
        self.path = path
        self.img: Image.Image | None = img if future is not None else None
        self._future = future

    def done(self) -> bool:
        return self._future is None or self._future.done()

    def result(self) -> None:
        if self._future is not None and not self._future.cancelled():
            self._future.result()
        self.img = None

    def cancel(self) -> None:
        """Stop the job if it has not started; wait for it otherwise (errors ignored)."""
        if self._future is not None and not self._future.cancel():
            self._future.exception()
        self.img = None


class PngEncoder:
    """Writes frames as PNG files here (``jobs`` 0) or on ``jobs`` worker threads.

    ``write`` returns a :class:`PngJob`; it raises the ``OSError`` of an
    earlier job that it had to wait for. ``close`` stops the threads (jobs
    not yet started are dropped, running ones finish).
    """

    def __init__(self, level: int, jobs: int = 0) -> None:
        self.level = level
        self.jobs = jobs
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="overt-png") if jobs else None
        self._flight: deque[PngJob] = deque()

    def write(self, img: Image.Image, path: Path) -> PngJob:
        if self._pool is None:
            _write_file(img, path, self.level)
            return PngJob(path, img, None)
        while self._flight and self._flight[0].done():
            self._flight.popleft().result()
        while len(self._flight) > self.jobs:
            self._flight.popleft().result()
        job = PngJob(path, img, self._pool.submit(_write_file, img, path, self.level))
        self._flight.append(job)
        return job

    def in_flight(self, img: Image.Image) -> bool:
        """Whether a job still reads ``img``."""
        return any(job.img is img and not job.done() for job in self._flight)

    def wait(self) -> None:
        """Wait for every job; raises the first job's ``OSError``."""
        while self._flight:
            self._flight.popleft().result()

    def close(self) -> None:
        self._flight.clear()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
