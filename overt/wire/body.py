"""Batches: grouping records by age and size, and the batch formats.

This module owns the batch header (format 1), the batch body container
(format 4; formats 3, 2 and 1 are still read) and ``Batcher``, which cuts the
record stream into batches. It does not seal, sign, spool or upload
(``agent.sinks`` and later stages do), reads no clock and does no I/O.

Header, format 1 (plaintext; canonical JSON: UTF-8, keys sorted, no spaces,
ASCII only, integers only)::

    {"app_ids": [...], "batch_id": "<32 hex>", "body_size": <int>,
     "counts": {"clicks", "contexts", "key_timings", "markers", "path_samples",
                "paths", "redactions", "screenshots", "scrolls", "shortcuts",
                "text_spans": <int>},
     "dataset_key_id": "...", "device_id": "...", "end_ms": <int>, "format": 1,
     "policy_version": <int>, "seq": <int>, "start_ms": <int>}

``clicks`` counts presses; ``paths`` and ``path_samples`` count mouse paths
and the samples they keep; ``redactions`` counts redacted matches in text
spans; times are epoch milliseconds covering every record of the body.

Body, format 4 (written; formats 3, 2 and 1 are still read)::

    "OVTB"  u8 version (4)  u32le N  <N bytes: one zstd frame>  <pointer stream>
    <image blobs>

The zstd frame holds ``u32le M``, an M-byte JSON manifest
``{"records": R, "strings": [...], "images": [[id, length], ...]}`` and then
the columns back to back, each a one-byte tag and its values: ``0`` unsigned
LEB128, ``1`` zigzag then LEB128, ``2`` IEEE-754 doubles, little-endian,
bytes shuffled (all first bytes, then all second bytes...), ``3`` the
length of the pointer stream (below) as one unsigned LEB128. The encoder
tags an integer column ``0`` when none of its values is negative (zigzag
would spend a bit on a sign that is never there: a 64-127 ms interval would
take two bytes); every value fits in a signed 64-bit integer. The pointer
stream follows the frame, not compressed (zstd cannot shrink it and spent
about 20 bytes a batch trying), then the image blobs in the manifest's
order, stored as encoded (WebP or JPEG), not recompressed.

Columns carry no names and no lengths: the schema fixes them. First
``order``, R values, each record's kind in body order (0 context, 1 click,
2 scroll, 3 path, 4 text, 5 shortcut, 6 timing, 7 screenshot, 8 marker);
then, for each kind that occurs, in that order, one column per field of its
record in declaration order, one value per record of the kind: ``t`` as the
difference from the previous record of the kind (the first: from 0),
strings and enums as indexes into the string table (optional strings: 0 for
None, else index + 1), floats as doubles, tuples as a length column then the
flattened values, pairs as a length column then the first and the second
items.

The path records' columns are instead the pointer stream's length (tag
``3``). The stream is bit-packed, most significant bit first, zero bits
padding its last byte: each path's kind (``0`` hover, ``10`` approach,
``11`` drag), then integer columns, each a sign bit (``1``: zigzag), its
order k as Exp-Golomb of order 0, then its values as Exp-Golomb of order k
(``u + 2**k`` in n bits after n - k - 1 zero bits), no header when a column
is empty: each path's samples less one; the first path's ``t``, ``x``,
``y`` (three one-value columns); the other paths' ``t``, ``x``, ``y`` as
the difference from the previous path's anchor — its last sample's time
plus its ``dwell_ms``, and its last sample's position (a path mostly starts
where and when the last one stopped: a hover where an approach ended, an
approach from the hover); ``dwell_ms``. Then, when the paths have any
step, one bit says how the steps are coded, and the steps of every path,
path after path, follow in three or four columns:

- ``0``, raw: ``dt``, ``dx``, ``dy``;
- ``1``, predicted: the period P (a one-value column), then every ``dt``
  less P, then every ``dx`` and every ``dy`` less its prediction from the
  steps before it in its path, where d is the path's ``dx`` (or ``dy``):
  nothing for the first step; ``2 * d[i-1] - d[i-2]`` when steps i, i-1 and
  i-2 have the same ``dt``; else, when ``dt[i-1] > 0``,
  ``(2 * d[i-1] * dt[i] + dt[i-1]) // (2 * dt[i-1])`` (the last step scaled
  to this one's duration, rounded half up; ``//`` rounds down); else
  ``d[i-1]``.

The encoder picks each column's order for its values, and the coding of the
steps that comes out shorter (raw when a predicted value would not fit in
64 bits); it writes P as the most common ``dt``. The agent keeps a path's
pointer every 30 ms (``mouse``), so a predicted ``dt`` costs about a bit and
a step what the hand's acceleration changed: in the batches of
``bench/session_bytes.py`` the paths cost 5.2 bytes per kept sample in
format 2, 4.0 in format 3 (then with the samples Ramer-Douglas-Peucker kept:
irregular and far apart), and under 2 in format 4 (see BENCHMARKS.md). A
path's ``dt``, ``dx`` and ``dy`` must be of one length. A new record kind or
field is a new body format.

Body, format 3 (read only): as format 4 without the bit before the steps:
they are always raw.

Body, format 2 (read only): as format 3 without a pointer stream: the path
records are columns like the other kinds', except that ``t``, ``x`` and
``y`` are the anchor differences described above (the first path's: from 0).

Body, format 1 (read only): the same container; the manifest is
``{"strings", "kinds", "columns": [[name, encoding, count, bytes], ...],
"images"}`` and names each column; every integer column is zigzag LEB128
(``varint``), the ``context.scale`` column ``f64``; path ``t`` is delta-coded
like every other ``t`` and path ``x``, ``y`` are absolute. Format 2 dropped
the names and lengths (a hundred-odd compressed bytes in every batch) and
gained the unsigned tag and the path anchors.

Limits, what a reader accepts: nothing an agent writes under any policy is
larger. ``decode_body`` refuses a body over one of them (``BodyLimitError``,
naming the limit) before it allocates for it; ``overt export`` refuses a
screenshot over the frame limits before it decodes a pixel. They follow
from the ``Batcher`` below closing a batch once its estimated raw size
(``_raw_size``: 12 bytes or more per record, 6 per path step, 4 per delta
tile, 1 per character of a text span or title) reaches ``max_bytes``
(512 KiB, ``agent.config.AgentConfig.batch_max_bytes``) or it is
``max_age_s`` old (at most 3,600 s: ``overt agent run --batch-seconds``),
and from the policy's maxima (``Screenshots.max_per_minute`` 120,
``max_width`` 7,680)::

    limit                      value       how an agent stays under it
    records                    65,536      524,288 / 12, and the carried context: 43,692
    record section (unzipped)  32 MiB      65,536 records x 12 values x 10 bytes (LEB128
                                           of 64 bits) + 262,144 tiles x 2 x 10 + 2**20
                                           string characters x 12 (JSON escapes) = 26 MB;
                                           the zstd frame's declared size and window are
                                           checked before it is decompressed, and it is
                                           decompressed only up to the limit
    characters in one string   65,536      a text span ends at a 1 s pause in typing (10 s
                                           inside a word): this is over an hour of typing
                                           at 15 keys/s without one; a title 16 times
                                           PATH_MAX
    characters in all strings  2**20       text and titles count in the estimate: 524,288
                                           before the batch closes, plus the last record's
    path steps                 262,144     87,382 before the batch closes (6 bytes each),
                                           plus the last path: a drag kept every 30 ms,
                                           87 minutes of it
    screenshots, image blobs   8,192       120 a minute for 60 minutes, and one: 7,201
    delta tiles                262,144     131,072 before the batch closes (4 bytes each),
                                           plus the last delta's: at most half a frame's
                                           64,800
    frame width and height     7,680       frames are downscaled to ``max_width`` and are
                                           the part of a window on one monitor
                                           (``grab_region``): the tallest, an 8K panel
                                           upright, is 7,680
    frame pixels               33,177,600  7,680 x 4,320, an 8K monitor either way up; also
                                           a delta's packed tiles
    grabbed width and height   65,535      the display server's 16-bit window sizes
    chains held at once        8           the encoder continues at most 4 windows' chains
                                           (``FrameEncoder.max_windows``); twice that

The agent cuts neither text spans nor titles: those two limits are a margin
over what a person's input makes, the others follow from the code. A
sealed batch is at most 8 MiB (``policies.sealed``), which bounds the
pointer stream and the image blobs. The limits bound a batch's memory, not
its time: 8,192 frames of 33 Mpx each take hours to decode.

Batcher semantics: a record is appended to the open batch, then the batch is
emitted — including that record — once it holds ``max_bytes`` of estimated
raw size or has been open ``max_age_s``. ``flush(now)`` emits an open batch
that is old enough (or any, with ``force``). A new batch that does not start
with a context record starts with the carried ``context`` (the window the
records happen in), re-timed to its first record, so every batch reads on
its own.
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import zstandard

from .errors import BodyFormatError, FormatError
from .records import (
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

BODY_FORMAT = 4  # written
BODY_FORMATS_READ = (1, 2, 3, 4)
BODY_MAGIC = b"OVTB"
ZSTD_LEVEL = 9

# Limits (see the module docstring for how each follows from the agent).
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


class BodyLimitError(BodyFormatError):
    """A body over one of the limits of the module docstring; ``limit`` names it."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"over the {limit} limit: {detail}")
        self.limit = limit


