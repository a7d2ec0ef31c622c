"""The local ledger: every batch the spool ever took, and what became of it.

This module owns the ``ledger`` table (in the spool's database file, so a
batch's spool row and its ledger entry change in one transaction) and the
queries the tray and the uploader ask of it. It records only a batch's
plaintext header fields — sequence number, batch id, time range, app ids,
counts per signal — plus its sealed size, state, upload time and the
collector it went to; never captured content.

States (``LedgerState``): a spooled batch is ``held`` until its
``hold_until_ms`` (the policy's review window), then ``ready``; afterwards it
is ``uploaded`` (acknowledged by the collector), ``discarded`` (the employee
discarded it before upload), ``dead`` (the collector refused it for good; the
sealed bytes stay in the spool's dead-letter table) or ``quarantined`` (its
stored bytes failed the integrity check; they stay in the quarantine table).

Retention: an entry is kept for ``LEDGER_RETENTION_DAYS`` (30) after both its
capture time and its last change; entries of batches still in the spool are
never pruned, nor is the entry with the highest sequence number (it is how
the spool knows the highest number it has seen, ``Spool.last_seq``). Days
are local days (the ``tz`` given to the spool, else the system's local time
zone), since the daily upload budget and the tray's chart count per local
day.

Public API (thread-safe; every call takes the spool's database lock):

- ``Ledger.recent(days, now_ms, limit=None)`` -> ``list[LedgerEntry]``, newest first
- ``Ledger.uploaded_per_day(days, now_ms)`` -> ``list[DailyUpload]``, oldest day first
- ``Ledger.uploaded_today(now_ms)`` -> bytes acknowledged since local midnight
- ``Ledger.report(days, now_ms, daily_budget, limit=None)`` -> the control API's
  ``ledger`` result (docs/CONTROL.md)

Get a ``Ledger`` from ``Spool.ledger``. Errors are ``agent.sinks.base.SpoolError``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from ._sqlite import Database

LEDGER_RETENTION_DAYS = 30
DAY_MS = 86_400_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    batch_id       TEXT PRIMARY KEY,
    seq            INTEGER NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    app_ids        TEXT NOT NULL,
    counts         TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    state          TEXT NOT NULL
        CHECK (state IN ('spooled', 'uploaded', 'discarded', 'dead', 'quarantined')),
    spooled_at_ms  INTEGER NOT NULL,
    hold_until_ms  INTEGER NOT NULL,
    changed_at_ms  INTEGER NOT NULL,
    uploaded_at_ms INTEGER,
    destination    TEXT
);
CREATE INDEX IF NOT EXISTS ledger_seq ON ledger (seq);
CREATE INDEX IF NOT EXISTS ledger_end ON ledger (end_ms);
CREATE INDEX IF NOT EXISTS ledger_changed ON ledger (changed_at_ms);
CREATE INDEX IF NOT EXISTS ledger_uploaded ON ledger (uploaded_at_ms, bytes)
    WHERE uploaded_at_ms IS NOT NULL;
"""


