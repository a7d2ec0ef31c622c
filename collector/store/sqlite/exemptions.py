"""Exemption requests, decisions and grants in SQLite.

A decision and the grant it approves are one write: a request is never
approved without its grant stored, nor a grant stored for a denied request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from collector.errors import AlreadyDecidedError, NotFoundError
from collector.store.records import (
    AuditEvent,
    ExemptionDecision,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
)
from collector.store.sqlite.audit import insert_audit
from collector.store.sqlite.engine import SQLiteEngine, Tx

_EXEMPTION_COLUMNS = (
    "request_id, device_id, tenant, grp, category, reason, duration_days, created_at_ms, "
    "status, decided_at_ms, decided_by, decision_reason, grant_id, grant_expires_ms"
)
_GRANT_COLUMNS = (
    "grant_id, request_id, device_id, tenant, category, issued_at_ms, expires_ms, envelope"
)


def _exemption(row: tuple[Any, ...]) -> ExemptionRecord:
    values = list(row)
    values[8] = ExemptionStatus(values[8])
    return ExemptionRecord(*values)


def _grant(row: tuple[Any, ...]) -> GrantRecord:
    values = list(row)
    values[7] = bytes(values[7])
    return GrantRecord(*values)


class SQLiteExemptions(SQLiteEngine):
    """:class:`collector.store.protocols.ExemptionStore` on the shared engine."""

    def add_exemption(self, request: ExemptionRecord, audit: AuditEvent) -> None:
        def apply(tx: Tx) -> None:
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
            insert_audit(tx.conn, audit)

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

    def decide_exemption(self, decision: ExemptionDecision, audit: AuditEvent) -> ExemptionRecord:
        def apply(tx: Tx) -> ExemptionRecord:
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
            insert_audit(tx.conn, audit)
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
