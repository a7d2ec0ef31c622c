"""The rows of the spool database (format 1): its tables, and the values read from them.

This module owns the SQL schema of the spool's own tables (the ledger's is in
:mod:`agent.sinks.ledger`), the frozen values :class:`agent.sinks.spool.Spool`
hands out for their rows, and :func:`checked`, the integrity check a stored
batch passes before it is sent. It holds no connection and does no I/O: the
store (:mod:`agent.sinks.spool`) runs the statements inside its transactions
and states the on-disk format and the crash guarantees.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from overt.wire.sealed import SealedBatchError, parse_sealed

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq           INTEGER PRIMARY KEY,
    batch_id      TEXT NOT NULL UNIQUE,
    device_id     TEXT NOT NULL,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    counts        TEXT NOT NULL,
    app_ids       TEXT NOT NULL,
    size          INTEGER NOT NULL,
    hold_until_ms INTEGER NOT NULL,
    spooled_at_ms INTEGER NOT NULL,
    checksum      BLOB NOT NULL,
    sealed        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_hold ON batches (hold_until_ms);
CREATE INDEX IF NOT EXISTS batches_size ON batches (size);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq        INTEGER PRIMARY KEY,
    batch_id   TEXT NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    status     INTEGER,
    error      TEXT NOT NULL,
    dead_at_ms INTEGER NOT NULL,
    sealed     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id                INTEGER PRIMARY KEY,
    seq               INTEGER,
    batch_id          TEXT,
    reason            TEXT NOT NULL,
    quarantined_at_ms INTEGER NOT NULL,
    size              INTEGER NOT NULL,
    sealed            BLOB
);
CREATE TABLE IF NOT EXISTS erasures (
    id              INTEGER PRIMARY KEY,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    rejected        INTEGER NOT NULL DEFAULT 0
);
"""

SELECT_BATCH = (
    "SELECT seq, batch_id, start_ms, end_ms, hold_until_ms, size, checksum, sealed FROM batches"
)
NEXT_READY = SELECT_BATCH + " WHERE hold_until_ms <= ? ORDER BY seq LIMIT 1"
BATCH_BY_SEQ = SELECT_BATCH + " WHERE seq = ?"
ALL_BATCHES = SELECT_BATCH + " ORDER BY seq"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """A sealed batch as stored in the spool."""

    seq: int
    batch_id: str
    start_ms: int
    end_ms: int
    hold_until_ms: int
    size: int
    sealed: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """The ``spool`` part of the control API's status object.

    ``batches`` = ``held`` + ``ready`` (waiting for upload); ``bytes`` is what
    counts against ``budget``: waiting, dead-lettered and quarantined bytes.
    """

    batches: int
    bytes: int
    budget: int
    held: int
    ready: int
    dead: int
    quarantined: int

    def to_dict(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "bytes": self.bytes,
            "budget": self.budget,
            "held": self.held,
            "ready": self.ready,
            "dead": self.dead,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class DiscardResult:
    """What ``Spool.discard`` did: batches deleted before upload, and the time
    range (epoch ms) of an erasure request for what was already uploaded."""

    batches_deleted: int
    erasure_range: tuple[int, int] | None

    @property
    def erasure_requested(self) -> bool:
        return self.erasure_range is not None


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    id: int
    start_ms: int
    end_ms: int
    reason: str
    requested_at_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    batch_id: str
    start_ms: int
    end_ms: int
    size: int
    status: int | None
    error: str
    dead_at_ms: int


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    id: int
    seq: int | None
    batch_id: str | None
    reason: str
    quarantined_at_ms: int
    size: int


def checked(row: tuple[Any, ...]) -> tuple[SpooledBatch | None, str | None]:
    """The row as a ``SpooledBatch``, or the reason it fails its integrity check."""
    seq, batch_id, start_ms, end_ms, hold_until_ms, size, checksum, sealed = row
    if not isinstance(sealed, bytes):
        return None, "sealed bytes missing"
    if len(sealed) != size:
        return None, f"size {len(sealed)} differs from the recorded {size}"
    if hashlib.sha256(sealed).digest() != checksum:
        return None, "checksum mismatch"
    try:
        parsed = parse_sealed(sealed)
    except SealedBatchError as exc:
        return None, f"sealed bytes do not parse: {exc}"
    if parsed.seq != seq or parsed.batch_id != batch_id:
        return None, "sealed header does not match the row"
    return SpooledBatch(seq, batch_id, start_ms, end_ms, hold_until_ms, size, sealed), None
