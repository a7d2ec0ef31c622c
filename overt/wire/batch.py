"""The batch header (format 1): what the collector and the export may read without the dataset key.

See docs/FORMATS.md for the canonical JSON form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from .errors import HeaderFormatError
from .records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    MousePathRecord,
    Record,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
)

HEADER_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SignalCounts:
    clicks: int = 0
    scrolls: int = 0
    paths: int = 0
    path_samples: int = 0
    text_spans: int = 0
    redactions: int = 0
    shortcuts: int = 0
    key_timings: int = 0
    contexts: int = 0
    screenshots: int = 0
    markers: int = 0


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The plaintext header of a batch (format 1)."""

    device_id: str
    batch_id: str
    seq: int
    start_ms: int
    end_ms: int
    policy_version: int
    dataset_key_id: str
    counts: SignalCounts
    app_ids: tuple[str, ...]
    body_size: int
    format: int = HEADER_FORMAT

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no whitespace, ASCII)."""
        doc: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["counts"] = {f.name: getattr(self.counts, f.name) for f in fields(self.counts)}
        doc["app_ids"] = list(self.app_ids)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BatchHeader:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            if doc.get("format") != HEADER_FORMAT:
                raise HeaderFormatError(f"unknown batch header format {doc.get('format')!r}")
            counts = doc.pop("counts")
            if not isinstance(counts, dict) or set(counts) != {
                f.name for f in fields(SignalCounts)
            }:
                raise TypeError("counts has unexpected fields")
            doc["counts"] = SignalCounts(**{k: _int(v) for k, v in counts.items()})
            doc["app_ids"] = tuple(_str(a) for a in doc["app_ids"])
            if set(doc) != {f.name for f in fields(cls)}:
                raise TypeError("header has unexpected or missing fields")
            for name in ("seq", "start_ms", "end_ms", "policy_version", "body_size"):
                _int(doc[name])
            for name in ("device_id", "batch_id", "dataset_key_id"):
                _str(doc[name])
            return cls(**doc)
        except HeaderFormatError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise HeaderFormatError(f"not a valid batch header: {exc}") from exc


def _int(v: object) -> int:
    if type(v) is not int:
        raise TypeError(f"expected an integer, got {type(v).__name__}")
    return v


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


@dataclass(frozen=True, slots=True)
class Batch:
    header: BatchHeader
    body: bytes = field(repr=False)


def count_signals(records: Sequence[Record]) -> SignalCounts:
    c: dict[str, int] = dict.fromkeys((f.name for f in fields(SignalCounts)), 0)
    for r in records:
        if isinstance(r, MousePathRecord):
            c["paths"] += 1
            c["path_samples"] += r.samples
        elif isinstance(r, ClickRecord):
            c["clicks"] += r.pressed
        elif isinstance(r, KeyTimingRecord):
            c["key_timings"] += 1
        elif isinstance(r, ShortcutRecord):
            c["shortcuts"] += 1
        elif isinstance(r, TextSpanRecord):
            c["text_spans"] += 1
            c["redactions"] += r.redactions
        elif isinstance(r, ScrollRecord):
            c["scrolls"] += 1
        elif isinstance(r, ContextRecord):
            c["contexts"] += 1
        elif isinstance(r, ScreenshotRecord):
            c["screenshots"] += 1
        else:
            c["markers"] += 1
    return SignalCounts(**c)
