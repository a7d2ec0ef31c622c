"""Signed policies in SQLite: the newest per tenant and overlapping device groups."""

from __future__ import annotations

import json
from typing import Any

from collector.errors import PolicyVersionError
from collector.store.records import AuditEvent, PolicyPutOutcome, PolicyRecord
from collector.store.sqlite.audit import insert_audit
from collector.store.sqlite.engine import SQLiteEngine, Tx

_POLICY_COLUMNS = "tenant, version, groups, envelope, sha256, expires_ms, stored_at_ms"


def _groups_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return "*" in a or "*" in b or bool(set(a) & set(b))


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


class SQLitePolicies(SQLiteEngine):
    """:class:`collector.store.protocols.PolicyStore` on the shared engine."""

    def put_policy(self, policy: PolicyRecord, audit: AuditEvent) -> PolicyPutOutcome:
        def apply(tx: Tx) -> PolicyPutOutcome:
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
            insert_audit(tx.conn, audit)
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
