"""Open one stored batch for export: verify, decrypt, decode, validate.

This module owns the trust step of ``overt export``: from a stored sealed
batch and the key of the device it is stored under to decoded records that
the dataset writer may use, or a :class:`BatchRejected` with a short stable
reason. It holds no paths and writes nothing; the sealed format is
``policies.sealed``, the body format ``agent.pipeline.batch`` (used only
through ``BatchHeader.from_json``, ``decode_body`` and ``count_signals``).

Order of checks (verify, then parse what was verified):

1. ``malformed``: the bytes are not a sealed batch (``parse_sealed``).
2. ``unknown device``: the store holds no public key for the device.
3. ``bad signature``: the device key did not sign header + ciphertext.
4. ``header mismatch``: the signed header names another device, sequence
   number or batch id than the store filed it under (a row swapped in the
   store), or is not a valid agent batch header.
5. ``cannot decrypt``: not sealed to this dataset key, or altered (the
   header is bound through HPKE's ``info``, so a body moved under another
   header fails here too).
6. ``invalid body``: the body does not decode.
7. ``inconsistent body``: the body disagrees with its signed header (counts,
   time range, app ids) or its screenshots are not self-consistent (an image
   blob missing, a delta without its keyframe in the batch, tiles outside
   the frame, sizes out of bounds).

Nothing in a rejection's detail is captured content: ids, counts and the
name of the check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.pipeline.batch import BatchHeader, count_signals, decode_body
from agent.pipeline.records import (
    BodyFormatError,
    ContextRecord,
    HeaderFormatError,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
)
from policies.sealed import (
    BatchDecryptionError,
    BatchSignatureError,
    MalformedSealedBatchError,
    open_sealed,
    parse_sealed,
    verify_sealed,
)

from ._export_errors import BatchRejected

#: The largest frame the exporter reassembles (width x height), a sanity bound
#: far above any window the agent grabs (its policy caps the width at 7680).
MAX_FRAME_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One batch as the collector stored it.

    ``device_id``, ``seq`` and ``batch_id`` are the store's own record of the
    batch (checked against the signed header); ``device_key`` is the device's
    enrolled public key, or None when the store has no such device.
    """

    device_id: str
    seq: int
    batch_id: str
    device_key: Ed25519PublicKey | None
    sealed: bytes = b""
    #: Why the store could not give this batch's bytes (e.g. a failed
    #: checksum), or None.
    store_problem: str | None = None

    def __repr__(self) -> str:
        return (
            f"StoredBatch(device_id={self.device_id!r}, seq={self.seq}, "
            f"batch_id={self.batch_id!r}, {len(self.sealed)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class OpenedBatch:
    """A verified, decrypted and validated batch."""

    header: BatchHeader
    records: list[Record]
    images: dict[str, bytes]
    sealed_size: int


def open_batch(stored: StoredBatch, dataset_key: X25519PrivateKey) -> OpenedBatch:
    """Verify, decrypt, decode and validate ``stored``; raises :class:`BatchRejected`."""
    if stored.store_problem is not None:
        raise BatchRejected("corrupt in store", stored.store_problem)
    try:
        sealed = parse_sealed(stored.sealed)
    except MalformedSealedBatchError as exc:
        raise BatchRejected("malformed", str(exc)) from exc
    if stored.device_key is None:
        raise BatchRejected("unknown device", f"no enrolled key for device {stored.device_id!r}")
    try:
        verify_sealed(sealed, stored.device_key)
    except BatchSignatureError as exc:
        raise BatchRejected(
            "bad signature", f"batch {stored.batch_id} is not signed by device {stored.device_id}"
        ) from exc
    signed = (sealed.device_id, sealed.seq, sealed.batch_id)
    if signed != (stored.device_id, stored.seq, stored.batch_id):
        raise BatchRejected(
            "header mismatch",
            f"stored as device {stored.device_id} seq {stored.seq} batch {stored.batch_id}, "
            f"signed header says device {signed[0]} seq {signed[1]} batch {signed[2]}",
        )
    try:
        header = BatchHeader.from_json(sealed.header_bytes)
    except HeaderFormatError as exc:
        raise BatchRejected("header mismatch", f"not an agent batch header: {exc}") from exc
    try:
        body = open_sealed(sealed, dataset_key)
    except BatchDecryptionError as exc:
        raise BatchRejected("cannot decrypt", str(exc)) from exc
    try:
        records, images = decode_body(body)
    except BodyFormatError as exc:
        raise BatchRejected("invalid body", f"batch {stored.batch_id}: {exc}") from exc
    problem = _inconsistency(header, records, images)
    if problem is not None:
        raise BatchRejected("inconsistent body", f"batch {stored.batch_id}: {problem}")
    return OpenedBatch(header, records, images, len(stored.sealed))


def _inconsistency(
    header: BatchHeader, records: list[Record], images: dict[str, bytes]
) -> str | None:
    """What is wrong between a decoded body and its signed header, or None."""
    if not records:
        return "no records"
    counts = count_signals(records)
    if counts != header.counts:
        differ = [
            f.name
            for f in fields(counts)
            if getattr(counts, f.name) != getattr(header.counts, f.name)
        ]
        return f"record counts disagree with the header ({', '.join(differ)})"
    if any(not header.start_ms <= r.t <= header.end_ms for r in records):
        return "a record lies outside the header's time range"
    app_ids = tuple(sorted({r.app_id for r in records if isinstance(r, ContextRecord)}))
    if app_ids != header.app_ids:
        return "app ids disagree with the header"
    keyframes: dict[str, tuple[int, int]] = {}
    for r in records:
        if isinstance(r, ScreenshotRecord):
            problem = _screenshot_problem(r, images, keyframes)
            if problem is not None:
                return problem
            if r.kind is ScreenshotKind.KEYFRAME:
                keyframes[r.image] = (r.width, r.height)
    return None


def _screenshot_problem(
    r: ScreenshotRecord, images: dict[str, bytes], keyframes: dict[str, tuple[int, int]]
) -> str | None:
    if r.image not in images:
        return "a screenshot names an image the batch does not hold"
    dims = (r.width, r.height, r.source_width, r.source_height)
    if min(dims) <= 0 or r.width * r.height > MAX_FRAME_PIXELS:
        return "a screenshot has an impossible size"
    if r.source_width * r.source_height > MAX_FRAME_PIXELS:
        return "a screenshot has an impossible size"
    if r.kind is ScreenshotKind.KEYFRAME:
        return None if r.base is None else "a keyframe names a base"
    if r.base is None or keyframes.get(r.base) != (r.width, r.height):
        return "a delta's keyframe is not earlier in the batch, or has another size"
    if r.tile <= 0 or r.columns <= 0 or not r.tiles:
        return "a delta has no tiles"
    columns, rows = math.ceil(r.width / r.tile), math.ceil(r.height / r.tile)
    if any(not (0 <= c < columns and 0 <= w < rows) for c, w in r.tiles):
        return "a delta tile lies outside the frame"
    return None
