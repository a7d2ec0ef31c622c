"""The batch header (format 1): what the collector and the export may read without the dataset key.

This module owns ``BatchHeader``, its canonical JSON and its one parser
(``from_json``, which the agent, the collector and the export all use),
``count_signals`` (the header's counts of a body's records) and ``Batch``
(a header with its body). The body is ``overt.wire.body``'s.

docs/FORMATS.md ("Batch header") specifies the JSON and its rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

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
#: The largest header anyone accepts.
MAX_HEADER_BYTES = 64 * 1024


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

    def to_dict(self) -> dict[str, Any]:
        """The header as its JSON document (``counts`` a dict, ``app_ids`` a list)."""
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["counts"] = {name: getattr(self.counts, name) for name in _SIGNALS}
        doc["app_ids"] = list(self.app_ids)
        return doc

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no whitespace, ASCII)."""
        doc = self.to_dict()
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BatchHeader:
        """The header ``data`` holds; ``HeaderFormatError`` saying why when it is not one.

        The one parser of the header: the agent checks what it seals with it,
        the collector what it accepts, the export what it opens. The rules
        are ``_HeaderDocument``'s and one more: the time range is not
        inverted.
        """
        if len(data) > MAX_HEADER_BYTES:
            raise HeaderFormatError(f"header over {MAX_HEADER_BYTES} bytes")
        try:
            doc = _HeaderDocument.model_validate_json(data)
        except ValidationError as exc:
            raise HeaderFormatError(_reason(exc)) from exc
        if doc.end_ms < doc.start_ms:
            raise HeaderFormatError("header has an impossible sequence, time range or size")
        return cls(
            doc.device_id,
            doc.batch_id,
            doc.seq,
            doc.start_ms,
            doc.end_ms,
            doc.policy_version,
            doc.dataset_key_id,
            SignalCounts(**vars(doc.counts)),
            doc.app_ids,
            doc.body_size,
            doc.format,
        )


# The header's JSON document, validated by pydantic (in Rust: about twice as
# fast as checks written out here, on the collector's ingest path). Every
# field must be there with its JSON type, and nothing else: ``strict`` takes
# no bool for an int and no float; every integer fits the signed 64-bit
# columns it is stored in.
_Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class _CountsDocument(BaseModel):
    model_config = _STRICT

    clicks: _Int64
    scrolls: _Int64
    paths: _Int64
    path_samples: _Int64
    text_spans: _Int64
    redactions: _Int64
    shortcuts: _Int64
    key_timings: _Int64
    contexts: _Int64
    screenshots: _Int64
    markers: _Int64


class _HeaderDocument(BaseModel):
    model_config = _STRICT

    format: Literal[1]
    device_id: Annotated[str, StringConstraints(min_length=1)]
    batch_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    seq: Annotated[int, Field(ge=1, le=2**63 - 1)]
    start_ms: _Int64
    end_ms: _Int64
    policy_version: _Int64
    dataset_key_id: str
    counts: _CountsDocument
    app_ids: tuple[str, ...]
    body_size: Annotated[int, Field(ge=0, le=2**63 - 1)]


if set(_HeaderDocument.model_fields) != {f.name for f in fields(BatchHeader)} or tuple(
    _CountsDocument.model_fields
) != tuple(f.name for f in fields(SignalCounts)):  # pragma: no cover - a field added to one side
    raise AssertionError("the header's JSON document does not match BatchHeader")
_SIGNALS = tuple(_CountsDocument.model_fields)
_JSON_TYPES = {
    "counts": "dict",
    "app_ids": "list",
    "device_id": "str",
    "batch_id": "str",
    "dataset_key_id": "str",
}


def _reason(exc: ValidationError) -> str:
    """What is wrong with a header, in words, from pydantic's first error."""
    error = exc.errors(include_url=False)[0]
    kind, loc = error["type"], error["loc"]
    if kind == "json_invalid":
        return f"header is not JSON: {error.get('ctx', {}).get('error', kind)}"
    if not loc:
        return "header is not a JSON object"
    name = loc[0]
    out_of_range = kind in ("greater_than_equal", "less_than_equal")
    if name == "counts" and len(loc) > 1:
        if kind in ("missing", "extra_forbidden"):
            return "header counts have unexpected or missing signals"
        if out_of_range:
            return "header has an integer outside the signed 64-bit range"
        return "header counts are not integers"
    if name == "app_ids" and len(loc) > 1:
        return "header app_ids are not strings"
    if kind == "extra_forbidden":
        extra = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == kind)
        return f"header has unexpected fields {extra}"
    if kind == "literal_error":
        return f"unknown batch header format {error['input']!r}"
    if kind in ("string_too_short", "string_too_long"):
        return "header has an empty or oversized id"
    if out_of_range and name in ("seq", "body_size") and kind == "greater_than_equal":
        return "header has an impossible sequence, time range or size"
    if out_of_range:
        return "header has an integer outside the signed 64-bit range"
    return f"header field {name!r} missing or not {_JSON_TYPES.get(str(name), 'int')}"


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
