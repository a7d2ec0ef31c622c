"""Sealed batches in SQLite rows and blob segments.

A batch's bytes go to the active blob segment and its row (ids, header,
place, SHA-256) to ``batches``; the engine's writer groups consecutive batch
writes and calls :meth:`SQLiteBatches._put_batches` for each run, so the
bytes are synced before the rows that point at them commit. Reads check the
SHA-256 of every batch they return. Erasure deletes the rows and lists the
byte ranges to zero in the same transaction; the engine zeroes them before
the call returns (and again at start, if a crash came in between).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from collector.errors import CorruptStoreError, StorageError
from collector.store.records import AuditEvent, BatchOutcome, BatchWrite, StoredBatch
from collector.store.sqlite.audit import audit_row, insert_audit
from collector.store.sqlite.engine import (
    ROWS_PER_STATEMENT,
    Job,
    SQLiteEngine,
    Tx,
    chunks,
    wrap_error,
)

_PAGE = 128
_BATCH_INSERT_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?)"


class SQLiteBatches(SQLiteEngine):
    """:class:`collector.store.protocols.BatchStore` on the shared engine."""

    def submit_batch(self, batch: BatchWrite) -> Future[BatchOutcome]:
        if not self.config.exclusive:
            future: Future[BatchOutcome] = Future()
            future.set_exception(StorageError("batches are written by the serving collector only"))
            return future
        return self._enqueue(Job(None, Future(), batch=batch))

    # ---------------------------------------------------------------- batches

    def put_batch(self, batch: BatchWrite) -> BatchOutcome:
        return self.submit_batch(batch).result()

    def _stored(self, row: tuple[Any, ...]) -> StoredBatch:
        device_id, seq, batch_id, header, received_at_ms, size, sha256, segment, offset = row
        sealed = self._blobs.read(segment, offset, size)
        if hashlib.sha256(sealed).digest() != bytes(sha256):
            raise CorruptStoreError(
                f"batch {batch_id} (device {device_id}, seq {seq}) fails its SHA-256 check"
            )
        return StoredBatch(
            device_id=device_id,
            seq=seq,
            batch_id=batch_id,
            header_json=header.encode("utf-8"),
            received_at_ms=received_at_ms,
            sealed=sealed,
        )

    _BATCH_COLUMNS = (
        "device_id, seq, batch_id, header, received_at_ms, size, sha256, segment_id, segment_offset"
    )

    def get_batch(self, device_id: str, seq: int) -> StoredBatch | None:
        row = self._one(
            f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE device_id = ? AND seq = ?",  # noqa: S608 (constant column list)
            (device_id, seq),
        )
        try:
            return None if row is None else self._stored(row)
        except OSError as exc:
            raise wrap_error(exc) from exc

    def iter_batches(
        self,
        device_id: str | None = None,
        on_corrupt: Callable[[str, int, str, str], None] | None = None,
    ) -> Iterator[StoredBatch]:
        last: tuple[str, int] = ("", 0)
        while True:
            if device_id is None:
                sql = (
                    f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE (device_id, seq) > (?, ?) "  # noqa: S608 (constant column list)
                    "ORDER BY device_id, seq LIMIT ?"
                )
                args: tuple[Any, ...] = (*last, _PAGE)
            else:
                sql = (
                    f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE device_id = ? AND seq > ? "  # noqa: S608 (constant column list)
                    "ORDER BY seq LIMIT ?"
                )
                args = (device_id, last[1], _PAGE)
            rows = self._all(sql, args)
            for row in rows:
                try:
                    stored = self._stored(row)
                except OSError as exc:
                    raise wrap_error(exc) from exc
                except CorruptStoreError as exc:
                    if on_corrupt is None:
                        raise
                    on_corrupt(row[0], row[1], row[2], str(exc))
                    continue
                yield stored
            if len(rows) < _PAGE:
                return
            last = (rows[-1][0], rows[-1][1])

    def count_batches(self, device_id: str | None = None) -> int:
        if device_id is None:
            row = self._one("SELECT COUNT(*) FROM batches", ())
        else:
            row = self._one("SELECT COUNT(*) FROM batches WHERE device_id = ?", (device_id,))
        assert row is not None
        return int(row[0])

    def erase_batches(self, device_id: str, start_ms: int, end_ms: int, audit: AuditEvent) -> int:
        if not self.config.exclusive:
            raise StorageError("batches are erased by the serving collector only")

        def apply(tx: Tx) -> int:
            rows = tx.conn.execute(
                "SELECT seq, segment_id, segment_offset, size FROM batches "
                "WHERE device_id = ? AND start_ms <= ? AND end_ms >= ?",
                (device_id, end_ms, start_ms),
            ).fetchall()
            for seq, segment_id, offset, size in rows:
                tx.conn.execute(
                    "DELETE FROM batches WHERE device_id = ? AND seq = ?", (device_id, seq)
                )
                tx.conn.execute(
                    "INSERT INTO blob_holes (segment_id, segment_offset, size) VALUES (?, ?, ?)",
                    (segment_id, offset, size),
                )
                tx.to_zero.append((segment_id, offset, size))
            insert_audit(tx.conn, replace(audit, detail={**audit.detail, "deleted": len(rows)}))
            return len(rows)

        return self._write(apply, erases=True)

    # --------------------------------------------------------------- policies

    def _put_batches(self, tx: Tx, batches: list[BatchWrite]) -> list[BatchOutcome]:
        return put_batches(tx, batches)


def put_batches(tx: Tx, batches: list[BatchWrite]) -> list[BatchOutcome]:
    """Store batches together; an outcome per batch, in order (see ``Storage.submit_batch``)."""
    conn = tx.conn
    known: dict[tuple[str, int], bytes] = {}
    keys = list(dict.fromkeys((b.device_id, b.seq) for b in batches))
    for key_chunk in chunks(keys, ROWS_PER_STATEMENT):
        # A join, not "(device_id, seq) IN (VALUES ...)": SQLite scans the table for that.
        sql = (
            "SELECT b.device_id, b.seq, b.sha256 FROM (VALUES "  # noqa: S608 (placeholders only)
            + ",".join(["(?,?)"] * len(key_chunk))
            + ") AS v JOIN batches AS b ON b.device_id = v.column1 AND b.seq = v.column2"
        )
        for device_id, seq, sha256 in conn.execute(sql, [v for k in key_chunk for v in k]):
            known[(device_id, seq)] = bytes(sha256)
    outcomes: list[BatchOutcome] = []
    new: list[BatchWrite] = []
    conflicts: list[AuditEvent] = []
    for batch in batches:
        key = (batch.device_id, batch.seq)
        stored = known.get(key)
        if stored is None:
            known[key] = batch.sha256
            new.append(batch)
            outcomes.append(BatchOutcome.STORED)
        elif stored == batch.sha256:
            outcomes.append(BatchOutcome.DUPLICATE)
        else:
            outcomes.append(BatchOutcome.CONFLICT)
            if batch.conflict_audit is not None:
                conflicts.append(batch.conflict_audit)
    if conflicts:
        conn.executemany(
            "INSERT INTO audit (at_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            [audit_row(event) for event in conflicts],
        )
    if not new:
        return outcomes
    assert tx.blobs is not None
    places = tx.blobs.append_many([b.sealed for b in new])
    rows: list[tuple[object, ...]] = [
        (
            b.device_id,
            b.seq,
            b.batch_id,
            b.header.decode("utf-8"),
            b.start_ms,
            b.end_ms,
            b.policy_version,
            len(b.sealed),
            b.sha256,
            b.received_at_ms,
            segment_id,
            offset,
        )
        for b, (segment_id, offset) in zip(new, places, strict=True)
    ]
    for chunk in chunks(rows, ROWS_PER_STATEMENT):
        conn.execute(
            "INSERT INTO batches (device_id, seq, batch_id, header, start_ms, end_ms, "  # noqa: S608 (placeholders only)
            "policy_version, size, sha256, received_at_ms, segment_id, segment_offset) VALUES "
            + ",".join([_BATCH_INSERT_ROW] * len(chunk)),
            [v for row in chunk for v in row],
        )
    return outcomes
