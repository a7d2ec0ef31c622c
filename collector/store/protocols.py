"""What a collector store must do: one narrow Protocol per aggregate.

The service and the routes depend on the protocols they use — enrollment on
:class:`DeviceStore`, ingest on :class:`BatchStore` and :class:`NonceStore`,
the exemption flow on :class:`ExemptionStore` and :class:`PolicyStore` —
never on one backend. :class:`Storage` is all of them plus ``close``: what the
server opens at start and closes at exit. The embedded backend is
:class:`collector.store.sqlite.SQLiteStorage`; another backend (PostgreSQL
for metadata, an S3-compatible bucket for sealed bytes) is a matter of new
classes implementing these protocols, and ``tests/collector/test_storage.py``
is written against them so that it can run against that backend too.

What every implementation must guarantee:

- **Durability.** A method returns (a future resolves) only after its effect
  is durable: a crash afterwards loses nothing it reported as done.
- **Atomicity.** Each mutating method is one transaction. The ``audit`` event
  a method takes is written in the same transaction as the change it records,
  whichever aggregate the change belongs to; so every backend keeps its
  aggregates and the audit log in one transactional store.
- **Idempotent batches.** (device_id, seq) identifies a batch. Storing the
  same bytes again reports :attr:`BatchOutcome.DUPLICATE` and keeps one copy;
  other bytes report :attr:`BatchOutcome.CONFLICT`, change nothing, and record
  the write's ``conflict_audit`` event.
- **Erasure.** :meth:`BatchStore.erase_batches` removes the rows *and* the
  sealed bytes; once it returns, the ciphertext is gone from the blob store.
- **Reads for export.** :meth:`BatchStore.iter_batches` yields batches in
  (device_id, seq) order, checking each batch's SHA-256 as it is read, and
  does not hold a transaction open across the whole iteration.

Secrets (tokens, passwords) are only ever stored hashed; the hashing is the
caller's (:mod:`collector.credentials`). Errors are
:class:`~collector.errors.StorageError` for I/O, or the specific conflicts
each method names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Protocol

from collector.store.records import (
    AdminTokenRecord,
    AdminUserRecord,
    AuditEvent,
    BatchOutcome,
    BatchWrite,
    DeviceRecord,
    EnrollmentTokenRecord,
    ExemptionDecision,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
    PolicyPutOutcome,
    PolicyRecord,
    StoredBatch,
)


class DeviceStore(Protocol):
    """Enrollment tokens and the devices they enrolled."""

    def add_enrollment_token(self, token: EnrollmentTokenRecord, audit: AuditEvent) -> None: ...

    def list_enrollment_tokens(self) -> list[EnrollmentTokenRecord]:
        """Every token, newest first."""
        ...

    def enroll_device(
        self,
        token_hash: bytes,
        device_id: str,
        public_key: str,
        hostname: str,
        now_ms: int,
        audit: AuditEvent,
    ) -> DeviceRecord:
        """Use the token and register the device, in one transaction.

        The device takes the token's tenant and group; ``audit.detail`` is
        stored with ``token_id``, ``tenant`` and ``group`` added. Raises
        :class:`~collector.errors.EnrollmentTokenError` (unknown, used or
        expired token; checked first) or
        :class:`~collector.errors.DeviceExistsError` (the token stays unused).
        """
        ...

    def get_device(self, device_id: str) -> DeviceRecord | None: ...

    def list_devices(self) -> list[DeviceRecord]:
        """Every device, by device id."""
        ...

    def revoke_device(self, device_id: str, now_ms: int, audit: AuditEvent) -> bool:
        """Mark a device revoked; ``False`` if unknown or already revoked."""
        ...


class AdminStore(Protocol):
    """The admins' credentials: API bearer tokens and web sign-in passwords."""

    def add_admin_token(self, token: AdminTokenRecord, audit: AuditEvent) -> None: ...

    def find_admin_token(self, token_hash: bytes) -> AdminTokenRecord | None:
        """The unrevoked token with this hash, if any."""
        ...

    def set_admin_user(self, user: AdminUserRecord, audit: AuditEvent) -> None:
        """Create the user or replace its password hash (keeping ``created_at_ms``)."""
        ...

    def get_admin_user(self, name: str) -> AdminUserRecord | None: ...


