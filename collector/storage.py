"""The collector's storage interface: one Protocol, the records it speaks in.

Everything the collector keeps goes through :class:`Storage`: enrolled
devices and enrollment tokens, admin credentials, replay-protection nonces,
sealed batches, signed policies, exemption requests and the grants they
produced, and the audit log. The embedded implementation is
:class:`collector.sqlite_store.SQLiteStorage` (SQLite for metadata, append-only
segment files for sealed batches); a PostgreSQL + S3-compatible implementation
can follow behind the same Protocol, and ``tests/collector/test_storage.py``
is written against the Protocol so that it can run against it.

What every implementation must guarantee:

- **Durability.** A method returns (a future resolves) only after its effect
  is durable: a crash afterwards loses nothing it reported as done.
- **Atomicity.** Each mutating method is one transaction. The ``audit`` event
  a method takes is written in the same transaction as the change it records.
- **Idempotent batches.** (device_id, seq) identifies a batch. Storing the
  same bytes again reports :attr:`BatchOutcome.DUPLICATE` and keeps one copy;
  other bytes report :attr:`BatchOutcome.CONFLICT`, change nothing, and record
  the write's ``conflict_audit`` event.
- **Erasure.** :meth:`Storage.erase_batches` removes the rows *and* the sealed
  bytes; once it returns, the ciphertext is gone from the blob store.
- **Reads for export.** :meth:`Storage.iter_batches` yields batches in
  (device_id, seq) order, checking each batch's SHA-256 as it is read, and
  does not hold a transaction open across the whole iteration.

Times are integer milliseconds since the Unix epoch (UTC). Secrets (tokens,
passwords) are only ever stored hashed; the hashing is the caller's
(:mod:`collector.credentials`). Errors are :class:`~collector.errors.StorageError`
for I/O, or the specific conflicts each method names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """An enrolled device: its key, where it sits, and what it has sent."""

    device_id: str
    #: The raw 32-byte Ed25519 public key, standard base64.
    public_key: str
    tenant: str
    group: str
    hostname: str
    enrolled_at_ms: int
    revoked_at_ms: int | None = None
    last_seen_ms: int | None = None
    #: Sealed bytes and batches currently stored for this device.
    bytes: int = 0
    batches: int = 0
    #: The policy version named by the device's latest batch.
    policy_version: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


@dataclass(frozen=True, slots=True)
class EnrollmentTokenRecord:
    """A single-use enrollment token. Only its SHA-256 is stored."""

    token_id: str
    token_hash: bytes
    tenant: str
    group: str
    created_at_ms: int
    expires_at_ms: int
    created_by: str
    used_at_ms: int | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdminTokenRecord:
    """An admin API bearer token. Only its SHA-256 is stored."""

    token_id: str
    name: str
    token_hash: bytes
    created_at_ms: int
    revoked_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AdminUserRecord:
    """An admin who signs in to the web pages; ``password_hash`` is a scrypt record."""

    name: str
    password_hash: str
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the audit log: who did what to which subject, and when.

    ``detail`` holds ids, counts, categories and reasons typed by people; it
    never holds captured content (the collector cannot read any).
    """

    at_ms: int
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: Assigned by the store; ``None`` on events not yet written.
    event_id: int | None = None


class BatchOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """A verified sealed batch to store, with the plaintext header fields."""

    device_id: str
    seq: int
    batch_id: str
    #: The header's canonical JSON exactly as signed.
    header: bytes
    start_ms: int
    end_ms: int
    policy_version: int
    #: The whole sealed batch (``overt.wire.sealed`` format 1), as received.
    sealed: bytes
    #: SHA-256 of ``sealed``: what "the same bytes" means for a resend.
    sha256: bytes
    received_at_ms: int
    #: Recorded, in the same transaction, if the write turns out to conflict.
    conflict_audit: AuditEvent | None = None


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A stored batch as export reads it: ids, the plaintext header, the sealed bytes."""

    device_id: str
    seq: int
    batch_id: str
    header_json: bytes
    received_at_ms: int
    sealed: bytes

    @property
    def header(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.header_json)
        return doc


class PolicyPutOutcome(StrEnum):
    STORED = "stored"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A signed policy envelope and the scope and version read from its payload."""

    tenant: str
    version: int
    #: ``scope.device_groups`` of the payload; ``"*"`` covers every group.
    groups: tuple[str, ...]
    envelope: bytes
    #: Hex SHA-256 of ``envelope``, also the HTTP ETag.
    sha256: str
    expires_ms: int
    stored_at_ms: int


class ExemptionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class ExemptionRecord:
    """An employee's exemption request and, once decided, the decision."""

    request_id: str
    device_id: str
    tenant: str
    group: str
    category: str
    reason: str
    duration_days: int
    created_at_ms: int
    status: ExemptionStatus = ExemptionStatus.PENDING
    decided_at_ms: int | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    grant_id: str | None = None
    grant_expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A signed exemption grant (``policies.model.Grant`` in an envelope)."""

    grant_id: str
    request_id: str
    device_id: str
    tenant: str
    category: str
    issued_at_ms: int
    expires_ms: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Decision:
    """An admin's answer to a pending request; approvals carry their grant."""

    request_id: str
    status: ExemptionStatus
    decided_at_ms: int
    decided_by: str
    reason: str
    grant: GrantRecord | None = None


class Storage(Protocol):
    """Where the collector keeps everything. See the module docstring for guarantees."""

    # ------------------------------------------------------------ enrollment

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

    # ----------------------------------------------------- admin credentials

    def add_admin_token(self, token: AdminTokenRecord, audit: AuditEvent) -> None: ...

    def find_admin_token(self, token_hash: bytes) -> AdminTokenRecord | None:
        """The unrevoked token with this hash, if any."""
        ...

    def set_admin_user(self, user: AdminUserRecord, audit: AuditEvent) -> None:
        """Create the user or replace its password hash (keeping ``created_at_ms``)."""
        ...

    def get_admin_user(self, name: str) -> AdminUserRecord | None: ...

    # ------------------------------------------------------ replay protection

    def claim_nonce(self, device_id: str, nonce: str, expires_ms: int, now_ms: int) -> bool:
        """``True`` the first time (device, nonce) is seen before ``expires_ms``.

        Remembered at least until ``expires_ms``; forgotten some time after.
        """
        ...

    # ---------------------------------------------------------------- batches

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

    # --------------------------------------------------------------- policies

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

    # ------------------------------------------------- exemptions and grants

    def add_exemption(self, request: ExemptionRecord, audit: AuditEvent) -> None: ...

    def get_exemption(self, request_id: str) -> ExemptionRecord | None: ...

    def list_exemptions(
        self, *, status: ExemptionStatus | None = None, device_id: str | None = None
    ) -> list[ExemptionRecord]:
        """Requests, newest first, optionally filtered."""
        ...

    def decide_exemption(self, decision: Decision, audit: AuditEvent) -> ExemptionRecord:
        """Approve or deny a pending request (storing its grant), in one transaction.

        Raises :class:`~collector.errors.NotFoundError` or
        :class:`~collector.errors.AlreadyDecidedError`.
        """
        ...

    def grants_for_device(self, device_id: str, now_ms: int) -> list[GrantRecord]:
        """The device's grants that have not expired at ``now_ms``, oldest first."""
        ...

    # ------------------------------------------------------------------ audit

    def append_audit(self, event: AuditEvent) -> None: ...

    def list_audit(self, limit: int, before_id: int | None = None) -> list[AuditEvent]:
        """The latest ``limit`` events (before ``before_id``), newest first."""
        ...

    # -------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Finish queued writes and release files. Idempotent."""
        ...
