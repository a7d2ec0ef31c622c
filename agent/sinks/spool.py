"""The spool: sealed batches on disk until the collector has acknowledged them.

This module owns the spool's on-disk format (version 1) and its guarantees.
It stores sealed batches (``overt.wire.sealed``: already encrypted to the
dataset key and signed by the device), never plaintext capture data. It does
not seal (``agent.sinks.sealing``) and does not talk to the collector
(``agent.sinks.upload``).

On disk
-------
One SQLite database at ``<state_dir>/spool/v1/spool.db`` (directory 0700,
file 0600; the version is in the path and in ``PRAGMA user_version``), in WAL
mode with ``synchronous=FULL``. Tables:

- ``batches``: one row per sealed batch waiting for upload: its plaintext
  header fields (seq, batch id, device id, time range, counts, app ids), the
  sealed size, ``hold_until_ms``, a SHA-256 checksum of the sealed bytes and
  the sealed bytes. A row is *held* until ``hold_until_ms`` (the policy's
  review window, for discarding) and *ready* after.
- ``dead_letters``: batches the collector refused for good (a 4xx other than
  401, 408 and 429), with the status and error; kept, counted, never resent.
- ``quarantine``: rows that failed their integrity check (checksum mismatch,
  sealed bytes that do not parse or do not match the row), with the reason
  and the stored bytes; kept for inspection, never sent.
- ``erasures``: erasure requests for discarded data the collector already has.
- ``ledger`` (``agent.sinks.ledger``): every batch ever spooled, 30 days.

The statements creating these tables, and the values read from their rows,
are :mod:`agent.sinks.spool_rows`.

A row leaves ``batches`` only in the same transaction that records where it
went: acknowledged (ledger ``uploaded``), discarded (ledger ``discarded``,
and an erasure request if some of that time range was already uploaded),
dead-lettered or quarantined.

Crash guarantees
----------------
- ``kill -9`` at any moment: every ``put``, ``ack``, ``discard`` and
  ``dead_letter`` that returned is in the database; one interrupted call is
  either wholly there or wholly absent (SQLite transactions, WAL). Nothing
  written by a returned call is lost, nothing is half-written.
- Power loss: the same, because every commit fsyncs the WAL
  (``synchronous=FULL``) before the call returns — provided the disk honours
  fsync. A crash between the collector's answer and ``ack`` leaves the batch
  in the spool: it is sent again and the collector answers ``200 duplicate``.
- Disk full, read-only file, I/O error: the call raises ``SpoolError`` (a
  full disk ``SpoolFullError(reason="disk")``), its transaction is rolled back
  and every earlier row stays readable.
- A row whose bytes were damaged is moved to ``quarantine`` when it is read
  and counted in ``stats``; the rest keeps flowing. A database file that fails
  ``PRAGMA quick_check`` at open raises ``SpoolError`` naming the file and is
  left untouched for inspection.

Budget
------
``put`` raises ``SpoolFullError(reason="budget")`` when the sealed bytes held
(``batches``, ``dead_letters`` and ``quarantine``) would exceed the budget
(the policy's ``spool_max_bytes``). Nothing is dropped: the agent keeps the
batch, stops capturing with reason ``spool_full`` and retries. The database
file is somewhat larger than the budget (SQLite pages, the WAL until its next
checkpoint); freed pages are reused, not returned to the file system.

Public API — :class:`Spool` (every method is thread-safe: one SQLite
connection shared behind one lock, see ``agent.sinks._sqlite``)::

    Spool(state_dir, *, budget_bytes=DEFAULT_BUDGET_BYTES, tz=None)
    .path .budget_bytes .ledger (agent.sinks.ledger.Ledger)
    .set_budget(n)
    .put(sealed, *, now_ms, hold_until_ms) -> bool        (False: already spooled)
    .next_ready(now_ms) -> SpooledBatch | None            (lowest ready seq, checked)
    .next_hold_until(now_ms) -> int | None
    .ack(batch, *, now_ms, destination)                   (delete, ledger "uploaded")
    .dead_letter(batch, *, now_ms, status, error)
    .discard(since_ms, now_ms) -> DiscardResult
    .pending_erasures() -> list[ErasureRequest]
    .erasure_done(id) / .erasure_failed(id, error, rejected=False)
    .stats(now_ms) -> SpoolStats   .dead_letters()   .quarantined()
    .waiting()   .check_all(now_ms) -> int   .maintain(now_ms) -> int
    .last_seq() -> int   .integrity_check() -> str   .close()

Errors: ``SpoolError`` and its subclasses from ``agent.sinks.base``; a
sealed batch that does not parse is a ``SealError``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from datetime import tzinfo
from pathlib import Path

from overt.wire.sealed import SealedBatchError, parse_sealed

from . import ledger as _ledger
from . import spool_rows as _rows
from ._sqlite import Database
from .base import SealError, SpoolConflictError, SpoolError, SpoolFullError
from .ledger import Ledger, LedgerState
from .spool_rows import (
    DeadLetter,
    DiscardResult,
    ErasureRequest,
    QuarantinedRow,
    SpooledBatch,
    SpoolStats,
)

log = logging.getLogger(__name__)

SPOOL_FORMAT = 1
DEFAULT_BUDGET_BYTES = 256 * 2**20
#: How long dead letters and quarantined rows are kept (as the ledger).
KEEP_DAYS = _ledger.LEDGER_RETENTION_DAYS


def spool_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the spool of an agent state directory lives (``spool/v1/spool.db``)."""
    return Path(state_dir) / "spool" / f"v{SPOOL_FORMAT}" / "spool.db"