class LedgerState(StrEnum):
    HELD = "held"
    READY = "ready"
    UPLOADED = "uploaded"
    DISCARDED = "discarded"
    DEAD = "dead"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One batch as the tray shows it."""

    seq: int
    batch_id: str
    start_ms: int
    end_ms: int
    apps: tuple[str, ...]
    counts: dict[str, int]
    bytes: int
    state: LedgerState
    uploaded_at_ms: int | None
    destination: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "batch_id": self.batch_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "apps": list(self.apps),
            "counts": dict(self.counts),
            "bytes": self.bytes,
            "state": self.state.value,
            "uploaded_at_ms": self.uploaded_at_ms,
            "destination": self.destination,
        }


@dataclass(frozen=True, slots=True)
class DailyUpload:
    """Bytes acknowledged by the collector on one local day."""

    day: date
    bytes_uploaded: int


# ------------------------------------------------------------ local days


def local_day(ms: int, tz: tzinfo | None) -> date:
    """The local date of an epoch-millisecond instant (``tz`` None: the system's)."""
    if tz is None:
        return datetime.fromtimestamp(ms / 1000).date()
    return datetime.fromtimestamp(ms / 1000, tz).date()


def day_start_ms(day: date, tz: tzinfo | None) -> int:
    """Epoch milliseconds of local midnight starting ``day``."""
    midnight = datetime.combine(day, time())
    if tz is not None:
        midnight = midnight.replace(tzinfo=tz)
    return int(midnight.timestamp() * 1000)


# ------------------------------------------- writes, inside a spool transaction


def record_spooled(
    conn: sqlite3.Connection,
    header: dict[str, Any],
    size: int,
    now_ms: int,
    hold_until_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO ledger (batch_id, seq, start_ms, end_ms, app_ids, counts, bytes, state,"
        " spooled_at_ms, hold_until_ms, changed_at_ms) VALUES (?,?,?,?,?,?,?,'spooled',?,?,?)",
        (
            header["batch_id"],
            header["seq"],
            header["start_ms"],
            header["end_ms"],
            json.dumps(header["app_ids"]),
            json.dumps(header["counts"], sort_keys=True),
            size,
            now_ms,
            hold_until_ms,
            now_ms,
        ),
    )


def set_state(
    conn: sqlite3.Connection,
    batch_id: str,
    state: LedgerState,
    now_ms: int,
    *,
    destination: str | None = None,
) -> None:
    """Move an entry to ``uploaded``, ``discarded``, ``dead`` or ``quarantined``."""
    if state is LedgerState.UPLOADED:
        conn.execute(
            "UPDATE ledger SET state = 'uploaded', changed_at_ms = ?, uploaded_at_ms = ?,"
            " destination = ? WHERE batch_id = ?",
            (now_ms, now_ms, destination, batch_id),
        )
    else:
        conn.execute(
            "UPDATE ledger SET state = ?, changed_at_ms = ? WHERE batch_id = ?",
            (state.value, now_ms, batch_id),
        )


def prune(conn: sqlite3.Connection, now_ms: int) -> int:
    """Delete entries past retention (never those still in the spool, nor the newest)."""
    cutoff = now_ms - LEDGER_RETENTION_DAYS * DAY_MS
    cursor = conn.execute(
        "DELETE FROM ledger WHERE state != 'spooled' AND changed_at_ms < ? AND end_ms < ?"
        " AND seq < (SELECT MAX(seq) FROM ledger)",
        (cutoff, cutoff),
    )
    return cursor.rowcount


# ------------------------------------------------------------------- queries


class Ledger:
    """Read access to the ledger of one spool (see the module docstring)."""

    def __init__(self, db: Database, tz: tzinfo | None) -> None:
        self._db = db
        self._tz = tz

    def recent(self, days: int, now_ms: int, limit: int | None = None) -> list[LedgerEntry]:
        """Entries captured or changed in the last ``days`` days, and every batch
        still in the spool, newest (highest sequence number) first."""
        if days < 0:
            raise ValueError("days must not be negative")
        cutoff = now_ms - days * DAY_MS
        sql = (
            "SELECT seq, batch_id, start_ms, end_ms, app_ids, counts, bytes, state,"
            " hold_until_ms, uploaded_at_ms, destination FROM ledger"
            " WHERE end_ms >= ? OR changed_at_ms >= ? OR state = 'spooled' ORDER BY seq DESC"
        )
        params: tuple[int, ...] = (cutoff, cutoff)
        if limit is not None:
            sql += " LIMIT ?"
            params += (max(0, limit),)
        with self._db.read("read the ledger") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_entry(row, now_ms) for row in rows]

    def uploaded_per_day(self, days: int, now_ms: int) -> list[DailyUpload]:
        """Bytes acknowledged per local day for the last ``days`` days (today
        included, zero-filled), oldest first."""
        if days < 1:
            raise ValueError("days must be at least 1")
        today = local_day(now_ms, self._tz)
        first = today - timedelta(days=days - 1)
        since = day_start_ms(first, self._tz)
        with self._db.read("read the ledger") as conn:
            rows = conn.execute(
                "SELECT uploaded_at_ms, bytes FROM ledger"
                " WHERE uploaded_at_ms IS NOT NULL AND uploaded_at_ms >= ?",
                (since,),
            ).fetchall()
        totals = {first + timedelta(days=i): 0 for i in range(days)}
        for uploaded_at_ms, size in rows:
            day = local_day(uploaded_at_ms, self._tz)
            if day in totals:
                totals[day] += size
        return [DailyUpload(day, total) for day, total in totals.items()]

    def uploaded_today(self, now_ms: int) -> int:
        """Bytes acknowledged since local midnight (the daily budget's count)."""
        today = local_day(now_ms, self._tz)
        start = day_start_ms(today, self._tz)
        end = day_start_ms(today + timedelta(days=1), self._tz)
        with self._db.read("read the ledger") as conn:
            (total,) = conn.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM ledger"
                " WHERE uploaded_at_ms IS NOT NULL AND uploaded_at_ms >= ? AND uploaded_at_ms < ?",
                (start, end),
            ).fetchone()
        return int(total)

    def report(
        self, days: int, now_ms: int, daily_budget: int, limit: int | None = None
    ) -> dict[str, Any]:
        """The control API's ``ledger`` result: batches and bytes per day."""
        return {
            "batches": [entry.to_dict() for entry in self.recent(days, now_ms, limit)],
            "daily": [
                {
                    "day": d.day.isoformat(),
                    "bytes_uploaded": d.bytes_uploaded,
                    "budget": daily_budget,
                }
                for d in self.uploaded_per_day(max(days, 1), now_ms)
            ],
        }


def _entry(row: Sequence[Any], now_ms: int) -> LedgerEntry:
    (seq, batch_id, start_ms, end_ms, app_ids, counts, size, state, hold_until_ms, up, dest) = row
    if state == "spooled":
        shown = LedgerState.HELD if now_ms < hold_until_ms else LedgerState.READY
    else:
        shown = LedgerState(state)
    return LedgerEntry(
        seq=seq,
        batch_id=batch_id,
        start_ms=start_ms,
        end_ms=end_ms,
        apps=tuple(json.loads(app_ids)),
        counts=dict(json.loads(counts)),
        bytes=size,
        state=shown,
        uploaded_at_ms=up,
        destination=dest,
    )
