"""What the admin pages show: stored records turned into template values.

Owns presentation only — times as people read them, byte counts, the
category labels, one dict per exemption, device, token and audit event for
the Jinja2 templates (autoescaped, see :func:`template_environment`). It
reads records and returns strings; no HTTP, no service, no store.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from collector.config import from_ms, to_ms
from collector.store.records import AuditEvent, DeviceRecord, EnrollmentTokenRecord, ExemptionRecord
from collector.web.urls import EXEMPTIONS

_HERE = Path(__file__).parent

CATEGORY_LABELS = {
    "bandwidth": "Limited bandwidth",
    "sensitive": "Handles sensitive information",
    "battery": "Often on battery",
    "other": "Other",
}


def template_environment() -> jinja2.Environment:
    """The pages' Jinja2 environment: autoescaping on for every template."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def when(value_ms: int | None) -> str:
    """A stored time as people read it: ``2026-11-22 12:00 UTC``."""
    if value_ms is None:
        return "never"
    return from_ms(value_ms).strftime("%Y-%m-%d %H:%M UTC")


def ago(value_ms: int | None, now: datetime) -> str:
    if value_ms is None:
        return "never"
    seconds = max(0, (to_ms(now) - value_ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{when(value_ms)} ({seconds // size} {unit} ago)"
    return f"{when(value_ms)} (just now)"


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _detail_item(key: str, value: Any) -> tuple[str, str]:
    """One audit detail as (label, text); epoch-millisecond times are shown as times."""
    if key.endswith("_ms") and isinstance(value, int) and value > 10**11:
        return key.removesuffix("_ms"), when(value)
    if isinstance(value, list | tuple):
        return key, ", ".join(str(v) for v in value)
    return key, str(value)


def exemption_view(record: ExemptionRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "device_id": record.device_id,
        "tenant": record.tenant,
        "group": record.group,
        "category": record.category,
        "category_label": CATEGORY_LABELS.get(record.category, record.category),
        "reason": record.reason,
        "duration_days": record.duration_days,
        "created": when(record.created_at_ms),
        "status": record.status.value,
        "decided_at": when(record.decided_at_ms),
        "decided_by": (record.decided_by or "").removeprefix("admin:"),
        "decision_reason": record.decision_reason or "",
        "grant_expires": when(record.grant_expires_ms),
        "approve_url": f"{EXEMPTIONS}/{record.request_id}/approve",
        "deny_url": f"{EXEMPTIONS}/{record.request_id}/deny",
    }


def device_view(record: DeviceRecord, open_requests: int, now: datetime) -> dict[str, Any]:
    return {
        "device_id": record.device_id,
        "tenant": record.tenant,
        "group": record.group,
        "hostname": record.hostname,
        "revoked": record.revoked,
        "enrolled": when(record.enrolled_at_ms),
        "last_seen": ago(record.last_seen_ms, now),
        "policy_version": "—" if record.policy_version is None else record.policy_version,
        "bytes": human_bytes(record.bytes),
        "bytes_exact": record.bytes,
        "batches": record.batches,
        "open_requests": open_requests,
    }


def token_view(record: EnrollmentTokenRecord, now_ms: int) -> dict[str, Any]:
    if record.used_at_ms is not None:
        state = "used"
    elif record.expires_at_ms <= now_ms:
        state = "expired"
    else:
        state = "unused"
    return {
        "token_id": record.token_id,
        "tenant": record.tenant,
        "group": record.group,
        "created": when(record.created_at_ms),
        "expires": when(record.expires_at_ms),
        "state": state,
        "used_at": when(record.used_at_ms) if record.used_at_ms is not None else "",
        "device_id": record.device_id or "",
    }


def audit_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "at": when(event.at_ms),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "detail": [_detail_item(k, v) for k, v in sorted(event.detail.items())],
    }
