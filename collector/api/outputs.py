"""Answers: records turned into response models, ETags, query integers.

The response models are :mod:`collector.schemas`'; this module fills them
from the store's records and writes them as JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Response
from pydantic import BaseModel, BeforeValidator

from collector import schemas
from collector.config import iso
from collector.http_errors import JSON
from collector.store.records import (
    AuditEvent,
    ExemptionRecord,
)

logger = logging.getLogger(__name__)


def ok(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json().encode("utf-8"), status_code=status, media_type=JSON)


def query_int(value: Any) -> Any:
    """A query integer as JSON Schema reads one: digits, or digits and a zero fraction."""
    if isinstance(value, str):
        whole, dot, fraction = value.partition(".")
        if (
            whole.isascii()
            and whole.isdigit()
            and (not dot or (fraction.isascii() and fraction.isdigit() and not fraction.strip("0")))
        ):
            return int(whole)
        raise ValueError("must be an integer")
    return value


QueryInt = BeforeValidator(query_int)


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def exemption_out(record: ExemptionRecord) -> schemas.ExemptionOut:
    return schemas.ExemptionOut(
        request_id=record.request_id,
        category=record.category,
        reason=record.reason,
        duration_days=record.duration_days,
        status=record.status.value,
        created_at=iso(record.created_at_ms) or "",
        decided_at=iso(record.decided_at_ms),
        decision_reason=record.decision_reason,
        grant_expires=iso(record.grant_expires_ms),
    )


def admin_exemption_out(record: ExemptionRecord) -> schemas.AdminExemptionOut:
    return schemas.AdminExemptionOut(
        **exemption_out(record).model_dump(),
        device_id=record.device_id,
        tenant=record.tenant,
        group=record.group,
        decided_by=record.decided_by,
        grant_id=record.grant_id,
    )


def audit_out(event: AuditEvent) -> schemas.AuditEventOut:
    return schemas.AuditEventOut(
        id=event.event_id or 0,
        at=iso(event.at_ms) or "",
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        detail=dict(event.detail),
    )
