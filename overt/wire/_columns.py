"""The columns of a batch body's record section: records to tagged columns and back.

Private to ``overt.wire.body``, which frames and compresses the section and
checks it against the body's limits. This module owns the schema (which
columns a record kind has, in which order), the byte codings of a column
(unsigned LEB128, zigzag LEB128, byte-shuffled doubles) and the string
table; path records are not columns but the pointer stream of
``overt.wire._pointer``. docs/FORMATS.md ("The record section") specifies
the bytes.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from . import _pointer
from .errors import BodyFormatError, BodyLimitError, FormatError
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

# Field types: t (int, delta-coded), i (int), b (bool), s (str), o (str|None),
# e (enum via string table), f (float64), I (tuple[int, ...]),
# P (tuple[tuple[int, int], ...]).
_Schema = tuple[str, type[Any], tuple[tuple[str, str, type[Any] | None], ...]]

SCHEMAS: tuple[_Schema, ...] = (
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
for _kind, _cls, _fields in SCHEMAS:  # records are built positionally
    if tuple(f[0] for f in _fields) != tuple(f.name for f in fields(_cls)):
        raise AssertionError(f"body schema of {_kind!r} does not match {_cls.__name__}")
_KIND_OF: dict[type[Any], int] = {s[1]: i for i, s in enumerate(SCHEMAS)}
PATH = _KIND_OF[MousePathRecord]
SCREENSHOT = _KIND_OF[ScreenshotRecord]
TAG_UNSIGNED, TAG_ZIGZAG, TAG_F64, TAG_POINTER = 0, 1, 2, 3
_LITTLE = sys.byteorder == "little"
_I64 = 2**63


class Strings:
    """The string table: each distinct string once, in the order first used."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self.index: dict[str, int] = {}

    def ref(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


# ---------------------------------------------------------------- writing


def uvarint(values: Sequence[int]) -> bytes:
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


def _int_column(values: Sequence[int]) -> bytes:
    """Tag ``0`` and unsigned LEB128 when no value is negative, else tag ``1`` and zigzag."""
    if all(v >= 0 for v in values):
        return bytes([TAG_UNSIGNED]) + uvarint(values)
    return bytes([TAG_ZIGZAG]) + _varint(values)


def _f64_column(values: Sequence[float]) -> bytes:
    """Tag ``2`` and the doubles, little-endian, bytes shuffled (all first bytes, then...)."""
    arr = array("d", values)
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    raw = arr.tobytes()
    return bytes([TAG_F64]) + b"".join(raw[i::8] for i in range(8))


def write_columns(records: Sequence[Record], strings: Strings) -> tuple[list[bytes], bytes]:
    """The section's columns, each its tag and its values, and the pointer
    stream (empty without path records)."""
    by_kind: list[list[Any]] = [[] for _ in SCHEMAS]
    order: list[int] = []
    for rec in records:
        k = _KIND_OF.get(type(rec))
        if k is None:
            raise FormatError(f"not a record: {type(rec).__name__}")
        order.append(k)
        by_kind[k].append(rec)
    columns = [_int_column(order)]
    stream = b""
    for k, ((_kind, _, schema), recs) in enumerate(zip(SCHEMAS, by_kind, strict=True)):
        if not recs:
            continue
        if k == PATH:
            stream = _pointer.write_stream(recs)
            columns.append(bytes([TAG_POINTER]) + uvarint([len(stream)]))
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
                columns.append(_f64_column(values))
            elif ftype == "I":
                columns.append(_int_column([len(v) for v in values]))
                columns.append(_int_column([x for v in values for x in v]))
            else:  # "P"
                columns.append(_int_column([len(v) for v in values]))
                columns.append(_int_column([p[0] for v in values for p in v]))
                columns.append(_int_column([p[1] for v in values for p in v]))
    return columns, stream


# ---------------------------------------------------------------- reading


def read_varints(
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


def _unshuffle_f64(data: bytes | bytearray, count: int) -> list[float]:
    raw = bytearray(len(data))
    for i in range(8):
        raw[i::8] = data[i * count : (i + 1) * count]
    arr = array("d")
    arr.frombytes(bytes(raw))
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


def read_columns(
    section: bytes | bytearray, pos: int, records: object, *, max_steps: int, max_tiles: int
) -> tuple[dict[str, list[Any]], int]:
    """The tagged columns from ``section[pos:]`` to its end; the schema says
    which and how many. In place of the path records' columns there is the
    byte length of their pointer stream, which is returned with the columns.
    ``BodyLimitError`` before reading more than ``max_steps`` path steps
    ("path steps") or ``max_tiles`` delta tiles ("delta tiles")."""
    if type(records) is not int or records < 0:
        raise BodyFormatError("bad record count in the manifest")
    cols: dict[str, list[Any]] = {}
    stream_length = 0

    def take(name: str, count: int, *, floats: bool = False) -> list[Any]:
        nonlocal pos
        if pos >= len(section):
            raise BodyFormatError(f"column {name!r} is missing")
        tag = section[pos]
        pos += 1
        values: list[Any]
        if tag == TAG_F64 and floats:
            end = pos + 8 * count
            if end > len(section):
                raise BodyFormatError(f"column {name!r} is truncated")
            values = _unshuffle_f64(section[pos:end], count)
            pos = end
        elif tag in (TAG_UNSIGNED, TAG_ZIGZAG) and not floats:
            values, pos = read_varints(section, pos, count, zigzag=tag == TAG_ZIGZAG)
        else:
            raise BodyFormatError(f"unknown column encoding tag {tag} for column {name!r}")
        cols[name] = values
        return values

    order = take("order", records)
    if any(k >= len(SCHEMAS) or k < 0 for k in order):
        raise BodyFormatError("unknown record kind")
    for k, (kind, _, schema) in enumerate(SCHEMAS):
        count = order.count(k)
        if count == 0:
            continue
        if k == PATH:
            if pos >= len(section) or section[pos] != TAG_POINTER:
                raise BodyFormatError("the path records' pointer stream is missing")
            (stream_length,), pos = read_varints(section, pos + 1, 1, zigzag=False)
            continue
        for name, ftype, _enum in schema:
            col = f"{kind}.{name}"
            if ftype in "IP":
                lengths = take(col + ".n", count)
                if any(v < 0 for v in lengths):
                    raise BodyFormatError("negative tuple length")
                flat = sum(lengths)
                if k == SCREENSHOT and flat > max_tiles:
                    raise BodyLimitError("delta tiles", f"{flat} delta tiles, at most {max_tiles}")
                for part in ("",) if ftype == "I" else (".a", ".b"):
                    take(col + part, flat)
            else:
                take(col, count, floats=ftype == "f")
    if pos != len(section):
        raise BodyFormatError("trailing bytes after the columns")
    return cols, stream_length


def build_records(
    cols: dict[str, list[Any]], strings: list[str], paths: list[MousePathRecord]
) -> list[Record]:
    """The records the columns (and the pointer stream's ``paths``) hold, in body order."""
    order: list[int] = cols["order"]
    per_kind: list[list[Any]] = []
    for k, (kind, cls, schema) in enumerate(SCHEMAS):
        count = order.count(k)
        if k == PATH:
            per_kind.append(paths)
            continue
        if count == 0:
            per_kind.append([])
            continue
        field_values: list[list[Any]] = []
        for name, ftype, enum in schema:
            col = f"{kind}.{name}"
            if ftype == "t":
                acc, out = 0, []
                for d in cols[col]:
                    acc += d
                    out.append(acc)
                field_values.append(out)
            elif ftype in "if":
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
            elif ftype == "I":
                field_values.append(_split(cols[col + ".n"], [cols[col]]))
            else:
                field_values.append(_split(cols[col + ".n"], [cols[col + ".a"], cols[col + ".b"]]))
        for values in field_values:
            if len(values) != count:
                raise BodyFormatError(f"column lengths of {kind} records disagree")
        per_kind.append([cls(*row) for row in zip(*field_values, strict=True)])
    cursors = [0] * len(SCHEMAS)
    records: list[Record] = []
    for k in order:
        records.append(per_kind[k][cursors[k]])
        cursors[k] += 1
    return records


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
