"""The records the collector's stores speak in: plain frozen values, no I/O.

Every store protocol (:mod:`collector.store.protocols`) takes and returns
these, so the service, the routes and the export share one definition of a
device, a batch, a policy, an exemption and an audit event whatever backend
keeps them. Times are integer milliseconds since the Unix epoch (UTC);
secrets are only ever held hashed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
class ExemptionDecision:
    """An admin's answer to a pending request; approvals carry their grant."""

    request_id: str
    status: ExemptionStatus
    decided_at_ms: int
    decided_by: str
    reason: str
    grant: GrantRecord | None = None
