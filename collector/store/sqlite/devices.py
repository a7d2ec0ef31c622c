"""Enrollment tokens and devices in SQLite.

Enrolling uses the token and registers the device in one write, so a token
is spent exactly when a device exists for it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from collector.errors import DeviceExistsError, EnrollmentTokenError
from collector.store.records import AuditEvent, DeviceRecord, EnrollmentTokenRecord
from collector.store.sqlite.audit import insert_audit
from collector.store.sqlite.engine import SQLiteEngine, Tx

_DEVICE_COLUMNS = (
    "device_id, public_key, tenant, grp, hostname, enrolled_at_ms, revoked_at_ms, "
    "last_seen_ms, bytes, batches, policy_version"
)
_TOKEN_COLUMNS = (
    "token_id, token_hash, tenant, grp, created_at_ms, expires_at_ms, created_by, "  # noqa: S105
    "used_at_ms, device_id"
)


def _device(row: tuple[Any, ...]) -> DeviceRecord:
    return DeviceRecord(*row)


def _token(row: tuple[Any, ...]) -> EnrollmentTokenRecord:
    return EnrollmentTokenRecord(*row)


class SQLiteDevices(SQLiteEngine):
    """:class:`collector.store.protocols.DeviceStore` on the shared engine."""

    def add_enrollment_token(self, token: EnrollmentTokenRecord, audit: AuditEvent) -> None:
        def apply(tx: Tx) -> None:
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
            insert_audit(tx.conn, audit)

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
        def apply(tx: Tx) -> DeviceRecord:
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
            insert_audit(tx.conn, replace(audit, detail=detail))
            return device

        return self._write(apply)

    def get_device(self, device_id: str) -> DeviceRecord | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,))  # noqa: S608 (constant column list)
        return None if row is None else _device(row)

    def list_devices(self) -> list[DeviceRecord]:
        rows = self._all(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")  # noqa: S608 (constant column list)
        return [_device(r) for r in rows]

    def revoke_device(self, device_id: str, now_ms: int, audit: AuditEvent) -> bool:
        def apply(tx: Tx) -> bool:
            cursor = tx.conn.execute(
                "UPDATE devices SET revoked_at_ms = ? "
                "WHERE device_id = ? AND revoked_at_ms IS NULL",
                (now_ms, device_id),
            )
            if cursor.rowcount != 1:
                return False
            insert_audit(tx.conn, audit)
            return True

        return self._write(apply)

    # ----------------------------------------------------- admin credentials
