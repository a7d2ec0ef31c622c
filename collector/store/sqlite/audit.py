"""The audit log in SQLite: appending events, listing them newest first.

``insert_audit`` is what every other aggregate calls inside its own write, so
that an event is committed in the same transaction as the change it records.
"""

from __future__ import annotations

import json
import sqlite3

from collector.store.records import AuditEvent
from collector.store.sqlite.engine import SQLiteEngine


def audit_row(event: AuditEvent) -> tuple[int, str, str, str, str]:
    detail = json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":"))
    return (event.at_ms, event.actor, event.action, event.subject, detail)


def insert_audit(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(
        "INSERT INTO audit (at_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        audit_row(event),
    )


class SQLiteAuditLog(SQLiteEngine):
    """:class:`collector.store.protocols.AuditLog` on the shared engine."""

    def append_audit(self, event: AuditEvent) -> None:
        self._write(lambda tx: insert_audit(tx.conn, event))

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
