"""The embedded store: SQLite for metadata, segment files for sealed batches.

Layout of a data directory (format 1)::

    DATA/collector.db        SQLite, WAL mode, ``synchronous=FULL``; schema
                             version in ``meta``; tables below
    DATA/blobs/v1/seg-*.dat  sealed batches back to back (``collector.blobs``)
    DATA/.lock               held (flock) by the serving collector

Every write goes through one writer thread that practises *group commit*: it
takes every write waiting in its queue (up to ``max_group``), applies each in
its own SAVEPOINT (one failing write does not undo the others), appends the
sealed bytes of new batches to the active segment, fsyncs the segment once,
commits one SQLite transaction (which fsyncs the WAL), and only then
completes every waiting caller. Reads use a small pool of other connections
(WAL lets them run beside the writer).

Guarantees after a crash (SIGKILL, power loss) at any moment:

- every write whose call returned (whose future resolved) is there, with the
  exact bytes that were acknowledged;
- nothing half-written is visible: rows commit atomically, and blob bytes
  are on disk before the rows that point at them (bytes appended by a group
  that never committed are truncated on the next start);
- an erasure that returned has zeroed the ciphertext on disk. The rows and
  the list of ranges to zero commit together, the ranges are zeroed and
  synced before the call returns, and ranges still listed at start (a crash
  in between) are zeroed again then;
- remembered nonces survive a restart, except those of requests other than
  batch uploads answered in the last ``NONCE_FLUSH_SECONDS`` before the crash
  (they are persisted with the writer's next group, not before the answer):
  a replay of such a request could be accepted once after the restart. The
  nonce of a batch upload is durable before the batch is acknowledged.

Only one serving collector may open a data directory (``exclusive=True``
takes ``DATA/.lock``); tools beside it open it non-exclusive and may not
write batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import heapq
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from collector.blobs import BlobSegments
from collector.config import StorageConfig
from collector.errors import (
    AlreadyDecidedError,
    CollectorError,
    CorruptStoreError,
    DeviceExistsError,
    EnrollmentTokenError,
    NotFoundError,
    PolicyVersionError,
    StorageError,
    StoreLockedError,
)
from collector.storage import (
    AdminTokenRecord,
    AdminUserRecord,
    AuditEvent,
    BatchOutcome,
    BatchWrite,
    Decision,
    DeviceRecord,
    EnrollmentTokenRecord,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
    PolicyPutOutcome,
    PolicyRecord,
    StoredBatch,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_FILE = "collector.db"
BLOB_DIR = ("blobs", "v1")
LOCK_FILE = ".lock"

#: An idle writer persists claimed nonces at least this often.
NONCE_FLUSH_SECONDS = 0.5
#: How often (in the callers' clock) expired nonces are deleted from the table.
_NONCE_PRUNE_MS = 60_000
_PAGE = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    grp TEXT NOT NULL,
    hostname TEXT NOT NULL,
    enrolled_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    last_seen_ms INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    policy_version INTEGER
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    token_id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    grp TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    used_at_ms INTEGER,
    device_id TEXT
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS admin_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    device_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    segment_id INTEGER PRIMARY KEY,
    committed_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    header TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    policy_version INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL,
    segment_id INTEGER NOT NULL,
    segment_offset INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
-- What every stored batch changes elsewhere, kept by SQLite itself: the
-- device's counters and the segment's committed length move with the rows.
CREATE TRIGGER IF NOT EXISTS batch_stored AFTER INSERT ON batches BEGIN
    UPDATE devices SET
        last_seen_ms = max(coalesce(last_seen_ms, 0), NEW.received_at_ms),
        bytes = bytes + NEW.size,
        batches = batches + 1,
        policy_version = NEW.policy_version
    WHERE device_id = NEW.device_id;
    INSERT INTO segments (segment_id, committed_bytes)
    VALUES (NEW.segment_id, NEW.segment_offset + NEW.size)
    ON CONFLICT (segment_id) DO UPDATE
    SET committed_bytes = max(committed_bytes, excluded.committed_bytes);
END;
CREATE TRIGGER IF NOT EXISTS batch_erased AFTER DELETE ON batches BEGIN
    UPDATE devices SET bytes = bytes - OLD.size, batches = batches - 1
    WHERE device_id = OLD.device_id;
END;
CREATE TABLE IF NOT EXISTS blob_holes (
    segment_id INTEGER NOT NULL,
    segment_offset INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    policy_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    version INTEGER NOT NULL,
    groups TEXT NOT NULL,
    envelope BLOB NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    expires_ms INTEGER NOT NULL,
    stored_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS policies_by_tenant ON policies (tenant, version);
CREATE TABLE IF NOT EXISTS exemptions (
    request_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    grp TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration_days INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_at_ms INTEGER,
    decided_by TEXT,
    decision_reason TEXT,
    grant_id TEXT,
    grant_expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS exemptions_by_device ON exemptions (device_id);
CREATE INDEX IF NOT EXISTS exemptions_by_status ON exemptions (status);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_by_device ON grants (device_id, expires_ms);
CREATE TABLE IF NOT EXISTS audit (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

T = TypeVar("T")


@dataclass
class _Tx:
    """What a write sees inside the writer's group transaction."""

    conn: sqlite3.Connection
    blobs: BlobSegments | None
    #: Blob ranges to zero once the group has committed (erasure).
    to_zero: list[tuple[int, int, int]] = field(default_factory=list)
    #: Set when a write failed outside a savepoint: the group must not commit.
    failed: BaseException | None = None


