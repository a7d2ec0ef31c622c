"""Open one stored batch for export: verify, decrypt, decode, validate.

This module owns the trust step of ``overt export``: from a stored sealed
batch and the key of the device it is stored under to decoded records that
the dataset writer may use, or a :class:`BatchRejected` with a short stable
reason. It holds no paths and writes nothing; the sealed format is
``overt.wire.sealed``, the body format ``overt.wire.body`` (used only
through the sealed batch's typed header, ``decode_body`` and
``count_signals``).

Order of checks (verify, then parse what was verified):

1. ``malformed``: the bytes are not a sealed batch with a valid batch
   header (``parse_sealed``).
2. ``unknown device``: the store holds no public key for the device.
3. ``bad signature``: the device key did not sign header + ciphertext.
4. ``header mismatch``: the signed header names another device, sequence
   number or batch id than the store filed it under (a row swapped in the
   store).
5. ``cannot decrypt``: not sealed to this dataset key, or altered (the
   header is bound through HPKE's ``info``, so a body moved under another
   header fails here too).
6. ``over a limit``: the body is larger than any agent writes, in one of the
   limits of ``overt.wire.body`` (records, the decompressed record
   section, strings, path steps, screenshots, tiles, a frame's width, height
   or pixels, chains of deltas held at once); the detail names the limit.
   Each is checked from what the body declares, before anything is
   allocated for it: the zstd frame's header, the manifest, the records'
   sizes, the image headers.
7. ``invalid body``: the body does not decode, or an image blob is not a
   PNG, WebP or JPEG image the agent could have written.
8. ``inconsistent body``: the body disagrees with its signed header (counts,
   time range, app ids) or its screenshots are not self-consistent (an image
   blob missing, or of another size than its record says, a delta without
   its keyframe in the batch, tiles outside the frame or named twice).

Checks 6 to 8 are made as the body is read, the first problem found giving
the reason. The pixels are decoded later, while the batch is written
(:mod:`collector.export.reassembly`), each image's header checked against
its record again before it is decoded.

Nothing in a rejection's detail is captured content: ids, counts and the
name of the check.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, fields

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from overt.wire.batch import BatchHeader, count_signals
from overt.wire.body import (
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    MAX_LIVE_CHAINS,
    MAX_SOURCE_SIDE,
    BodyLimitError,
    decode_body,
)
from overt.wire.errors import BodyFormatError, FormatError
from overt.wire.frames import BLOB_FORMATS, image_header
from overt.wire.records import ContextRecord, Record, ScreenshotKind, ScreenshotRecord
from overt.wire.sealed import (
    BatchDecryptionError,
    BatchSignatureError,
    MalformedSealedBatchError,
    open_sealed,
    parse_sealed,
    verify_sealed,
)

from .errors import BatchRejected

OVER_A_LIMIT = "over a limit"


@dataclass(frozen=True, slots=True)
class UnopenedBatch:
    """One stored batch as the trust step takes it: nothing of it verified yet.

    ``device_id``, ``seq`` and ``batch_id`` are the store's own record of the
    batch (checked against the signed header); ``device_key`` is the device's
    enrolled public key, or None when the store has no such device. (The
    collector's own row is ``collector.store.records.StoredBatch``;
    :mod:`collector.export.store` makes one of these from it.)
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
            f"UnopenedBatch(device_id={self.device_id!r}, seq={self.seq}, "
            f"batch_id={self.batch_id!r}, {len(self.sealed)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class OpenedBatch:
    """A verified, decrypted and validated batch."""

    header: BatchHeader
    records: list[Record]
    images: dict[str, bytes]
    sealed_size: int


def open_batch(stored: UnopenedBatch, dataset_key: X25519PrivateKey) -> OpenedBatch:
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
    header = sealed.header
    try:
        body = open_sealed(sealed, dataset_key)
    except BatchDecryptionError as exc:
        raise BatchRejected("cannot decrypt", str(exc)) from exc
    try:
        records, images = decode_body(body)
    except BodyLimitError as exc:
        raise BatchRejected(OVER_A_LIMIT, f"batch {stored.batch_id}: {exc}") from exc
    except BodyFormatError as exc:
        raise BatchRejected("invalid body", f"batch {stored.batch_id}: {exc}") from exc
    try:
        _check(header, records, images)
    except BatchRejected as exc:
        raise BatchRejected(exc.reason, f"batch {stored.batch_id}: {exc.detail}") from None
    return OpenedBatch(header, records, images, len(stored.sealed))


def _inconsistent(detail: str) -> BatchRejected:
    return BatchRejected("inconsistent body", detail)


