"""The batch header (``overt.wire.batch``): its canonical JSON, and its one
parser, which the agent, the collector and the export all use. Each bad
header is refused with the reason the collector and the export report."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from overt.wire.batch import MAX_HEADER_BYTES, BatchHeader, SignalCounts
from overt.wire.errors import HeaderFormatError

T_MS = 1_800_000_000_000


def header(**changes: object) -> BatchHeader:
    fields: dict[str, object] = {
        "device_id": "dev-1",
        "batch_id": "ab" * 16,
        "seq": 4,
        "start_ms": T_MS,
        "end_ms": T_MS + 1000,
        "policy_version": 3,
        "dataset_key_id": "ds-2026",
        "counts": SignalCounts(clicks=2, text_spans=1),
        "app_ids": ("editor", "sheets"),
        "body_size": 1234,
    }
    fields.update(changes)
    return BatchHeader(**fields)  # type: ignore[arg-type]


def test_header_json_is_canonical_and_round_trips() -> None:
    h = header()
    data = h.to_json()
    assert BatchHeader.from_json(data) == h
    doc = json.loads(data)
    assert doc["format"] == 1
    assert list(doc) == sorted(doc)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert h.to_dict() == doc


def test_headers_at_the_edges_of_the_rules_are_accepted() -> None:
    edge = header(
        batch_id="x" * 128,
        seq=2**63 - 1,
        start_ms=-(2**63),
        end_ms=-(2**63),
        body_size=0,
        app_ids=(),
        counts=SignalCounts(markers=2**63 - 1),
    )
    assert BatchHeader.from_json(edge.to_json()) == edge


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.update(changes)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(name)


def _count(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["counts"].update(changes)


BAD_HEADERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "format 2": (_set(format=2), "unknown batch header format 2"),
    "format missing": (_drop("format"), "header field 'format' missing or not int"),
    "missing seq": (_drop("seq"), "header field 'seq' missing or not int"),
    "extra field": (_set(extra=1), "header has unexpected fields ['extra']"),
    "seq as string": (_set(seq="4"), "header field 'seq' missing or not int"),
    "seq as a boolean": (_set(seq=True), "header field 'seq' missing or not int"),
    "seq as a float": (_set(seq=4.0), "header field 'seq' missing or not int"),
    "seq zero": (_set(seq=0), "header has an impossible sequence, time range or size"),
    "seq beyond 64 bits": (_set(seq=2**63), "outside the signed 64-bit range"),
    "end before start": (_set(end_ms=T_MS - 1), "impossible sequence, time range or size"),
    "negative body size": (_set(body_size=-1), "impossible sequence, time range or size"),
    "time beyond 64 bits": (_set(start_ms=-(2**63) - 1), "outside the signed 64-bit range"),
    "empty device id": (_set(device_id=""), "header has an empty or oversized id"),
    "empty batch id": (_set(batch_id=""), "header has an empty or oversized id"),
    "oversized batch id": (_set(batch_id="x" * 129), "header has an empty or oversized id"),
    "device id not a string": (_set(device_id=7), "header field 'device_id' missing or not str"),
    "counts not an object": (_set(counts=[1]), "header field 'counts' missing or not dict"),
    "counts missing a signal": (
        lambda d: d["counts"].pop("clicks"),
        "header counts have unexpected or missing signals",
    ),
    "counts with an unknown signal": (
        _count(keys=1),
        "header counts have unexpected or missing signals",
    ),
    "count not an integer": (_count(clicks=1.5), "header counts are not integers"),
    "count beyond 64 bits": (_count(clicks=2**64), "outside the signed 64-bit range"),
    "app ids not a list": (_set(app_ids="editor"), "header field 'app_ids' missing or not list"),
    "app id not a string": (_set(app_ids=[1]), "header app_ids are not strings"),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS), ids=list(BAD_HEADERS))
def test_a_bad_header_is_refused_saying_why(case: str) -> None:
    mutate, reason = BAD_HEADERS[case]
    doc = json.loads(header().to_json())
    mutate(doc)
    with pytest.raises(HeaderFormatError) as info:
        BatchHeader.from_json(json.dumps(doc).encode())
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("not json", b"{nope", "header is not JSON"),
        ("not utf-8", b"\xff\xfe{}", "header is not JSON"),
        ("json array", b"[1,2]", "header is not a JSON object"),
        ("nested thousands deep", b"[" * 50_000, "header is not JSON"),
        ("integer with 5000 digits", b'{"seq":' + b"9" * 5000 + b"}", "header is not JSON"),
        ("over the size limit", b" " * (MAX_HEADER_BYTES + 1), "header over"),
    ],
)
def test_bytes_that_are_not_a_header_object_are_refused(
    name: str, data: bytes, reason: str
) -> None:
    with pytest.raises(HeaderFormatError, match=reason):
        BatchHeader.from_json(data)
