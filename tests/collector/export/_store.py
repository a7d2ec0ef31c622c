"""A collector data directory filled the way the collector fills it.

Devices are enrolled and batches written through the collector's own
``SQLiteStorage`` (as its HTTP layer would do it), then the store is closed,
so the export reads a real data directory (SQLite + blob segments).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from collector.config import StorageConfig
from collector.store.records import AuditEvent, BatchWrite, EnrollmentTokenRecord
from collector.store.sqlite import SQLiteStorage
from overt.wire.batch import Batch

from ._batches import Keys

MINUTE = 60_000


def fill_store(data: Path, keys: Keys, sealed: list[tuple[Batch, bytes]], now: int) -> None:
    """Store each (batch, sealed bytes) under ``data``, every device enrolled first."""
    storage = SQLiteStorage(StorageConfig(data_dir=data))
    try:
        for device_id in sorted({batch.header.device_id for batch, _ in sealed}):
            _enrol(storage, keys, device_id, now)
        for batch, data_ in sealed:
            h = batch.header
            storage.put_batch(
                BatchWrite(
                    device_id=h.device_id,
                    seq=h.seq,
                    batch_id=h.batch_id,
                    header=h.to_json(),
                    start_ms=h.start_ms,
                    end_ms=h.end_ms,
                    policy_version=h.policy_version,
                    sealed=data_,
                    sha256=hashlib.sha256(data_).digest(),
                    received_at_ms=now,
                )
            )
    finally:
        storage.close()


def _enrol(storage: SQLiteStorage, keys: Keys, device_id: str, now: int) -> None:
    token = hashlib.sha256(device_id.encode()).digest()
    storage.add_enrollment_token(
        EnrollmentTokenRecord(
            f"tok-{device_id[:4]}", token, "acme", "office", now, now + MINUTE, "admin"
        ),
        AuditEvent(now, "admin", "enrollment_token.create", f"tok-{device_id[:4]}"),
    )
    public = (
        keys.device(device_id)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    storage.enroll_device(
        token,
        device_id,
        base64.b64encode(public).decode(),
        device_id[:8],
        now,
        AuditEvent(now, f"device:{device_id}", "device.enroll", device_id),
    )