class NonceStore(Protocol):
    """Replay protection for signed device requests."""

    def claim_nonce(self, device_id: str, nonce: str, expires_ms: int, now_ms: int) -> bool:
        """``True`` the first time (device, nonce) is seen before ``expires_ms``.

        Remembered at least until ``expires_ms``; forgotten some time after.
        A batch upload's nonce is durable before the batch is.
        """
        ...


class BatchStore(Protocol):
    """Sealed batches: idempotent writes, checked reads, erasure."""

    def submit_batch(self, batch: BatchWrite) -> Future[BatchOutcome]:
        """Queue a batch for storing; the future resolves once the outcome is durable.

        Never blocks on I/O, so an event loop may call it and await the future.
        """
        ...

    def put_batch(self, batch: BatchWrite) -> BatchOutcome:
        """:meth:`submit_batch` and wait."""
        ...

    def get_batch(self, device_id: str, seq: int) -> StoredBatch | None: ...

    def iter_batches(
        self,
        device_id: str | None = None,
        on_corrupt: Callable[[str, int, str, str], None] | None = None,
    ) -> Iterator[StoredBatch]:
        """Stored batches in (device_id, seq) order, optionally of one device.

        A batch whose bytes no longer match their SHA-256 raises
        :class:`~collector.errors.CorruptStoreError`, unless ``on_corrupt`` is
        given: then it is called with (device id, seq, batch id, reason) and
        the iteration goes on with the next batch.
        """
        ...

    def count_batches(self, device_id: str | None = None) -> int: ...

    def erase_batches(self, device_id: str, start_ms: int, end_ms: int, audit: AuditEvent) -> int:
        """Delete the device's batches whose time range overlaps [start_ms, end_ms].

        Returns how many were deleted; ``audit.detail`` is stored with
        ``deleted`` added. Rows and sealed bytes are both gone on return.
        """
        ...


class PolicyStore(Protocol):
    """Signed policies, newest per tenant and device group."""

    def put_policy(self, policy: PolicyRecord, audit: AuditEvent) -> PolicyPutOutcome:
        """Store a policy unless it would not be the newest for its scope.

        The identical envelope again is :attr:`PolicyPutOutcome.UNCHANGED`.
        Raises :class:`~collector.errors.PolicyVersionError` when a stored
        policy of the same tenant whose groups overlap (``"*"`` overlaps
        everything) has the same or a higher version.
        """
        ...

    def latest_policy(self, tenant: str, group: str) -> PolicyRecord | None:
        """The highest-version policy of ``tenant`` whose groups cover ``group``."""
        ...

    def list_policies(self) -> list[PolicyRecord]:
        """Every stored policy, by tenant then version."""
        ...


class ExemptionStore(Protocol):
    """Employees' exemption requests, the admins' decisions, the grants approved."""

    def add_exemption(self, request: ExemptionRecord, audit: AuditEvent) -> None: ...

    def get_exemption(self, request_id: str) -> ExemptionRecord | None: ...

    def list_exemptions(
        self, *, status: ExemptionStatus | None = None, device_id: str | None = None
    ) -> list[ExemptionRecord]:
        """Requests, newest first, optionally filtered."""
        ...

    def decide_exemption(self, decision: ExemptionDecision, audit: AuditEvent) -> ExemptionRecord:
        """Approve or deny a pending request (storing its grant), in one transaction.

        Raises :class:`~collector.errors.NotFoundError` or
        :class:`~collector.errors.AlreadyDecidedError`.
        """
        ...

    def grants_for_device(self, device_id: str, now_ms: int) -> list[GrantRecord]:
        """The device's grants that have not expired at ``now_ms``, oldest first."""
        ...


class AuditLog(Protocol):
    """The audit log on its own: events with no other change (consent answers)."""

    def append_audit(self, event: AuditEvent) -> None: ...

    def list_audit(self, limit: int, before_id: int | None = None) -> list[AuditEvent]:
        """The latest ``limit`` events (before ``before_id``), newest first."""
        ...


class Storage(
    DeviceStore,
    AdminStore,
    NonceStore,
    BatchStore,
    PolicyStore,
    ExemptionStore,
    AuditLog,
    Protocol,
):
    """A whole store: every aggregate, and the lifecycle the server drives."""

    def close(self) -> None:
        """Finish queued writes and release files. Idempotent."""
        ...