def _check(header: BatchHeader, records: list[Record], images: dict[str, bytes]) -> None:
    """Raise :class:`BatchRejected` when a decoded body disagrees with its
    signed header or its screenshots are over a limit or not self-consistent."""
    if not records:
        raise _inconsistent("no records")
    counts = count_signals(records)
    if counts != header.counts:
        differ = [
            f.name
            for f in fields(counts)
            if getattr(counts, f.name) != getattr(header.counts, f.name)
        ]
        raise _inconsistent(f"record counts disagree with the header ({', '.join(differ)})")
    if any(not header.start_ms <= r.t <= header.end_ms for r in records):
        raise _inconsistent("a record lies outside the header's time range")
    contexts = [r for r in records if isinstance(r, ContextRecord)]
    if tuple(sorted({r.app_id for r in contexts})) != header.app_ids:
        raise _inconsistent("app ids disagree with the header")
    if any(not (math.isfinite(r.scale) and r.scale > 0) for r in contexts):
        raise _inconsistent("a context has a scale that is not a positive number")
    _check_screenshots([r for r in records if isinstance(r, ScreenshotRecord)], images)


def _check_screenshots(shots: list[ScreenshotRecord], images: dict[str, bytes]) -> None:
    """Sizes against the frame limits, each image's header against its record,
    each delta against its keyframe, and how many chains are held at once: a
    keyframe is held (by the dataset writer too) from itself to the last
    delta that names it, so that at most ``MAX_LIVE_CHAINS`` frames are."""
    remaining = Counter(r.base for r in shots if r.kind is ScreenshotKind.DELTA)
    keyframes: dict[str, tuple[int, int]] = {}
    held: set[str] = set()
    for r in shots:
        _check_size(r)
        if r.kind is ScreenshotKind.KEYFRAME:
            if r.base is not None:
                raise _inconsistent("a keyframe names a base")
            _check_image(r, images, (r.width, r.height))
            keyframes[r.image] = (r.width, r.height)
            if remaining[r.image]:
                held.add(r.image)
        else:
            if r.base is None or keyframes.get(r.base) != (r.width, r.height):
                raise _inconsistent(
                    "a delta's keyframe is not earlier in the batch, or has another size"
                )
            _check_image(r, images, _check_tiles(r))
            remaining[r.base] -= 1
            if not remaining[r.base]:
                held.discard(r.base)
        if len(held) > MAX_LIVE_CHAINS:
            raise BatchRejected(
                OVER_A_LIMIT,
                f"{len(held)} chains of deltas held at once, at most {MAX_LIVE_CHAINS}",
            )


def _check_size(r: ScreenshotRecord) -> None:
    if min(r.width, r.height, r.source_width, r.source_height) <= 0:
        raise _inconsistent("a screenshot has an impossible size")
    if (
        max(r.width, r.height) > MAX_FRAME_SIDE
        or r.width * r.height > MAX_FRAME_PIXELS
        or max(r.source_width, r.source_height) > MAX_SOURCE_SIDE
    ):
        raise BatchRejected(
            OVER_A_LIMIT,
            f"a {r.width}x{r.height} frame grabbed at {r.source_width}x{r.source_height}: "
            f"at most {MAX_FRAME_SIDE} a side and {MAX_FRAME_PIXELS} pixels, grabbed at "
            f"most {MAX_SOURCE_SIDE} a side",
        )
    if r.width > r.source_width or r.height > r.source_height:
        raise _inconsistent("a screenshot is larger than the window it was grabbed from")


def _check_tiles(r: ScreenshotRecord) -> tuple[int, int]:
    """A delta's tiles against its frame; returns the size of its packed image."""
    if r.tile <= 0 or r.columns <= 0 or not r.tiles:
        raise _inconsistent("a delta has no tiles")
    size = (r.columns * r.tile, -(-len(r.tiles) // r.columns) * r.tile)
    if size[0] * size[1] > MAX_FRAME_PIXELS:
        raise BatchRejected(
            OVER_A_LIMIT,
            f"a delta's tiles pack into {size[0]}x{size[1]}, at most {MAX_FRAME_PIXELS} pixels",
        )
    columns, rows = math.ceil(r.width / r.tile), math.ceil(r.height / r.tile)
    if any(not (0 <= c < columns and 0 <= w < rows) for c, w in r.tiles):
        raise _inconsistent("a delta tile lies outside the frame")
    if len(set(r.tiles)) != len(r.tiles):
        raise _inconsistent("a delta names a tile twice")
    return size


def _check_image(r: ScreenshotRecord, images: dict[str, bytes], size: tuple[int, int]) -> None:
    """The image a screenshot names: there, and of the size its record implies."""
    blob = images.get(r.image)
    if blob is None:
        raise _inconsistent("a screenshot names an image the batch does not hold")
    try:
        kind, width, height = image_header(blob)
    except FormatError as exc:
        raise BatchRejected("invalid body", f"a screenshot's image: {exc}") from exc
    if kind not in BLOB_FORMATS:
        raise BatchRejected("invalid body", f"a screenshot's image is a {kind} image")
    if (width, height) != size:
        raise _inconsistent(
            f"a screenshot's image is {width}x{height}, its record says {size[0]}x{size[1]}"
        )