# ---------------------------------------------------------------- body codec

# Field types: t (int, delta-coded), i (int), b (bool), s (str), o (str|None),
# e (enum via string table), f (float64), I (tuple[int, ...]),
# P (tuple[tuple[int, int], ...]).
_Schema = tuple[str, type[Any], tuple[tuple[str, str, type[Any] | None], ...]]

_SCHEMAS: tuple[_Schema, ...] = (
    (
        "context",
        ContextRecord,
        (
            ("t", "t", None),
            ("app_id", "s", None),
            ("title", "o", None),
            ("title_state", "e", TitleState),
            ("x", "i", None),
            ("y", "i", None),
            ("width", "i", None),
            ("height", "i", None),
            ("scale", "f", None),
        ),
    ),
    (
        "click",
        ClickRecord,
        (
            ("t", "t", None),
            ("button", "s", None),
            ("pressed", "b", None),
            ("x", "i", None),
            ("y", "i", None),
        ),
    ),
    (
        "scroll",
        ScrollRecord,
        (
            ("t", "t", None),
            ("x", "i", None),
            ("y", "i", None),
            ("dx", "i", None),
            ("dy", "i", None),
        ),
    ),
    (
        "path",
        MousePathRecord,
        (
            ("t", "t", None),
            ("kind", "e", PathKind),
            ("x", "i", None),
            ("y", "i", None),
            ("dt", "I", None),
            ("dx", "I", None),
            ("dy", "I", None),
            ("dwell_ms", "i", None),
        ),
    ),
    (
        "text",
        TextSpanRecord,
        (("t", "t", None), ("end", "i", None), ("text", "s", None), ("redactions", "i", None)),
    ),
    ("shortcut", ShortcutRecord, (("t", "t", None), ("key", "s", None))),
    ("timing", KeyTimingRecord, (("t", "t", None), ("pressed", "b", None))),
    (
        "screenshot",
        ScreenshotRecord,
        (
            ("t", "t", None),
            ("kind", "e", ScreenshotKind),
            ("image", "s", None),
            ("width", "i", None),
            ("height", "i", None),
            ("source_width", "i", None),
            ("source_height", "i", None),
            ("base", "o", None),
            ("tile", "i", None),
            ("columns", "i", None),
            ("tiles", "P", None),
        ),
    ),
    (
        "marker",
        MarkerRecord,
        (("t", "t", None), ("kind", "e", MarkerKind), ("detail", "s", None), ("count", "i", None)),
    ),
)
for _kind, _cls, _fields in _SCHEMAS:  # the codec builds records positionally
    if tuple(f[0] for f in _fields) != tuple(f.name for f in fields(_cls)):
        raise AssertionError(f"body schema of {_kind!r} does not match {_cls.__name__}")
