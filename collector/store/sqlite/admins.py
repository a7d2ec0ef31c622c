"""Admin credentials in SQLite: API bearer tokens and web sign-in passwords.

Only hashes are stored: a token's SHA-256, a password's scrypt record.
"""

from __future__ import annotations

from collector.store.records import AdminTokenRecord, AdminUserRecord, AuditEvent
from collector.store.sqlite.audit import insert_audit
from collector.store.sqlite.engine import SQLiteEngine, Tx


class SQLiteAdmins(SQLiteEngine):
    """:class:`collector.store.protocols.AdminStore` on the shared engine."""

    def add_admin_token(self, token: AdminTokenRecord, audit: AuditEvent) -> None:
        def apply(tx: Tx) -> None:
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
            insert_audit(tx.conn, audit)

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
        def apply(tx: Tx) -> None:
            tx.conn.execute(
                "INSERT INTO admin_users (name, password_hash, created_at_ms, updated_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "password_hash = excluded.password_hash, updated_at_ms = excluded.updated_at_ms",
                (user.name, user.password_hash, user.created_at_ms, user.updated_at_ms),
            )
            insert_audit(tx.conn, audit)

        self._write(apply)

    def get_admin_user(self, name: str) -> AdminUserRecord | None:
        row = self._one(
            "SELECT name, password_hash, created_at_ms, updated_at_ms FROM admin_users "
            "WHERE name = ?",
            (name,),
        )
        return None if row is None else AdminUserRecord(*row)

    # ------------------------------------------------------ replay protection
