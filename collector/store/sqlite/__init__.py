"""The embedded store: every aggregate's SQLite code over one shared engine.

:class:`SQLiteStorage` is the whole :class:`collector.store.protocols.Storage`
for one data directory. Its parts are one class per aggregate (devices,
admins, nonces, batches, policies, exemptions, audit), each written against
:class:`~collector.store.sqlite.engine.SQLiteEngine` — the connection, the
schema, the group-commit writer and the readers they share, and whose
docstring states the layout on disk and what survives a crash. The parts
share one engine, not one each, because an aggregate's change and its audit
event commit in one transaction.
"""

from __future__ import annotations

from collector.store.sqlite.admins import SQLiteAdmins
from collector.store.sqlite.audit import SQLiteAuditLog
from collector.store.sqlite.batches import SQLiteBatches
from collector.store.sqlite.devices import SQLiteDevices
from collector.store.sqlite.engine import BLOB_DIR, DB_FILE, LOCK_FILE
from collector.store.sqlite.exemptions import SQLiteExemptions
from collector.store.sqlite.nonces import SQLiteNonces
from collector.store.sqlite.policies import SQLitePolicies

__all__ = ["BLOB_DIR", "DB_FILE", "LOCK_FILE", "SQLiteStorage"]


class SQLiteStorage(
    SQLiteDevices,
    SQLiteAdmins,
    SQLiteNonces,
    SQLiteBatches,
    SQLitePolicies,
    SQLiteExemptions,
    SQLiteAuditLog,
):
    """:class:`collector.store.protocols.Storage` on SQLite and blob segments."""