_KIND_OF: dict[type[Any], int] = {s[1]: i for i, s in enumerate(_SCHEMAS)}
_PATH = _KIND_OF[MousePathRecord]
_TYPECODES = {1: "b", 2: "h", 4: "i", 8: "q"}
_VARINT, _F64 = "varint", "f64"  # format-1 column encodings
_TAG_UNSIGNED, _TAG_ZIGZAG, _TAG_F64 = 0, 1, 2  # column tags (formats 2 to 4)
_TAG_POINTER = 3  # formats 3 and 4: the path records as one bit-packed pointer stream
#: Path kinds in the pointer stream: codes 0, 10 and 11 (hovers are the most common).
_POINTER_KINDS = (PathKind.HOVER, PathKind.APPROACH, PathKind.DRAG)
_LITTLE = sys.byteorder == "little"
_I64 = 2**63


def _pack(values: Sequence[int], width: int) -> bytes:
    arr = array(_TYPECODES[width], values)
    if arr.itemsize != width:  # pragma: no cover - platforms with odd C int sizes
        raise FormatError("unsupported platform integer sizes")
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    raw = arr.tobytes()
    if width == 1:
        return raw
    return b"".join(raw[i::width] for i in range(width))


def _uvarint(values: Sequence[int]) -> bytes:
    """Unsigned LEB128; every value in [0, 2**63)."""
    out = bytearray()
    append = out.append
    for u in values:
        if not 0 <= u < _I64:
            raise FormatError("an integer in a record does not fit in 64 bits")
        while u >= 0x80:
            append((u & 0x7F) | 0x80)
            u >>= 7
        append(u)
    return bytes(out)


def _varint(values: Sequence[int]) -> bytes:
    """Zigzag, then LEB128; every value in [-2**63, 2**63)."""
    out = bytearray()
    append = out.append
    for v in values:
        if not -_I64 <= v < _I64:
            raise FormatError("an integer in a record does not fit in 64 bits")
        u = (v << 1) ^ (v >> 63)
        while u >= 0x80:
            append((u & 0x7F) | 0x80)
            u >>= 7
        append(u)
    return bytes(out)


def _unvarint(data: bytes | bytearray, count: int) -> list[int]:
    out, end = _read_varints(data, 0, count, zigzag=True)
    if end != len(data):
        raise BodyFormatError("column length does not match its manifest entry")
    return out