class Spool:
    """Sealed batches waiting for upload, with their ledger (see the module docstring)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        tz: tzinfo | None = None,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must not be negative")
        self._budget = budget_bytes
        self._db = Database(spool_path(state_dir))
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise
        self.ledger = Ledger(self._db, tz)

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def budget_bytes(self) -> int:
        return self._budget

    def set_budget(self, budget_bytes: int) -> None:
        """A new byte budget (the policy's ``spool_max_bytes``); applies to the next put."""
        if budget_bytes < 0:
            raise ValueError("budget_bytes must not be negative")
        self._budget = budget_bytes

    def _open(self) -> None:
        with self._db.read("check the database") as conn:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        if result != "ok":
            raise SpoolError(
                f"the spool {self.path} fails its integrity check ({result}); it was left "
                "as it is: move it aside to start a new spool"
            )
        if version > SPOOL_FORMAT:
            raise SpoolError(
                f"the spool {self.path} has format {version}, newer than this agent's "
                f"{SPOOL_FORMAT}"
            )
        if version == SPOOL_FORMAT:
            return
        with self._db.write("create the tables") as conn:
            for statement in (_rows.SCHEMA + _ledger.SCHEMA).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SPOOL_FORMAT}")

    def close(self) -> None:
        self._db.close()

    # ----------------------------------------------------------------- put

    def put(self, sealed: bytes, *, now_ms: int, hold_until_ms: int) -> bool:
        """Store one sealed batch, held until ``hold_until_ms``; durable on return.

        Returns False (and changes nothing) when this batch id was already
        spooled (a retried write). Raises ``SealError`` if ``sealed`` does not
        parse, ``SpoolConflictError`` if its sequence number belongs to another
        batch, ``SpoolFullError`` when the budget or the disk is full, and
        ``SpoolError`` on other I/O failures; in every case nothing was written.
        """
        try:
            parsed = parse_sealed(sealed)
        except SealedBatchError as exc:
            raise SealError(f"not a sealed batch: {exc}") from exc
        header = parsed.header_dict
        seq, batch_id, size = parsed.seq, parsed.batch_id, len(sealed)
        with self._db.write(f"spool batch seq {seq}") as conn:
            known = conn.execute(
                "SELECT seq FROM ledger WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if known is not None:
                if known[0] != seq:
                    raise SpoolConflictError(
                        f"batch {batch_id} was spooled as seq {known[0]}, not {seq}"
                    )
                log.info("batch seq %d already spooled; not stored again", seq)
                return False
            taken = conn.execute(
                "SELECT batch_id FROM ledger WHERE seq = ? UNION ALL "
                "SELECT batch_id FROM batches WHERE seq = ? UNION ALL "
                "SELECT batch_id FROM dead_letters WHERE seq = ?",
                (seq, seq, seq),
            ).fetchone()
            if taken is not None:
                raise SpoolConflictError(f"sequence number {seq} is already used by another batch")
            used = _usage(conn)
            if used + size > self._budget:
                raise SpoolFullError(
                    f"the spool holds {used} bytes; batch seq {seq} ({size} bytes) would exceed "
                    f"its budget of {self._budget} bytes",
                    reason="budget",
                )
            conn.execute(
                "INSERT INTO batches (seq, batch_id, device_id, start_ms, end_ms, counts, app_ids,"
                " size, hold_until_ms, spooled_at_ms, checksum, sealed)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    batch_id,
                    header["device_id"],
                    header["start_ms"],
                    header["end_ms"],
                    json.dumps(header["counts"], sort_keys=True),
                    json.dumps(header["app_ids"]),
                    size,
                    hold_until_ms,
                    now_ms,
                    hashlib.sha256(sealed).digest(),
                    sealed,
                ),
            )
            _ledger.record_spooled(conn, header, size, now_ms, hold_until_ms)
        log.debug("spooled batch seq=%d id=%s: %d bytes", seq, batch_id, size)
        return True

    # -------------------------------------------------------------- reading

    def next_ready(self, now_ms: int) -> SpooledBatch | None:
        """The ready batch with the lowest sequence number, after its integrity
        check; rows that fail it are quarantined on the way."""
        while True:
            with self._db.read("read the next batch") as conn:
                row = conn.execute(
                    _rows.NEXT_READY,
                    (now_ms,),
                ).fetchone()
            if row is None:
                return None
            batch, problem = _rows.checked(row)
            if problem is None:
                return batch
            self._quarantine(row[0], problem, now_ms)

    def next_hold_until(self, now_ms: int) -> int | None:
        """When the next held batch becomes ready, or None if none is held."""
        with self._db.read("read the spool") as conn:
            (value,) = conn.execute(
                "SELECT MIN(hold_until_ms) FROM batches WHERE hold_until_ms > ?", (now_ms,)
            ).fetchone()
        return None if value is None else int(value)

    def check_all(self, now_ms: int) -> int:
        """Check every waiting row now; quarantine the bad ones. Returns how many."""
        with self._db.read("check the spool") as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM batches ORDER BY seq")]
        bad = 0
        for seq in seqs:
            with self._db.read("check the spool") as conn:
                row = conn.execute(_rows.BATCH_BY_SEQ, (seq,)).fetchone()
            if row is None:
                continue
            _, problem = _rows.checked(row)
            if problem is not None:
                self._quarantine(seq, problem, now_ms)
                bad += 1
        return bad

    def _quarantine(self, seq: int, problem: str, now_ms: int) -> None:
        log.error("spool row seq %d fails its integrity check (%s); quarantined", seq, problem)
        with self._db.write(f"quarantine seq {seq}") as conn:
            row = conn.execute("SELECT batch_id FROM batches WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            conn.execute(
                "INSERT INTO quarantine (seq, batch_id, reason, quarantined_at_ms, size, sealed)"
                " SELECT seq, batch_id, ?, ?, length(sealed), sealed FROM batches WHERE seq = ?",
                (problem, now_ms, seq),
            )
            conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            _ledger.set_state(conn, row[0], LedgerState.QUARANTINED, now_ms)

    # ------------------------------------------------------ after an upload

    def ack(self, batch: SpooledBatch, *, now_ms: int, destination: str) -> None:
        """The collector has the batch (``201 stored`` or ``200 duplicate``):
        delete it and record the upload in the ledger. If it was discarded
        while on its way, the upload is recorded all the same and an erasure
        request for its time range is queued."""
        with self._db.write(f"acknowledge seq {batch.seq}") as conn:
            deleted = conn.execute(
                "DELETE FROM batches WHERE seq = ? AND batch_id = ?", (batch.seq, batch.batch_id)
            ).rowcount
            state = conn.execute(
                "SELECT state FROM ledger WHERE batch_id = ?", (batch.batch_id,)
            ).fetchone()
            if not deleted and (state is None or state[0] != LedgerState.DISCARDED.value):
                log.warning("ack for seq %d, which is no longer spooled", batch.seq)
                return
            _ledger.set_state(
                conn, batch.batch_id, LedgerState.UPLOADED, now_ms, destination=destination
            )
            if not deleted:
                log.warning("seq %d was discarded during its upload; erasure queued", batch.seq)
                _add_erasure(conn, batch.start_ms, batch.end_ms, now_ms)

    def dead_letter(
        self, batch: SpooledBatch, *, now_ms: int, status: int | None, error: str
    ) -> None:
        """The collector refused the batch for good: move it to the dead letters."""
        with self._db.write(f"dead-letter seq {batch.seq}") as conn:
            moved = conn.execute(
                "INSERT INTO dead_letters (seq, batch_id, start_ms, end_ms, size, status, error,"
                " dead_at_ms, sealed) SELECT seq, batch_id, start_ms, end_ms, size, ?, ?, ?, sealed"
                " FROM batches WHERE seq = ? AND batch_id = ?",
                (status, error[:500], now_ms, batch.seq, batch.batch_id),
            ).rowcount
            if not moved:
                return
            conn.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,))
            _ledger.set_state(conn, batch.batch_id, LedgerState.DEAD, now_ms)
        log.error("seq %d refused by the collector (status %s); dead-lettered", batch.seq, status)

    # -------------------------------------------------------------- discard

    def discard(self, since_ms: int, now_ms: int) -> DiscardResult:
        """Delete every batch not yet uploaded whose time range overlaps
        ``[since_ms, now_ms]`` (waiting, dead-lettered or quarantined), and
        queue an erasure request covering the batches of that range that were
        already uploaded. Durable on return."""
        if since_ms > now_ms:
            raise ValueError("since_ms must not be after now_ms")
        span = (now_ms, since_ms)
        with self._db.write("discard batches") as conn:
            ids = [
                batch_id
                for (batch_id,) in conn.execute(
                    "SELECT batch_id FROM batches WHERE start_ms <= ? AND end_ms >= ?"
                    " UNION ALL "
                    "SELECT batch_id FROM dead_letters WHERE start_ms <= ? AND end_ms >= ?",
                    span * 2,
                ).fetchall()
            ]
            quarantined = conn.execute(
                "SELECT q.id, q.batch_id FROM quarantine q JOIN ledger l"
                " ON l.batch_id = q.batch_id WHERE l.start_ms <= ? AND l.end_ms >= ?",
                span,
            ).fetchall()
            conn.execute("DELETE FROM batches WHERE start_ms <= ? AND end_ms >= ?", span)
            conn.execute("DELETE FROM dead_letters WHERE start_ms <= ? AND end_ms >= ?", span)
            for row_id, batch_id in quarantined:
                conn.execute("DELETE FROM quarantine WHERE id = ?", (row_id,))
                ids.append(batch_id)
            for batch_id in ids:
                _ledger.set_state(conn, batch_id, LedgerState.DISCARDED, now_ms)
            start, end = conn.execute(
                "SELECT MIN(start_ms), MAX(end_ms) FROM ledger"
                " WHERE state = 'uploaded' AND start_ms <= ? AND end_ms >= ?",
                span,
            ).fetchone()
            erasure: tuple[int, int] | None = None
            if start is not None:
                erasure = (int(start), int(end))
                _add_erasure(conn, erasure[0], erasure[1], now_ms)
        log.info("discarded %d batches; erasure requested: %s", len(ids), erasure is not None)
        return DiscardResult(batches_deleted=len(ids), erasure_range=erasure)

    def pending_erasures(self) -> list[ErasureRequest]:
        """Erasure requests to send, oldest first (rejected ones are kept, not listed)."""
        with self._db.read("read erasure requests") as conn:
            rows = conn.execute(
                "SELECT id, start_ms, end_ms, reason, requested_at_ms, attempts FROM erasures"
                " WHERE rejected = 0 ORDER BY id"
            ).fetchall()
        return [ErasureRequest(*row) for row in rows]

    def erasure_done(self, request_id: int) -> None:
        """The collector acknowledged the erasure request: forget it."""
        with self._db.write("remove an erasure request") as conn:
            conn.execute("DELETE FROM erasures WHERE id = ?", (request_id,))

    def erasure_failed(self, request_id: int, error: str, *, rejected: bool = False) -> None:
        """Count a failed attempt; ``rejected``: the collector refused it for good
        (kept, no longer sent)."""
        with self._db.write("update an erasure request") as conn:
            conn.execute(
                "UPDATE erasures SET attempts = attempts + 1, last_error = ?, rejected = ?"
                " WHERE id = ?",
                (error[:500], int(rejected), request_id),
            )

    # --------------------------------------------------------------- status

    def stats(self, now_ms: int) -> SpoolStats:
        with self._db.read("read the spool's counts") as conn:
            held, ready = conn.execute(
                "SELECT COALESCE(SUM(hold_until_ms > ?), 0), COALESCE(SUM(hold_until_ms <= ?), 0)"
                " FROM batches",
                (now_ms, now_ms),
            ).fetchone()
            (dead,) = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
            (quarantined,) = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()
            used = _usage(conn)
        return SpoolStats(
            batches=held + ready,
            bytes=used,
            budget=self._budget,
            held=held,
            ready=ready,
            dead=dead,
            quarantined=quarantined,
        )

    def dead_letters(self) -> list[DeadLetter]:
        with self._db.read("read dead letters") as conn:
            rows = conn.execute(
                "SELECT seq, batch_id, start_ms, end_ms, size, status, error, dead_at_ms"
                " FROM dead_letters ORDER BY seq"
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def quarantined(self) -> list[QuarantinedRow]:
        with self._db.read("read the quarantine") as conn:
            rows = conn.execute(
                "SELECT id, seq, batch_id, reason, quarantined_at_ms, size FROM quarantine"
                " ORDER BY id"
            ).fetchall()
        return [QuarantinedRow(*row) for row in rows]

    def waiting(self) -> list[SpooledBatch]:
        """Every batch waiting for upload, by sequence number, unchecked."""
        with self._db.read("read the spool") as conn:
            rows = conn.execute(_rows.ALL_BATCHES).fetchall()
        return [SpooledBatch(r[0], r[1], r[2], r[3], r[4], r[5], r[7]) for r in rows]

    def last_seq(self) -> int:
        """The highest sequence number the spool has seen (0 if none)."""
        with self._db.read("read the spool") as conn:
            (value,) = conn.execute(
                "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM batches UNION ALL "
                "SELECT MAX(seq) FROM ledger UNION ALL SELECT MAX(seq) FROM dead_letters)"
            ).fetchone()
        return int(value or 0)

    def maintain(self, now_ms: int) -> int:
        """Drop ledger entries, dead letters and quarantined rows past retention
        (30 days). Returns how many rows went."""
        cutoff = now_ms - KEEP_DAYS * _ledger.DAY_MS
        with self._db.write("prune old entries") as conn:
            n = _ledger.prune(conn, now_ms)
            n += conn.execute("DELETE FROM dead_letters WHERE dead_at_ms < ?", (cutoff,)).rowcount
            n += conn.execute(
                "DELETE FROM quarantine WHERE quarantined_at_ms < ?", (cutoff,)
            ).rowcount
        if n:
            log.info("pruned %d spool and ledger rows past retention", n)
        return n

    def integrity_check(self) -> str:
        """SQLite's full ``PRAGMA integrity_check`` of the file ("ok" when sound)."""
        with self._db.read("check the database") as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)


def _usage(conn: sqlite3.Connection) -> int:
    (used,) = conn.execute(
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM batches)"
        " + (SELECT COALESCE(SUM(size), 0) FROM dead_letters)"
        " + (SELECT COALESCE(SUM(size), 0) FROM quarantine)"
    ).fetchone()
    return int(used)


def _add_erasure(conn: sqlite3.Connection, start_ms: int, end_ms: int, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO erasures (start_ms, end_ms, reason, requested_at_ms) VALUES (?,?,?,?)",
        (start_ms, end_ms, "discarded by the employee", now_ms),
    )


__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "SPOOL_FORMAT",
    "DeadLetter",
    "DiscardResult",
    "ErasureRequest",
    "QuarantinedRow",
    "Spool",
    "SpoolStats",
    "SpooledBatch",
    "spool_path",
]