@dataclass
class _Job(Generic[T]):
    apply: Callable[[_Tx], T] | None
    future: Future[T]
    #: Zeroes ranges after commit: its future waits for that as well.
    erases: bool = False
    #: A batch write (``apply`` is None): consecutive ones are written together.
    batch: BatchWrite | None = None


class _GroupStats:
    """Group sizes and times, logged at debug level every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.groups = self.writes = 0
        self.busy = 0.0
        self.since = time.perf_counter()

    def add(self, writes: int, seconds: float) -> None:
        self.groups += 1
        self.writes += writes
        self.busy += seconds
        now = time.perf_counter()
        if now - self.since >= self.every:
            logger.debug(
                "writer: %d writes in %d groups (%.1f per group), %.1f ms per group, busy %.0f%%",
                self.writes,
                self.groups,
                self.writes / self.groups,
                1000 * self.busy / self.groups,
                100 * self.busy / (now - self.since),
            )
            self.groups = self.writes = 0
            self.busy = 0.0
            self.since = now


_STOP = object()
#: Stands for "nothing queued": the writer only persists claimed nonces.
_FLUSH = object()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def _wrap(exc: BaseException) -> CollectorError:
    if isinstance(exc, CollectorError):
        return exc
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
        return CorruptStoreError(f"the metadata database is corrupt: {exc}")
    if isinstance(exc, OSError):
        return StorageError(f"storage I/O failed: {exc.strerror or exc}")
    return StorageError(f"storage failed: {type(exc).__name__}: {exc}")


def _audit_row(event: AuditEvent) -> tuple[int, str, str, str, str]:
    detail = json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":"))
    return (event.at_ms, event.actor, event.action, event.subject, detail)


def _insert_audit(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(
        "INSERT INTO audit (at_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        _audit_row(event),
    )


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script (triggers hold semicolons of their own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def _groups_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return "*" in a or "*" in b or bool(set(a) & set(b))


_DEVICE_COLUMNS = (
    "device_id, public_key, tenant, grp, hostname, enrolled_at_ms, revoked_at_ms, "
    "last_seen_ms, bytes, batches, policy_version"
)
_TOKEN_COLUMNS = (
    "token_id, token_hash, tenant, grp, created_at_ms, expires_at_ms, created_by, "  # noqa: S105
    "used_at_ms, device_id"
)
_EXEMPTION_COLUMNS = (
    "request_id, device_id, tenant, grp, category, reason, duration_days, created_at_ms, "
    "status, decided_at_ms, decided_by, decision_reason, grant_id, grant_expires_ms"
)
_POLICY_COLUMNS = "tenant, version, groups, envelope, sha256, expires_ms, stored_at_ms"
_GRANT_COLUMNS = (
    "grant_id, request_id, device_id, tenant, category, issued_at_ms, expires_ms, envelope"
)


def _device(row: tuple[Any, ...]) -> DeviceRecord:
    return DeviceRecord(*row)


def _token(row: tuple[Any, ...]) -> EnrollmentTokenRecord:
    return EnrollmentTokenRecord(*row)


def _exemption(row: tuple[Any, ...]) -> ExemptionRecord:
    values = list(row)
    values[8] = ExemptionStatus(values[8])
    return ExemptionRecord(*values)


def _policy(row: tuple[Any, ...]) -> PolicyRecord:
    tenant, version, groups, envelope, sha256, expires_ms, stored_at_ms = row
    return PolicyRecord(
        tenant=tenant,
        version=version,
        groups=tuple(json.loads(groups)),
        envelope=bytes(envelope),
        sha256=sha256,
        expires_ms=expires_ms,
        stored_at_ms=stored_at_ms,
    )


def _grant(row: tuple[Any, ...]) -> GrantRecord:
    values = list(row)
    values[7] = bytes(values[7])
    return GrantRecord(*values)


class SQLiteStorage:
    """:class:`collector.storage.Storage` on SQLite and blob segments (see module doc)."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._closed = False
        self._submit_lock = threading.Lock()
        self._lock_fd: int | None = None
        data_dir = config.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"cannot create {data_dir}: {exc.strerror}") from exc
        if config.exclusive:
            self._take_lock()
        self._db_path = str(data_dir / DB_FILE)
        try:
            self._writer_conn = _connect(self._db_path)
            self._init_schema()
        except sqlite3.Error as exc:
            self._release_lock()
            raise _wrap(exc) from exc
        self._blobs = BlobSegments(
            data_dir.joinpath(*BLOB_DIR), config.segment_max_bytes, writable=config.exclusive
        )
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            if config.exclusive:
                self._recover()
            self._nonces: dict[tuple[str, str], int] = {}
            self._nonce_heap: list[tuple[int, str, str]] = []
            self._nonce_lock = threading.Lock()
            self._nonce_pruned_ms = 0
            self._pending_nonces: list[tuple[str, str, int]] = []
            self._prune_before: int | None = None
            if config.exclusive:
                self._load_nonces()
        except (sqlite3.Error, OSError) as exc:
            self._blobs.close()
            self._writer_conn.close()
            self._release_lock()
            raise _wrap(exc) from exc
        self._queue: queue.SimpleQueue[_Job[Any] | object] = queue.SimpleQueue()
        self._stats = _GroupStats()
        self._writer = threading.Thread(target=self._run, name="collector-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------- lifecycle

    def _take_lock(self) -> None:
        path = self.config.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreLockedError(
                f"another collector is serving {self.config.data_dir} (it holds {path})"
            ) from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _init_schema(self) -> None:
        conn = self._writer_conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"SQLite refused WAL mode (got {mode})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(_SCHEMA):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise CorruptStoreError(
                    f"{self._db_path} has schema version {row[0]}; this collector reads "
                    f"version {SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _recover(self) -> None:
        conn = self._writer_conn
        holes = conn.execute("SELECT segment_id, segment_offset, size FROM blob_holes").fetchall()
        if holes:
            logger.info("finishing %d interrupted erasure range(s)", len(holes))
            self._blobs.zero([(int(s), int(o), int(n)) for s, o, n in holes])
            conn.execute("DELETE FROM blob_holes")
        committed = dict(conn.execute("SELECT segment_id, committed_bytes FROM segments"))
        self._blobs.recover(committed)

    def _load_nonces(self) -> None:
        rows = self._writer_conn.execute("SELECT device_id, nonce, expires_ms FROM nonces")
        for device_id, nonce, expires_ms in rows:
            self._nonces[(device_id, nonce)] = expires_ms
            self._nonce_heap.append((expires_ms, device_id, nonce))
        heapq.heapify(self._nonce_heap)

    def close(self) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join()
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
        self._blobs.close()
        self._writer_conn.close()
        self._release_lock()

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------- the writer

    def _submit(self, apply: Callable[[_Tx], T], *, erases: bool = False) -> Future[T]:
        return self._enqueue(_Job(apply, Future(), erases))

    def _enqueue(self, job: _Job[T]) -> Future[T]:
        with self._submit_lock:
            if not self._closed:
                self._queue.put(job)
                return job.future
        job.future.set_exception(StorageError("the store is closed"))
        return job.future

    def _write(self, apply: Callable[[_Tx], T], *, erases: bool = False) -> T:
        return self._submit(apply, erases=erases).result()

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs: list[_Job[Any]] = []
            try:
                item = self._queue.get(timeout=NONCE_FLUSH_SECONDS)
            except queue.Empty:
                item = _FLUSH
            while True:
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, _Job):
                    jobs.append(item)
                if len(jobs) >= self.config.max_group:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                started = time.perf_counter()
                self._run_group(jobs)
                self._stats.add(len(jobs), time.perf_counter() - started)
            except BaseException as exc:  # never leave a caller waiting
                logger.exception("writer group failed")
                with contextlib.suppress(sqlite3.Error):
                    self._writer_conn.execute("ROLLBACK")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(_wrap(exc))
        # Writes queued after close() began are refused, never left waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(StorageError("the store is closed"))

    def _run_group(self, jobs: list[_Job[Any]]) -> None:
        """One transaction, one blob fsync, for every write in ``jobs`` (see module doc).

        Each SQLite call and each syscall lets go of the GIL, and getting it
        back can take a whole switch interval while the event loop thread is
        busy; so consecutive batch writes are applied together (one query for
        duplicates, one ``writev``, one multi-row insert, one device update)
        rather than one by one.
        """
        conn = self._writer_conn
        blobs = self._blobs if self.config.exclusive else None
        with self._nonce_lock:
            nonces, self._pending_nonces = self._pending_nonces, []
            prune_before, self._prune_before = self._prune_before, None
        if not jobs and not nonces:
            return
        mark = self._blobs.mark()
        tx = _Tx(conn, blobs)
        results: list[tuple[_Job[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in jobs:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(_wrap(exc))
            self._requeue_nonces(nonces)
            return
        index = 0
        while index < len(jobs):
            if jobs[index].batch is not None:
                run = []
                while index < len(jobs) and jobs[index].batch is not None:
                    if jobs[index].future.set_running_or_notify_cancel():
                        run.append(jobs[index])
                    index += 1
                if run:
                    alone = len(run) == len(jobs)
                    results.extend(self._apply_batches(tx, run, alone=alone))
                continue
            job = jobs[index]
            index += 1
            if not job.future.set_running_or_notify_cancel():
                continue
            assert job.apply is not None
            conn.execute("SAVEPOINT job")
            try:
                result = job.apply(tx)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                results.append((job, result, None))
        try:
            if tx.failed is not None:
                raise tx.failed
            if nonces:
                _insert_nonces(conn, nonces)
            if prune_before is not None:
                conn.execute("DELETE FROM nonces WHERE expires_ms < ?", (prune_before,))
            if blobs is not None:
                blobs.sync()
            conn.execute("COMMIT")
        except Exception as exc:
            logger.error("group commit of %d write(s) failed: %s", len(results), exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            with contextlib.suppress(OSError):
                self._blobs.rollback(mark)
            self._requeue_nonces(nonces)
            error = _wrap(exc)
            for job, _, _ in results:
                job.future.set_exception(error)
            return
        zero_error: CollectorError | None = None
        if tx.to_zero:
            try:
                self._blobs.zero(tx.to_zero)
                conn.execute("DELETE FROM blob_holes")
            except (sqlite3.Error, OSError) as exc:
                # The ranges stay listed in blob_holes and are zeroed at the next start.
                logger.error("zeroing %d erased range(s) failed: %s", len(tx.to_zero), exc)
                zero_error = _wrap(exc)
        for job, result, failure in results:
            if failure is not None:
                job.future.set_exception(_wrap(failure))
            elif job.erases and zero_error is not None:
                job.future.set_exception(zero_error)
            else:
                job.future.set_result(result)

    def _apply_batches(
        self, tx: _Tx, run: list[_Job[Any]], *, alone: bool
    ) -> list[tuple[_Job[Any], Any, BaseException | None]]:
        batches = [job.batch for job in run if job.batch is not None]
        if alone:
            # Nothing else in this transaction to protect: a failure fails the
            # whole group (the transaction is rolled back), and two statements
            # are saved.
            try:
                outcomes = _put_batches(tx, batches)
            except Exception as exc:
                tx.failed = exc
                return [(job, None, exc) for job in run]
            return [(job, outcome, None) for job, outcome in zip(run, outcomes, strict=True)]
        tx.conn.execute("SAVEPOINT batches")
        try:
            outcomes = _put_batches(tx, batches)
        except Exception as exc:
            tx.conn.execute("ROLLBACK TO batches")
            tx.conn.execute("RELEASE batches")
            return [(job, None, exc) for job in run]
        tx.conn.execute("RELEASE batches")
        return [(job, outcome, None) for job, outcome in zip(run, outcomes, strict=True)]

    def _requeue_nonces(self, nonces: list[tuple[str, str, int]]) -> None:
        if nonces:
            with self._nonce_lock:
                self._pending_nonces[:0] = nonces

    # -------------------------------------------------------------- readers

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StorageError("the store is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            try:
                conn = _connect(self._db_path)
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                raise _wrap(exc) from exc
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc
        finally:
            self._readers.put(conn)

    def _one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._reader() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as conn:
            return conn.execute(sql, args).fetchall()

    # ------------------------------------------------------------ enrollment

    def add_enrollment_token(self, token: EnrollmentTokenRecord, audit: AuditEvent) -> None:
        def apply(tx: _Tx) -> None:
            tx.conn.execute(
                f"INSERT INTO enrollment_tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",  # noqa: S608 (constant column list)
                (
                    token.token_id,
                    token.token_hash,
                    token.tenant,
                    token.group,
                    token.created_at_ms,
                    token.expires_at_ms,
                    token.created_by,
                    token.used_at_ms,
                    token.device_id,
                ),
            )
            _insert_audit(tx.conn, audit)

        self._write(apply)

    def list_enrollment_tokens(self) -> list[EnrollmentTokenRecord]:
        rows = self._all(
            f"SELECT {_TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at_ms DESC, token_id"  # noqa: S608 (constant column list)
        )
        return [replace(_token(r), token_hash=bytes(r[1])) for r in rows]

    def enroll_device(
        self,
        token_hash: bytes,
        device_id: str,
        public_key: str,
        hostname: str,
        now_ms: int,
        audit: AuditEvent,
    ) -> DeviceRecord:
        def apply(tx: _Tx) -> DeviceRecord:
            row = tx.conn.execute(
                "SELECT token_id, tenant, grp, expires_at_ms, used_at_ms "
                "FROM enrollment_tokens WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            if row is None:
                raise EnrollmentTokenError("unknown enrollment token")
            token_id, tenant, group, expires_at_ms, used_at_ms = row
            if used_at_ms is not None:
                raise EnrollmentTokenError(f"enrollment token {token_id} was already used")
            if now_ms >= expires_at_ms:
                raise EnrollmentTokenError(f"enrollment token {token_id} has expired")
            taken = tx.conn.execute(
                "SELECT 1 FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if taken:
                raise DeviceExistsError(f"device id {device_id!r} is already enrolled")
            device = DeviceRecord(
                device_id=device_id,
                public_key=public_key,
                tenant=tenant,
                group=group,
                hostname=hostname,
                enrolled_at_ms=now_ms,
            )
            tx.conn.execute(
                f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 (constant column list)
                (
                    device.device_id,
                    device.public_key,
                    device.tenant,
                    device.group,
                    device.hostname,
                    device.enrolled_at_ms,
                    None,
                    None,
                    0,
                    0,
                    None,
                ),
            )
            tx.conn.execute(
                "UPDATE enrollment_tokens SET used_at_ms = ?, device_id = ? WHERE token_id = ?",
                (now_ms, device_id, token_id),
            )
            detail = {**audit.detail, "token_id": token_id, "tenant": tenant, "group": group}
            _insert_audit(tx.conn, replace(audit, detail=detail))
            return device

        return self._write(apply)

    def get_device(self, device_id: str) -> DeviceRecord | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,))  # noqa: S608 (constant column list)
        return None if row is None else _device(row)

    def list_devices(self) -> list[DeviceRecord]:
        rows = self._all(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")  # noqa: S608 (constant column list)
        return [_device(r) for r in rows]

    def revoke_device(self, device_id: str, now_ms: int, audit: AuditEvent) -> bool:
        def apply(tx: _Tx) -> bool:
            cursor = tx.conn.execute(
                "UPDATE devices SET revoked_at_ms = ? "
                "WHERE device_id = ? AND revoked_at_ms IS NULL",
                (now_ms, device_id),
            )
            if cursor.rowcount != 1:
                return False
            _insert_audit(tx.conn, audit)
            return True

        return self._write(apply)

    # ----------------------------------------------------- admin credentials

    def add_admin_token(self, token: AdminTokenRecord, audit: AuditEvent) -> None:
        def apply(tx: _Tx) -> None:
            tx.conn.execute(
                "INSERT INTO admin_tokens (token_id, name, token_hash, created_at_ms, "
                "revoked_at_ms) VALUES (?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.name,
                    token.token_hash,
                    token.created_at_ms,
                    token.revoked_at_ms,
                ),
            )
            _insert_audit(tx.conn, audit)

        self._write(apply)

    def find_admin_token(self, token_hash: bytes) -> AdminTokenRecord | None:
        row = self._one(
            "SELECT token_id, name, token_hash, created_at_ms, revoked_at_ms FROM admin_tokens "
            "WHERE token_hash = ? AND revoked_at_ms IS NULL",
            (token_hash,),
        )
        if row is None:
            return None
        return AdminTokenRecord(row[0], row[1], bytes(row[2]), row[3], row[4])

    def set_admin_user(self, user: AdminUserRecord, audit: AuditEvent) -> None:
        def apply(tx: _Tx) -> None:
            tx.conn.execute(
                "INSERT INTO admin_users (name, password_hash, created_at_ms, updated_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "password_hash = excluded.password_hash, updated_at_ms = excluded.updated_at_ms",
                (user.name, user.password_hash, user.created_at_ms, user.updated_at_ms),
            )
            _insert_audit(tx.conn, audit)

        self._write(apply)

    def get_admin_user(self, name: str) -> AdminUserRecord | None:
        row = self._one(
            "SELECT name, password_hash, created_at_ms, updated_at_ms FROM admin_users "
            "WHERE name = ?",
            (name,),
        )
        return None if row is None else AdminUserRecord(*row)

    # ------------------------------------------------------ replay protection

    def claim_nonce(self, device_id: str, nonce: str, expires_ms: int, now_ms: int) -> bool:
        key = (device_id, nonce)
        with self._nonce_lock:
            heap = self._nonce_heap
            while heap and heap[0][0] < now_ms:
                expired, old_device, old_nonce = heapq.heappop(heap)
                if self._nonces.get((old_device, old_nonce)) == expired:
                    del self._nonces[(old_device, old_nonce)]
            held = self._nonces.get(key)
            if held is not None and held >= now_ms:
                return False
            self._nonces[key] = expires_ms
            heapq.heappush(heap, (expires_ms, device_id, nonce))
            if now_ms - self._nonce_pruned_ms >= _NONCE_PRUNE_MS:
                self._nonce_pruned_ms = now_ms
                self._prune_before = now_ms
            # Persisted by the writer's next group: a batch upload of this
            # request is written in that group or a later one, so the nonce is
            # durable before the batch is acknowledged. Other requests do not
            # wait; an idle writer flushes within NONCE_FLUSH_SECONDS.
            self._pending_nonces.append((device_id, nonce, expires_ms))
        return True

    def submit_batch(self, batch: BatchWrite) -> Future[BatchOutcome]:
        if not self.config.exclusive:
            future: Future[BatchOutcome] = Future()
            future.set_exception(StorageError("batches are written by the serving collector only"))
            return future
        return self._enqueue(_Job(None, Future(), batch=batch))

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
            raise _wrap(exc) from exc

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
                    raise _wrap(exc) from exc
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

        def apply(tx: _Tx) -> int:
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
            _insert_audit(tx.conn, replace(audit, detail={**audit.detail, "deleted": len(rows)}))
            return len(rows)

        return self._write(apply, erases=True)

    # --------------------------------------------------------------- policies

    def put_policy(self, policy: PolicyRecord, audit: AuditEvent) -> PolicyPutOutcome:
        def apply(tx: _Tx) -> PolicyPutOutcome:
            rows = tx.conn.execute(
                "SELECT version, groups, sha256 FROM policies WHERE tenant = ?", (policy.tenant,)
            ).fetchall()
            for _, _, sha256 in rows:
                if sha256 == policy.sha256:
                    return PolicyPutOutcome.UNCHANGED
            for version, groups, _ in rows:
                if version >= policy.version and _groups_overlap(
                    tuple(json.loads(groups)), policy.groups
                ):
                    raise PolicyVersionError(
                        f"tenant {policy.tenant!r} already has policy version {version} for "
                        f"overlapping device groups; a new policy needs a higher version"
                    )
            tx.conn.execute(
                f"INSERT INTO policies ({_POLICY_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608 (constant column list)
                (
                    policy.tenant,
                    policy.version,
                    json.dumps(list(policy.groups)),
                    policy.envelope,
                    policy.sha256,
                    policy.expires_ms,
                    policy.stored_at_ms,
                ),
            )
            _insert_audit(tx.conn, audit)
            return PolicyPutOutcome.STORED

        return self._write(apply)

    def latest_policy(self, tenant: str, group: str) -> PolicyRecord | None:
        rows = self._all(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE tenant = ? ORDER BY version DESC",  # noqa: S608 (constant column list)
            (tenant,),
        )
        for row in rows:
            record = _policy(row)
            if "*" in record.groups or group in record.groups:
                return record
        return None

    def list_policies(self) -> list[PolicyRecord]:
        rows = self._all(f"SELECT {_POLICY_COLUMNS} FROM policies ORDER BY tenant, version")  # noqa: S608 (constant column list)
        return [_policy(r) for r in rows]

    # ------------------------------------------------- exemptions and grants

    def add_exemption(self, request: ExemptionRecord, audit: AuditEvent) -> None:
        def apply(tx: _Tx) -> None:
            tx.conn.execute(
                f"INSERT INTO exemptions ({_EXEMPTION_COLUMNS}) "  # noqa: S608 (constant column list)
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    request.request_id,
                    request.device_id,
                    request.tenant,
                    request.group,
                    request.category,
                    request.reason,
                    request.duration_days,
                    request.created_at_ms,
                    request.status.value,
                    request.decided_at_ms,
                    request.decided_by,
                    request.decision_reason,
                    request.grant_id,
                    request.grant_expires_ms,
                ),
            )
            _insert_audit(tx.conn, audit)

        self._write(apply)

    def get_exemption(self, request_id: str) -> ExemptionRecord | None:
        row = self._one(
            f"SELECT {_EXEMPTION_COLUMNS} FROM exemptions WHERE request_id = ?",  # noqa: S608
            (request_id,),
        )
        return None if row is None else _exemption(row)

    def list_exemptions(
        self, *, status: ExemptionStatus | None = None, device_id: str | None = None
    ) -> list[ExemptionRecord]:
        clauses, args = [], []
        if status is not None:
            clauses.append("status = ?")
            args.append(status.value)
        if device_id is not None:
            clauses.append("device_id = ?")
            args.append(device_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(
            f"SELECT {_EXEMPTION_COLUMNS} FROM exemptions {where} "  # noqa: S608 (constant column list)
            "ORDER BY created_at_ms DESC, request_id",
            tuple(args),
        )
        return [_exemption(r) for r in rows]

    def decide_exemption(self, decision: Decision, audit: AuditEvent) -> ExemptionRecord:
        def apply(tx: _Tx) -> ExemptionRecord:
            row = tx.conn.execute(
                f"SELECT {_EXEMPTION_COLUMNS} FROM exemptions WHERE request_id = ?",  # noqa: S608 (constant column list)
                (decision.request_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no exemption request {decision.request_id!r}")
            current = _exemption(row)
            if current.status is not ExemptionStatus.PENDING:
                raise AlreadyDecidedError(
                    f"exemption request {decision.request_id} was already {current.status.value}"
                )
            grant = decision.grant
            decided = replace(
                current,
                status=decision.status,
                decided_at_ms=decision.decided_at_ms,
                decided_by=decision.decided_by,
                decision_reason=decision.reason,
                grant_id=None if grant is None else grant.grant_id,
                grant_expires_ms=None if grant is None else grant.expires_ms,
            )
            tx.conn.execute(
                "UPDATE exemptions SET status = ?, decided_at_ms = ?, decided_by = ?, "
                "decision_reason = ?, grant_id = ?, grant_expires_ms = ? WHERE request_id = ?",
                (
                    decided.status.value,
                    decided.decided_at_ms,
                    decided.decided_by,
                    decided.decision_reason,
                    decided.grant_id,
                    decided.grant_expires_ms,
                    decided.request_id,
                ),
            )
            if grant is not None:
                tx.conn.execute(
                    f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608 (constant column list)
                    (
                        grant.grant_id,
                        grant.request_id,
                        grant.device_id,
                        grant.tenant,
                        grant.category,
                        grant.issued_at_ms,
                        grant.expires_ms,
                        grant.envelope,
                    ),
                )
            _insert_audit(tx.conn, audit)
            return decided

        return self._write(apply)

    def grants_for_device(self, device_id: str, now_ms: int) -> list[GrantRecord]:
        rows = self._all(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE device_id = ? AND expires_ms > ? "  # noqa: S608 (constant column list)
            "ORDER BY issued_at_ms, grant_id",
            (device_id, now_ms),
        )
        return [_grant(r) for r in rows]

    # ------------------------------------------------------------------ audit

    def append_audit(self, event: AuditEvent) -> None:
        self._write(lambda tx: _insert_audit(tx.conn, event))

    def list_audit(self, limit: int, before_id: int | None = None) -> list[AuditEvent]:
        if before_id is None:
            rows = self._all(
                "SELECT event_id, at_ms, actor, action, subject, detail FROM audit "
                "ORDER BY event_id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._all(
                "SELECT event_id, at_ms, actor, action, subject, detail FROM audit "
                "WHERE event_id < ? ORDER BY event_id DESC LIMIT ?",
                (before_id, limit),
            )
        return [
            AuditEvent(
                at_ms=at_ms,
                actor=actor,
                action=action,
                subject=subject,
                detail=json.loads(detail),
                event_id=event_id,
            )
            for event_id, at_ms, actor, action, subject, detail in rows
        ]

    # ------------------------------------------------------------ diagnostics

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when sound)."""
        row = self._one("PRAGMA integrity_check", ())
        return "" if row is None else str(row[0])


_BATCH_INSERT_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?)"
#: Rows per multi-row statement (12 parameters each, well under SQLite's limit).
_ROWS_PER_STATEMENT = 500


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _put_batches(tx: _Tx, batches: list[BatchWrite]) -> list[BatchOutcome]:
    """Store batches together; an outcome per batch, in order (see ``Storage.submit_batch``)."""
    conn = tx.conn
    known: dict[tuple[str, int], bytes] = {}
    keys = list(dict.fromkeys((b.device_id, b.seq) for b in batches))
    for key_chunk in _chunks(keys, _ROWS_PER_STATEMENT):
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
            [_audit_row(event) for event in conflicts],
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
    for chunk in _chunks(rows, _ROWS_PER_STATEMENT):
        conn.execute(
            "INSERT INTO batches (device_id, seq, batch_id, header, start_ms, end_ms, "  # noqa: S608 (placeholders only)
            "policy_version, size, sha256, received_at_ms, segment_id, segment_offset) VALUES "
            + ",".join([_BATCH_INSERT_ROW] * len(chunk)),
            [v for row in chunk for v in row],
        )
    return outcomes


def _insert_nonces(conn: sqlite3.Connection, nonces: list[tuple[str, str, int]]) -> None:
    for chunk in _chunks(nonces, _ROWS_PER_STATEMENT):
        conn.execute(
            "INSERT OR REPLACE INTO nonces (device_id, nonce, expires_ms) VALUES "  # noqa: S608 (placeholders only)
            + ",".join(["(?,?,?)"] * len(chunk)),
            [v for row in chunk for v in row],
        )