def _read_varints(
    data: bytes | bytearray, pos: int, count: int, *, zigzag: bool
) -> tuple[list[int], int]:
    """``count`` LEB128 values from ``data[pos:]``; returns them and the position after."""
    out: list[int] = []
    append = out.append
    acc = shift = 0
    limit = 64 if zigzag else 63
    end = len(data)
    while len(out) < count:
        if pos >= end:
            raise BodyFormatError("a column is shorter than its records need")
        b = data[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 63:
                raise BodyFormatError("varint longer than 64 bits")
        else:
            if acc >> limit:
                raise BodyFormatError("an integer does not fit in 64 bits")
            append((acc >> 1) ^ -(acc & 1) if zigzag else acc)
            acc = shift = 0
    return out, pos


def _unpack(data: bytes | bytearray, width: int, count: int) -> list[int]:
    if len(data) != width * count:
        raise BodyFormatError("column length does not match its manifest entry")
    if width > 1:
        raw = bytearray(len(data))
        for i in range(width):
            raw[i::width] = data[i * count : (i + 1) * count]
        data = bytes(raw)
    arr = array(_TYPECODES[width])
    arr.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = []
        self.index: dict[str, int] = {}

    def ref(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def _chain(paths: Sequence[MousePathRecord]) -> dict[str, list[int]]:
    """Each path's first sample (t, x, y) as a difference from the previous
    path's anchor: its last sample, with its dwell added to the time (the
    first path: from zero). Pointer paths mostly start where and when the
    last one stopped: a hover where the approach before it ended, an approach
    where the hover before it was."""
    at = ax = ay = 0
    ts, xs, ys = [], [], []
    for p in paths:
        ts.append(p.t - at)
        xs.append(p.x - ax)
        ys.append(p.y - ay)
        at, ax, ay = p.t + sum(p.dt) + p.dwell_ms, p.x + sum(p.dx), p.y + sum(p.dy)
    return {"t": ts, "x": xs, "y": ys}


def _unchain(
    ts: list[int],
    xs: list[int],
    ys: list[int],
    dts: list[Any],
    dxs: list[Any],
    dys: list[Any],
    dwells: list[int],
) -> None:
    """Undo :func:`_chain` in place (``ts``, ``xs``, ``ys`` become absolute)."""
    at = ax = ay = 0
    for i in range(len(ts)):
        ts[i] += at
        xs[i] += ax
        ys[i] += ay
        at, ax, ay = ts[i] + sum(dts[i]) + dwells[i], xs[i] + sum(dxs[i]), ys[i] + sum(dys[i])


class _BitWriter:
    """Bits, most significant first, into bytes; the last byte is padded with zeros."""

    __slots__ = ("_acc", "_bits", "_out")

    def __init__(self) -> None:
        self._acc = 0
        self._bits = 0
        self._out = bytearray()

    def write(self, value: int, width: int) -> None:
        """``value`` (below ``2**width``) in ``width`` bits."""
        self._acc = (self._acc << width) | value
        self._bits += width
        if self._bits >= 64:  # keep the accumulator small: whole bytes go out
            spare = self._bits & 7
            self._out += (self._acc >> spare).to_bytes(self._bits >> 3, "big")
            self._acc &= (1 << spare) - 1
            self._bits = spare

    def exp_golomb(self, u: int, k: int) -> None:
        """``u`` ≥ 0 as Exp-Golomb of order ``k``: ``u + 2**k`` in n bits after n - k - 1 zeros."""
        v = u + (1 << k)
        self.write(v, 2 * v.bit_length() - k - 1)

    def getvalue(self) -> bytes:
        pad = -self._bits & 7
        return bytes(self._out) + (self._acc << pad).to_bytes((self._bits + pad) >> 3, "big")


class _BitReader:
    """The reading side of ``_BitWriter``, from a byte offset of ``data``."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._end = 8 * len(data)
        self.pos = 8 * offset  # in bits

    @property
    def left(self) -> int:
        return self._end - self.pos

    def read(self, width: int) -> int:
        end = self.pos + width
        if end > self._end:
            raise BodyFormatError("the pointer stream is cut off")
        first, last = self.pos >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big") >> (8 * last - end)
        self.pos = end
        return chunk & ((1 << width) - 1)

    def exp_golomb(self, k: int) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > 64:
                raise BodyFormatError("an Exp-Golomb code longer than 64 bits")
        return ((1 << (zeros + k)) | self.read(zeros + k)) - (1 << k)


def _exp_golomb_order(values: Sequence[int]) -> int:
    """The order k that codes ``values`` (≥ 0), and k itself, in about the fewest bits.

    A value of bit length L takes about 2 * max(L, k + 1) - k - 1 bits at order
    k, so the sums come from a histogram of bit lengths (ignoring the rare
    carry that adds a bit); k takes 2 * bit_length(k + 1) - 1 bits.
    """
    lengths: dict[int, int] = {}
    for u in values:
        n = u.bit_length()
        lengths[n] = lengths.get(n, 0) + 1
    return min(
        range(max(lengths) + 1),
        key=lambda k: (
            2 * (k + 1).bit_length() + sum(c * (2 * max(n, k + 1) - k) for n, c in lengths.items())
        ),
    )


def _write_pointer_column(w: _BitWriter, values: Sequence[int]) -> None:
    """A column of integers: a sign bit (zigzag when any is negative), its
    Exp-Golomb order k (order 0), then each value at order k. No header when
    empty: the reader knows how many values to expect."""
    if not values:
        return
    if not all(-_I64 <= v < _I64 for v in values):
        raise FormatError("an integer in a record does not fit in 64 bits")
    signed = any(v < 0 for v in values)
    us = [(v << 1) ^ (v >> 63) for v in values] if signed else values
    k = _exp_golomb_order(us)
    w.write(signed, 1)
    w.exp_golomb(k, 0)
    for u in us:
        w.exp_golomb(u, k)


def _read_pointer_column(r: _BitReader, count: int) -> list[int]:
    if count == 0:
        return []
    signed = r.read(1)
    k = r.exp_golomb(0)
    if k > 64:
        raise BodyFormatError("an Exp-Golomb order above 64")
    if count * (k + 1) > r.left:  # every value takes at least k + 1 bits
        raise BodyFormatError("the pointer stream is shorter than its records need")
    us = [r.exp_golomb(k) for _ in range(count)]
    if signed:
        if any(u >> 64 for u in us):
            raise BodyFormatError("an integer does not fit in 64 bits")
        return [(u >> 1) ^ -(u & 1) for u in us]
    if any(u >> 63 for u in us):
        raise BodyFormatError("an integer does not fit in 64 bits")
    return us


def _predict(d: Sequence[int], dt: Sequence[int], i: int) -> int:
    """Step ``i`` of a path's ``dx`` or ``dy`` (``d``) as the steps before it
    in the same path foretell it (format 4): nothing for the first step; after
    two steps as long in time as this one, the last step plus the change from
    the one before (a pointer keeps accelerating); otherwise the last step
    scaled to this step's duration, rounded half up (the last, shorter step of
    a resampled path)."""
    if i == 0:
        return 0
    if i >= 2 and dt[i] == dt[i - 1] == dt[i - 2]:
        return 2 * d[i - 1] - d[i - 2]
    if dt[i - 1] > 0:
        return (2 * d[i - 1] * dt[i] + dt[i - 1]) // (2 * dt[i - 1])
    return d[i - 1]


def _predicted_steps(paths: Sequence[MousePathRecord]) -> list[list[int]] | None:
    """The step columns of format 4's predicted coding: the period (the most
    common ``dt``, the smallest of equals), every ``dt`` less the period, and
    every ``dx`` and ``dy`` less its prediction; ``None`` when a value does not
    fit in 64 bits (the raw coding is used then)."""
    counts: dict[int, int] = {}
    for p in paths:
        for v in p.dt:
            counts[v] = counts.get(v, 0) + 1
    period = min(counts, key=lambda v: (-counts[v], v))
    dts = [v - period for p in paths for v in p.dt]
    res: list[list[int]] = [[], []]
    for p in paths:
        for col, d in zip(res, (p.dx, p.dy), strict=True):
            col.extend(d[i] - _predict(d, p.dt, i) for i in range(len(d)))
    columns = [[period], dts, *res]
    if not all(-_I64 <= v < _I64 for col in columns for v in col):
        return None
    return columns


def _pointer_stream(paths: Sequence[MousePathRecord]) -> bytes:
    """The path records of a body as one bit-packed stream (format 4).

    In order: each path's kind (``0`` hover, ``10`` approach, ``11`` drag),
    then the columns, each as ``_write_pointer_column`` writes it: samples
    less one per path; the first path's ``t``, ``x`` and ``y`` (three
    one-value columns); the other paths' ``t``, ``x``, ``y`` from the
    previous path's anchor (``_chain``); ``dwell_ms``. Then, when the paths
    have steps, one bit says how they are coded and the steps of every path,
    path after path: ``0`` raw, the ``dt``, ``dx`` and ``dy`` columns;
    ``1`` predicted, a one-value column of the period, then ``dt`` less the
    period, and ``dx`` and ``dy`` less their ``_predict``-ion. The encoder
    writes both and keeps the shorter (raw when a predicted value would not
    fit in 64 bits). Zero bits pad the last byte. Exp-Golomb with an order
    chosen per column fits small, skewed values (a hover starting 2 px from
    where the last path stopped) and large ones alike, with no table to pay
    for in every batch.
    """
    for p in paths:
        if not len(p.dt) == len(p.dx) == len(p.dy):
            raise FormatError("a path's dt, dx and dy differ in length")
    starts = _chain(paths)
    columns: list[Sequence[int]] = [[len(p.dt) for p in paths]]
    columns += [starts[name][:1] for name in ("t", "x", "y")]
    columns += [starts[name][1:] for name in ("t", "x", "y")]
    columns.append([p.dwell_ms for p in paths])

    def head() -> _BitWriter:
        w = _BitWriter()
        for p in paths:
            code = _POINTER_KINDS.index(p.kind)
            w.write((0, 0b10, 0b11)[code], min(2, code + 1))
        for values in columns:
            _write_pointer_column(w, values)
        return w

    raw = [[v for p in paths for v in getattr(p, name)] for name in ("dt", "dx", "dy")]
    if not raw[0]:
        return head().getvalue()
    best = b""
    for mode, steps in ((0, raw), (1, _predicted_steps(paths))):
        if steps is None:
            continue
        w = head()
        w.write(mode, 1)
        for values in steps:
            _write_pointer_column(w, values)
        out = w.getvalue()
        if not best or len(out) < len(best):
            best = out
    return best


def _read_pointer_stream(
    data: bytes, pos: int, count: int, version: int
) -> tuple[list[MousePathRecord], int]:
    """``count`` path records from the stream at ``data[pos:]`` (format 3 or
    4); returns them and the byte position after the stream."""
    r = _BitReader(data, pos)
    kinds = []
    for _ in range(count):
        code = r.read(1) and 1 + r.read(1)
        kinds.append(_POINTER_KINDS[code])
    steps = _read_pointer_column(r, count)
    if any(n < 0 for n in steps):
        raise BodyFormatError("a negative sample count")
    first = [_read_pointer_column(r, min(1, count)) for _ in range(3)]  # t, x, y
    rest = [_read_pointer_column(r, max(0, count - 1)) for _ in range(3)]
    ts, xs, ys = (a + b for a, b in zip(first, rest, strict=True))
    dwells = _read_pointer_column(r, count)
    total = sum(steps)
    if total > MAX_PATH_STEPS:
        raise BodyLimitError("path steps", f"{total} path steps, at most {MAX_PATH_STEPS}")
    predicted = version >= 4 and total > 0 and r.read(1) == 1
    if predicted:
        (period,) = _read_pointer_column(r, 1)
        flat = [[v + period for v in _read_pointer_column(r, total)]]
        if any(not -_I64 <= v < _I64 for v in flat[0]):
            raise BodyFormatError("an integer does not fit in 64 bits")
        flat += [_read_pointer_column(r, total) for _ in range(2)]  # residuals of dx, dy
    else:
        flat = [_read_pointer_column(r, total) for _ in range(3)]  # dt, dx, dy
    dts: list[tuple[int, ...]] = []
    dxs: list[tuple[int, ...]] = []
    dys: list[tuple[int, ...]] = []
    at = 0
    for n in steps:
        dt = flat[0][at : at + n]
        dts.append(tuple(dt))
        for out, col in ((dxs, flat[1]), (dys, flat[2])):
            d = col[at : at + n]
            if predicted:
                for i in range(n):
                    d[i] += _predict(d, dt, i)
                    if not -_I64 <= d[i] < _I64:  # else a crafted stream doubles a value per step
                        raise BodyFormatError("an integer does not fit in 64 bits")
            out.append(tuple(d))
        at += n
    _unchain(ts, xs, ys, dts, dxs, dys, dwells)
    paths = [
        MousePathRecord(*row) for row in zip(ts, kinds, xs, ys, dts, dxs, dys, dwells, strict=True)
    ]
    if r.read(-r.pos & 7):
        raise BodyFormatError("the pointer stream's padding is not zero")
    return paths, r.pos >> 3


def _columns(records: Sequence[Record], strings: _Strings) -> tuple[list[bytes], bytes]:
    """The body's columns in format-3 and format-4 order, each as its tag and its values,
    and the pointer stream (empty without path records)."""
    by_kind: list[list[Any]] = [[] for _ in _SCHEMAS]
    order: list[int] = []
    for rec in records:
        k = _KIND_OF.get(type(rec))
        if k is None:
            raise FormatError(f"not a record: {type(rec).__name__}")
        order.append(k)
        by_kind[k].append(rec)
    columns = [_int_column(order)]
    stream = b""
    for k, ((_kind, _, schema), recs) in enumerate(zip(_SCHEMAS, by_kind, strict=True)):
        if not recs:
            continue
        if k == _PATH:
            stream = _pointer_stream(recs)
            columns.append(bytes([_TAG_POINTER]) + _uvarint([len(stream)]))
            continue
        for name, ftype, _enum in schema:
            values = [getattr(r, name) for r in recs]
            if ftype == "t":
                prev, deltas = 0, []
                for v in values:
                    deltas.append(v - prev)
                    prev = v
                columns.append(_int_column(deltas))
            elif ftype in "ib":
                columns.append(_int_column([int(v) for v in values]))
            elif ftype in "se":
                columns.append(_int_column([strings.ref(str(v)) for v in values]))
            elif ftype == "o":
                columns.append(
                    _int_column([0 if v is None else strings.ref(v) + 1 for v in values])
                )
            elif ftype == "f":
                columns.append(bytes([_TAG_F64]) + _pack(_f64_bits(values), 8))
            elif ftype == "I":
                columns.append(_int_column([len(v) for v in values]))
                columns.append(_int_column([x for v in values for x in v]))
            else:  # "P"
                columns.append(_int_column([len(v) for v in values]))
                columns.append(_int_column([p[0] for v in values for p in v]))
                columns.append(_int_column([p[1] for v in values for p in v]))
    return columns, stream


def _f64_bits(values: Sequence[float]) -> list[int]:
    """Doubles as the signed 64-bit integers with the same bits."""
    return list(struct.unpack(f"<{len(values)}q", struct.pack(f"<{len(values)}d", *values)))


def _int_column(values: Sequence[int]) -> bytes:
    """Tag ``0`` and unsigned LEB128 when no value is negative, else tag ``1`` and zigzag."""
    if all(v >= 0 for v in values):
        return bytes([_TAG_UNSIGNED]) + _uvarint(values)
    return bytes([_TAG_ZIGZAG]) + _varint(values)


def encode_body(records: Sequence[Record], images: Mapping[str, bytes]) -> bytes:
    """Pack records and image blobs into a body (format 4)."""
    strings = _Strings()
    chunks, stream = _columns(records, strings)
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
    """Unpack a body of format 4, 3, 2 or 1; raises ``BodyFormatError`` when it is not one,
    and ``BodyLimitError`` (before allocating for it) when it is over a limit."""
    if len(data) < 9 or data[:4] != BODY_MAGIC:
        raise BodyFormatError("not a batch body (bad magic)")
    if data[4] not in BODY_FORMATS_READ:
        raise BodyFormatError(f"unknown batch body format {data[4]}")
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


def _manifest(section: bytearray) -> dict[str, Any]:
    """The section's JSON manifest, its string table checked against the limits."""
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
    return manifest


