"""The embedded store's engine: files, schema, the group-commit writer, readers.

Every SQLite aggregate (:mod:`collector.store.sqlite`) is a subclass of
:class:`SQLiteEngine` and writes only through :meth:`SQLiteEngine._write`
(a function of the group's transaction) or, for batches, the writer's own
batch runs; it reads through :meth:`SQLiteEngine._one` and
:meth:`SQLiteEngine._all`. This module owns what they share, and so the
crash guarantees below.

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
import heapq
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

from collector.blobs import BlobSegments
from collector.config import StorageConfig
from collector.errors import CollectorError, CorruptStoreError, StorageError, StoreLockedError
from collector.store.records import BatchOutcome, BatchWrite
from collector.store.sqlite.schema import connect, init_schema

logger = logging.getLogger(__name__)

DB_FILE = "collector.db"
BLOB_DIR = ("blobs", "v1")
LOCK_FILE = ".lock"

#: An idle writer persists claimed nonces at least this often.
NONCE_FLUSH_SECONDS = 0.5
#: Rows per multi-row statement (12 parameters each, well under SQLite's limit).
ROWS_PER_STATEMENT = 500

T = TypeVar("T")


@dataclass
class Tx:
    """What a write sees inside the writer's group transaction."""

    conn: sqlite3.Connection
    blobs: BlobSegments | None
    #: Blob ranges to zero once the group has committed (erasure).
    to_zero: list[tuple[int, int, int]] = field(default_factory=list)
    #: Set when a write failed outside a savepoint: the group must not commit.
    failed: BaseException | None = None


@dataclass
class Job(Generic[T]):
    apply: Callable[[Tx], T] | None
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


def wrap_error(exc: BaseException) -> CollectorError:
    if isinstance(exc, CollectorError):
        return exc
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
        return CorruptStoreError(f"the metadata database is corrupt: {exc}")
    if isinstance(exc, OSError):
        return StorageError(f"storage I/O failed: {exc.strerror or exc}")
    return StorageError(f"storage failed: {type(exc).__name__}: {exc}")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteEngine:
    """The shared engine under every SQLite aggregate: files, writer, readers (module doc)."""

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
            self._writer_conn = connect(self._db_path)
            init_schema(self._writer_conn, self._db_path)
        except sqlite3.Error as exc:
            self._release_lock()
            raise wrap_error(exc) from exc
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
            raise wrap_error(exc) from exc
        self._queue: queue.SimpleQueue[Job[Any] | object] = queue.SimpleQueue()
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------- the writer

    def _submit(self, apply: Callable[[Tx], T], *, erases: bool = False) -> Future[T]:
        return self._enqueue(Job(apply, Future(), erases))

    def _enqueue(self, job: Job[T]) -> Future[T]:
        with self._submit_lock:
            if not self._closed:
                self._queue.put(job)
                return job.future
        job.future.set_exception(StorageError("the store is closed"))
        return job.future

    def _write(self, apply: Callable[[Tx], T], *, erases: bool = False) -> T:
        return self._submit(apply, erases=erases).result()

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs: list[Job[Any]] = []
            try:
                item = self._queue.get(timeout=NONCE_FLUSH_SECONDS)
            except queue.Empty:
                item = _FLUSH
            while True:
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, Job):
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
                        job.future.set_exception(wrap_error(exc))
        # Writes queued after close() began are refused, never left waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(StorageError("the store is closed"))

    def _run_group(self, jobs: list[Job[Any]]) -> None:
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
        tx = Tx(conn, blobs)
        results: list[tuple[Job[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in jobs:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(wrap_error(exc))
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
            error = wrap_error(exc)
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
                zero_error = wrap_error(exc)
        for job, result, failure in results:
            if failure is not None:
                job.future.set_exception(wrap_error(failure))
            elif job.erases and zero_error is not None:
                job.future.set_exception(zero_error)
            else:
                job.future.set_result(result)

    def _apply_batches(
        self, tx: Tx, run: list[Job[Any]], *, alone: bool
    ) -> list[tuple[Job[Any], Any, BaseException | None]]:
        batches = [job.batch for job in run if job.batch is not None]
        if alone:
            # Nothing else in this transaction to protect: a failure fails the
            # whole group (the transaction is rolled back), and two statements
            # are saved.
            try:
                outcomes = self._put_batches(tx, batches)
            except Exception as exc:
                tx.failed = exc
                return [(job, None, exc) for job in run]
            return [(job, outcome, None) for job, outcome in zip(run, outcomes, strict=True)]
        tx.conn.execute("SAVEPOINT batches")
        try:
            outcomes = self._put_batches(tx, batches)
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
                conn = connect(self._db_path)
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                raise wrap_error(exc) from exc
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise wrap_error(exc) from exc
        finally:
            self._readers.put(conn)

    def _one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._reader() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as conn:
            return conn.execute(sql, args).fetchall()

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when sound)."""
        row = self._one("PRAGMA integrity_check", ())
        return "" if row is None else str(row[0])

    # ------------------------------------------------------------ the batches hook

    def _put_batches(self, tx: Tx, batches: list[BatchWrite]) -> list[BatchOutcome]:
        """Store consecutive batch writes together (the batches aggregate says how)."""
        raise NotImplementedError


def _insert_nonces(conn: sqlite3.Connection, nonces: list[tuple[str, str, int]]) -> None:
    for chunk in chunks(nonces, ROWS_PER_STATEMENT):
        conn.execute(
            "INSERT OR REPLACE INTO nonces (device_id, nonce, expires_ms) VALUES "  # noqa: S608 (placeholders only)
            + ",".join(["(?,?,?)"] * len(chunk)),
            [v for row in chunk for v in row],
        )
