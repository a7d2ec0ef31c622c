"""The SQLite schema of the embedded store, and how a connection is opened.

One script creates every table and trigger if missing; ``meta`` holds the
schema version, and a database of another version is refused rather than
read. The triggers keep what every stored or erased batch changes elsewhere
(a device's counters, a segment's committed length) in the same statement
as the row, so no aggregate's code has to remember them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from collector.errors import CorruptStoreError, StorageError

SCHEMA_VERSION = 1

SCHEMA = """
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


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def schema_statements(script: str) -> Iterator[str]:
    """The statements of an SQL script (triggers hold semicolons of their own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def init_schema(conn: sqlite3.Connection, db_path: str) -> None:
    """Switch to WAL, create what is missing and check the schema version."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"SQLite refused WAL mode (got {mode})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in schema_statements(SCHEMA):
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise CorruptStoreError(
                f"{db_path} has schema version {row[0]}; this collector reads "
                f"version {SCHEMA_VERSION}"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