def _decode(data: bytes) -> tuple[list[Record], dict[str, bytes]]:
    version = data[4]
    (n,) = struct.unpack_from("<I", data, 5)
    if 9 + n > len(data):
        raise BodyFormatError("truncated batch body")
    section = _decompress_section(data[9 : 9 + n])
    manifest = _manifest(section)
    strings: list[str] = manifest["strings"]
    m = struct.unpack_from("<I", section, 0)[0]
    ipos = 9 + n  # the pointer stream (formats 3 and 4), then the image blobs
    paths: list[MousePathRecord] = []
    stream_length = 0
    if version == 1:
        cols = _columns_v1(section, 4 + m, manifest)
    else:
        cols, stream_length = _columns_v2(section, 4 + m, manifest["records"], version)
    del section
    _check_counts(cols)
    if stream_length:
        if ipos + stream_length > len(data):
            raise BodyFormatError("truncated pointer stream")
        stream = data[ipos : ipos + stream_length]
        paths, end = _read_pointer_stream(stream, 0, cols["order"].count(_PATH), version)
        if end != stream_length:
            raise BodyFormatError("the pointer stream is longer than its records")
        ipos += stream_length
    images: dict[str, bytes] = {}
    for image_id, length in manifest["images"]:
        if not isinstance(image_id, str) or not isinstance(length, int) or length < 0:
            raise BodyFormatError("bad image entry")
        if ipos + length > len(data):
            raise BodyFormatError("truncated image blob")
        images[image_id] = data[ipos : ipos + length]
        ipos += length
    if ipos != len(data):
        raise BodyFormatError("trailing bytes after the image blobs")

    order = cols["order"]
    per_kind: list[list[Record]] = []
    for k, (kind, cls, schema) in enumerate(_SCHEMAS):
        count = order.count(k)
        if count == 0:
            per_kind.append([])
            continue
        if version >= 3 and k == _PATH:
            per_kind.append(list(paths))
            continue
        field_values: list[list[Any]] = []
        for name, ftype, enum in schema:
            col = f"{kind}.{name}"
            if ftype == "t" and not (version >= 2 and k == _PATH):
                acc, out = 0, []
                for d in cols[col]:
                    acc += d
                    out.append(acc)
                field_values.append(out)
            elif ftype in "ti":
                field_values.append(list(cols[col]))
            elif ftype == "b":
                field_values.append([_bool(v) for v in cols[col]])
            elif ftype == "s":
                field_values.append([strings[_index(i)] for i in cols[col]])
            elif ftype == "e":
                assert enum is not None
                field_values.append([enum(strings[_index(i)]) for i in cols[col]])
            elif ftype == "o":
                field_values.append([None if i == 0 else strings[_index(i - 1)] for i in cols[col]])
            elif ftype == "f":
                raw = cols[col]
                packed = struct.pack(f"<{len(raw)}q", *raw)
                field_values.append(list(struct.unpack(f"<{len(raw)}d", packed)))
            elif ftype == "I":
                field_values.append(_split(cols[col + ".n"], [cols[col]]))
            else:
                field_values.append(_split(cols[col + ".n"], [cols[col + ".a"], cols[col + ".b"]]))
        for values in field_values:
            if len(values) != count:
                raise BodyFormatError(f"column lengths of {kind} records disagree")
        if version >= 2 and k == _PATH:
            t, _, x, y, dt, dx, dy, dwell = field_values
            _unchain(t, x, y, dt, dx, dy, dwell)
        per_kind.append([cls(*row) for row in zip(*field_values, strict=True)])
    cursors = [0] * len(_SCHEMAS)
    records: list[Record] = []
    for k in order:
        records.append(per_kind[k][cursors[k]])
        cursors[k] += 1
    return records, images


