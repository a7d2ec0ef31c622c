"""The JSON shapes of the collector's HTTP API (``docs/PROTOCOL.md``), as pydantic models.

Request models are strict and forbid unknown fields: a typo or a string
where a number belongs is a 422 naming the field, not a guess. Response
models document the answers in ``/openapi.json``. The service layer
(:mod:`collector.service`) never sees these: the HTTP layer turns them into
plain arguments.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from policies.model import Category

#: The policy model's ``Name``: what device ids, tenants and groups may look like.
NAME_PATTERN = r"^[A-Za-z0-9._@+-]+$"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_PATTERN)]
#: Largest integer a field may hold: the signed 64-bit columns it is stored in.
INT64_MAX = 2**63 - 1
Millis = Annotated[int, Field(ge=0, le=INT64_MAX)]
Text = Annotated[str, Field(max_length=2000)]


def _ed25519_b64(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("public_key must be standard base64") from exc
    if len(raw) != 32:
        raise ValueError("public_key must be a raw 32-byte Ed25519 key")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(_Out):
    error: str = Field(description="a short, stable error code")
    detail: str = Field(default="", description="what went wrong, in words")


# ---------------------------------------------------------------- devices


class EnrollIn(_In):
    token: Annotated[str, Field(min_length=1, max_length=1024)]
    device_id: Name
    public_key: Annotated[str, Field(max_length=64), AfterValidator(_ed25519_b64)]
    hostname: Annotated[str, Field(max_length=255)] = ""


class EnrollOut(_Out):
    device_id: str
    tenant: str
    group: str


class BatchAckOut(_Out):
    status: Literal["stored", "duplicate"]
    seq: int
    batch_id: str


class GrantsOut(_Out):
    grants: list[str] = Field(description="base64 of each signed grant envelope")


class ExemptionIn(_In):
    category: Category
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    duration_days: Annotated[int, Field(ge=1, le=365)]


class ExemptionCreatedOut(_Out):
    request_id: str
    status: Literal["pending"]


class ExemptionOut(_Out):
    request_id: str
    category: str
    reason: str
    duration_days: int
    status: Literal["pending", "approved", "denied"]
    created_at: str
    decided_at: str | None
    decision_reason: str | None
    grant_expires: str | None


class ExemptionsOut(_Out):
    requests: list[ExemptionOut]


class ErasureIn(_In):
    start_ms: Millis
    end_ms: Millis
    reason: Text = ""

    @model_validator(mode="after")
    def _ordered(self) -> ErasureIn:
        if self.end_ms < self.start_ms:
            raise ValueError("end_ms is before start_ms")
        return self


class ErasureOut(_Out):
    deleted: int


class ConsentIn(_In):
    policy_version: Annotated[int, Field(ge=1, le=INT64_MAX)]
    decision: Literal["accepted", "declined"]
    at_ms: Millis


class RecordedOut(_Out):
    status: Literal["recorded"]


# ------------------------------------------------------------------ admin


class EnrollmentTokenIn(_In):
    tenant: Name
    group: Name
    expires_minutes: Annotated[int, Field(ge=1, le=30 * 24 * 60)] = 60


class EnrollmentTokenOut(_Out):
    token: str = Field(description="shown once; only its hash is stored")
    token_id: str
    tenant: str
    group: str
    expires_at: str


class EnrollmentTokenInfo(_Out):
    token_id: str
    tenant: str
    group: str
    created_at: str
    created_by: str
    expires_at: str
    used_at: str | None
    device_id: str | None


class EnrollmentTokensOut(_Out):
    tokens: list[EnrollmentTokenInfo]


class PolicyStoredOut(_Out):
    status: Literal["stored", "unchanged"]
    version: int
    tenant: str
    groups: list[str]


class AdminExemptionOut(ExemptionOut):
    device_id: str
    tenant: str
    group: str
    decided_by: str | None
    grant_id: str | None


class AdminExemptionsOut(_Out):
    requests: list[AdminExemptionOut]


class ApproveIn(_In):
    expires_at: AwareDatetime | None = None
    duration_days: Annotated[int, Field(ge=1, le=3650)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ApproveIn:
        if self.expires_at is not None and self.duration_days is not None:
            raise ValueError("give expires_at or duration_days, not both")
        return self


class ApproveOut(_Out):
    request_id: str
    grant_id: str
    expires: str


class DenyIn(_In):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DecisionOut(_Out):
    request_id: str
    status: Literal["approved", "denied"]


class DeviceOut(_Out):
    device_id: str
    tenant: str
    group: str
    hostname: str
    enrolled_at: str
    revoked_at: str | None
    last_seen: str | None
    policy_version: int | None
    bytes: int
    batches: int
    open_requests: int


class DevicesOut(_Out):
    devices: list[DeviceOut]


class RevokedOut(_Out):
    device_id: str
    status: Literal["revoked"]


class AuditEventOut(_Out):
    id: int
    at: str
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


class AuditOut(_Out):
    events: list[AuditEventOut]


#: Request models, added to ``/openapi.json``'s components (their routes read
#: raw bytes, so FastAPI does not find them by itself).
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    EnrollIn,
    ExemptionIn,
    ErasureIn,
    ConsentIn,
    EnrollmentTokenIn,
    ApproveIn,
    DenyIn,
)
