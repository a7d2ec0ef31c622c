"""The spool's SQLite connection: opening, pragmas, transactions, error wrapping.

Private to ``agent.sinks``: ``spool`` and ``ledger`` share one
:class:`Database` (one file, one connection). The connection is used from
several threads (the agent's pipeline thread puts, the uploader thread reads
and acknowledges, the control thread discards and reads the ledger), so every
use goes through :meth:`Database.write` or :meth:`Database.read`, which hold
one lock for the whole statement or transaction. SQLite serialises writers
anyway; the lock only makes the sharing of one connection safe.

Every ``sqlite3`` exception is turned into a :class:`~agent.sinks.base.SpoolError`
here: ``SQLITE_FULL`` (and ``SQLITE_IOERR_SHMSIZE``, the WAL index finding no
room to grow) becomes ``SpoolFullError(reason="disk")``; corruption and "not
a database" say so and name the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .base import SpoolError, SpoolFullError

log = logging.getLogger(__name__)

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
#: The shared-memory file (``-shm``) of the WAL could not grow: no space for it.
_SQLITE_IOERR_SHMSIZE = 4874


def wrap_error(exc: sqlite3.Error, doing: str, path: Path) -> SpoolError:
    """The ``SpoolError`` that says what went wrong with the spool at ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE:
        return SpoolFullError(
            f"the disk holding the spool {path} is full; could not {doing}", reason="disk"
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return SpoolError(f"the spool {path} is corrupt ({exc}); could not {doing}")
    return SpoolError(f"could not {doing} in the spool {path}: {exc}")


class Database:
    """One SQLite connection in WAL mode with ``synchronous=FULL``, behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            # Owner-only at every level Overt creates (spool/ and spool/v1/).
            path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            # Create the file owner-only before SQLite does: it gives the -wal
            # and -shm files the database file's permissions.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool {path}: {exc.strerror or exc}") from exc
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise wrap_error(exc, "open the database", path) from exc
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SpoolError(f"the spool {path} cannot use WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            # Keep the WAL from staying large after a burst, once checkpointed.
            self._conn.execute("PRAGMA journal_size_limit=16777216")
        except sqlite3.Error as exc:
            self._conn.close()
            raise wrap_error(exc, "open the database", path) from exc
        except SpoolError:
            self._conn.close()
            raise

    @contextlib.contextmanager
    def write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed at the end of the
        block and rolled back if the block raises; sqlite errors become ``SpoolError``."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise wrap_error(exc, doing, self.path) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise wrap_error(exc, doing, self.path) from exc
                raise

    @contextlib.contextmanager
    def read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection for reads, under the lock; sqlite errors become ``SpoolError``."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise wrap_error(exc, doing, self.path) from exc

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            # SQLite rolls back by itself when it must (e.g. after SQLITE_FULL
            # on some statements); nothing was committed either way.
            log.warning("rollback of a failed spool transaction reported an error")

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise wrap_error(exc, "close the database", self.path) from exc