_SHOT = _KIND_OF[ScreenshotRecord]
#: Format 1 names its columns, so values are counted over all of them: as
#: many as the limits on records (12 values each, the order included),
#: path steps (3) and tiles (2) allow.
_MAX_V1_VALUES = 12 * MAX_RECORDS + 3 * MAX_PATH_STEPS + 2 * MAX_TILES


def _check_counts(cols: dict[str, list[int]]) -> None:
    """The record, screenshot, path step and tile counts against the limits
    (formats 2 to 4 check the steps and tiles before reading them)."""
    order = cols["order"]
    if len(order) > MAX_RECORDS:
        raise BodyLimitError("records", f"{len(order)} records, at most {MAX_RECORDS}")
    shots = order.count(_SHOT)
    if shots > MAX_SCREENSHOTS:
        raise BodyLimitError("screenshots", f"{shots} screenshots, at most {MAX_SCREENSHOTS}")
    _check_flat("path", len(cols.get("path.dt", ())))
    _check_flat("screenshot", len(cols.get("screenshot.tiles.a", ())))


def _check_flat(kind: str, values: int) -> None:
    """The path steps or delta tiles of a body, counted before they are read."""
    if kind == "path" and values > MAX_PATH_STEPS:
        raise BodyLimitError("path steps", f"{values} path steps, at most {MAX_PATH_STEPS}")
    if kind == "screenshot" and values > MAX_TILES:
        raise BodyLimitError("delta tiles", f"{values} delta tiles, at most {MAX_TILES}")


