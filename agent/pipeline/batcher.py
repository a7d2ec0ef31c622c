"""``Batcher``: cuts the record stream into batches by age and size.

It does not seal, sign, spool or upload (``agent.sinks`` does), reads no
clock and does no I/O. The header and body it fills are ``overt.wire``'s.

Batcher semantics: a record is appended to the open batch, then the batch is
emitted — including that record — once it holds ``max_bytes`` of estimated
raw size or has been open ``max_age_s``. ``flush(now)`` emits an open batch
that is old enough (or any, with ``force``). A new batch that does not start
with a context record starts with the carried ``context`` (the window the
records happen in), re-timed to its first record, so every batch reads on
its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

from overt.wire.batch import Batch, BatchHeader, count_signals
from overt.wire.body import encode_body
from overt.wire.records import (
    ContextRecord,
    MousePathRecord,
    Record,
    ScreenshotRecord,
    TextSpanRecord,
)


def _end_ms(r: Record) -> int:
    if isinstance(r, TextSpanRecord):
        return max(r.t, r.end)
    if isinstance(r, MousePathRecord):
        return r.t + sum(r.dt)
    return r.t


def _raw_size(r: Record) -> int:
    """A cheap estimate of a record's share of the uncompressed body."""
    if isinstance(r, MousePathRecord):
        return 16 + 6 * len(r.dt)
    if isinstance(r, TextSpanRecord):
        return 16 + len(r.text)
    if isinstance(r, ContextRecord):
        return 40 + len(r.app_id) + len(r.title or "")
    if isinstance(r, ScreenshotRecord):
        return 48 + 4 * len(r.tiles)
    return 12


def _new_batch_id() -> str:
    return uuid.uuid4().hex


class Batcher:
    """Cuts records into batches by age and size. Pure apart from ``new_id``.

    ``next_seq`` is the sequence number the next batch gets; the caller
    persists it (it must survive restarts) and passes it back in.
    """

    def __init__(
        self,
        *,
        device_id: str,
        policy_version: int,
        dataset_key_id: str,
        next_seq: int = 0,
        max_age_s: float = 60.0,
        max_bytes: int = 512 * 1024,
        new_id: Callable[[], str] = _new_batch_id,
    ) -> None:
        self.device_id = device_id
        self.policy_version = policy_version
        self.dataset_key_id = dataset_key_id
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._next_seq = next_seq
        self._new_id = new_id
        self._records: list[Record] = []
        self._images: dict[str, bytes] = {}
        self._size = 0
        self._opened = 0.0
        #: The context carried into a new batch (set by the pipeline).
        self.context: ContextRecord | None = None

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> int:
        return len(self._records)

    @property
    def due(self) -> float | None:
        """When the open batch becomes old enough to emit, or None."""
        return self._opened + self.max_age_s if self._records else None

    def has_image(self, image_id: str) -> bool:
        return image_id in self._images

    def add(self, record: Record, now: float, image: bytes | None = None) -> Batch | None:
        """Append a record (and its image blob); returns a batch when one is due."""
        records = self._records
        if not records:
            self._opened = now
            ctx = self.context
            if ctx is not None and not isinstance(record, ContextRecord):
                records.append(replace(ctx, t=record.t))
                self._size += _raw_size(ctx)
        records.append(record)
        self._size += _raw_size(record)
        if (
            image is not None
            and isinstance(record, ScreenshotRecord)
            and record.image not in self._images
        ):
            self._images[record.image] = image
            self._size += len(image)
        if self._size >= self.max_bytes or now - self._opened >= self.max_age_s:
            return self._finish()
        return None

    def flush(self, now: float, *, force: bool = False) -> Batch | None:
        """Emit the open batch if it is old enough at ``now`` (any open batch with ``force``)."""
        if not self._records:
            return None
        if force or now - self._opened >= self.max_age_s:
            return self._finish()
        return None

    def drop(self) -> int:
        """Discard the open batch; returns how many records were dropped."""
        n = len(self._records)
        self._records = []
        self._images = {}
        self._size = 0
        return n

    def set_policy(self, policy_version: int, dataset_key_id: str) -> Batch | None:
        """Adopt a new policy; records so far are emitted under the old one."""
        out = self._finish() if self._records else None
        self.policy_version = policy_version
        self.dataset_key_id = dataset_key_id
        return out

    def _finish(self) -> Batch:
        records, images = self._records, self._images
        self._records, self._images, self._size = [], {}, 0
        body = encode_body(records, images)
        app_ids = sorted({r.app_id for r in records if isinstance(r, ContextRecord)})
        header = BatchHeader(
            device_id=self.device_id,
            batch_id=self._new_id(),
            seq=self._next_seq,
            start_ms=min(r.t for r in records),
            end_ms=max(_end_ms(r) for r in records),
            policy_version=self.policy_version,
            dataset_key_id=self.dataset_key_id,
            counts=count_signals(records),
            app_ids=tuple(app_ids),
            body_size=len(body),
        )
        self._next_seq += 1
        return Batch(header, body)