def _columns_v1(
    section: bytes | bytearray, pos: int, manifest: dict[str, Any]
) -> dict[str, list[int]]:
    """Format 1: named columns with their counts and lengths in the manifest."""
    if manifest["kinds"] != [s[0] for s in _SCHEMAS]:
        raise BodyFormatError("unknown record kinds")
    cols: dict[str, list[int]] = {}
    values = 0
    for name, encoding, count, nbytes in manifest["columns"]:
        if not isinstance(count, int) or not isinstance(nbytes, int) or count < 0 or nbytes < 0:
            raise BodyFormatError(f"bad column entry {name!r}")
        values += count
        if values > _MAX_V1_VALUES:
            raise BodyLimitError("records", f"over {_MAX_V1_VALUES} column values")
        end = pos + nbytes
        if end > len(section):
            raise BodyFormatError("truncated column data")
        if encoding == _VARINT:
            cols[name] = _unvarint(section[pos:end], count)
        elif encoding == _F64:
            cols[name] = _unpack(section[pos:end], 8, count)
        else:
            raise BodyFormatError(f"unknown column encoding {encoding!r}")
        pos = end
    if pos != len(section):
        raise BodyFormatError("trailing bytes after the columns")
    return cols


def _columns_v2(
    section: bytes | bytearray, pos: int, records: object, version: int
) -> tuple[dict[str, list[int]], int]:
    """Formats 2 to 4: tagged columns back to back; the schema says which and
    how many. Formats 3 and 4 have, in place of the path records' columns, the byte
    length of their pointer stream, which is returned with the columns."""
    if type(records) is not int or records < 0:
        raise BodyFormatError("bad record count in the manifest")
    cols: dict[str, list[int]] = {}
    stream_length = 0

    def take(name: str, count: int) -> list[int]:
        nonlocal pos
        if pos >= len(section):
            raise BodyFormatError(f"column {name!r} is missing")
        tag = section[pos]
        pos += 1
        if tag == _TAG_F64:
            end = pos + 8 * count
            if end > len(section):
                raise BodyFormatError(f"column {name!r} is truncated")
            values = _unpack(section[pos:end], 8, count)
            pos = end
        elif tag in (_TAG_UNSIGNED, _TAG_ZIGZAG):
            values, pos = _read_varints(section, pos, count, zigzag=tag == _TAG_ZIGZAG)
        else:
            raise BodyFormatError(f"unknown column encoding tag {tag}")
        cols[name] = values
        return values

    order = take("order", records)
    for k, (kind, _, schema) in enumerate(_SCHEMAS):
        count = order.count(k)
        if count == 0:
            continue
        if version >= 3 and k == _PATH:
            if pos >= len(section) or section[pos] != _TAG_POINTER:
                raise BodyFormatError("the path records' pointer stream is missing")
            (stream_length,), pos = _read_varints(section, pos + 1, 1, zigzag=False)
            continue
        for name, ftype, _enum in schema:
            col = f"{kind}.{name}"
            if ftype in "IP":
                lengths = take(col + ".n", count)
                if any(v < 0 for v in lengths):
                    raise BodyFormatError("negative tuple length")
                flat = sum(lengths)
                _check_flat(kind, flat)
                for part in ("",) if ftype == "I" else (".a", ".b"):
                    take(col + part, flat)
            else:
                take(col, count)
    if any(k >= len(_SCHEMAS) or k < 0 for k in order):
        raise BodyFormatError("unknown record kind")
    if pos != len(section):
        raise BodyFormatError("trailing bytes after the columns")
    return cols, stream_length


def _index(i: int) -> int:
    if i < 0:
        raise BodyFormatError("negative string index")
    return i


def _bool(v: int) -> bool:
    if v not in (0, 1):
        raise BodyFormatError("boolean column holds a value other than 0 or 1")
    return v == 1


def _split(lengths: list[int], flat: list[list[int]]) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for n in lengths:
        if n < 0:
            raise BodyFormatError("negative tuple length")
        if len(flat) == 1:
            out.append(tuple(flat[0][pos : pos + n]))
        else:
            out.append(tuple(zip(flat[0][pos : pos + n], flat[1][pos : pos + n], strict=True)))
        pos += n
    if any(len(f) != pos for f in flat):
        raise BodyFormatError("tuple column lengths disagree")
    return out
