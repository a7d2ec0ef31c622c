"""Devices, sealed batches, signed requests and a settable clock for the collector tests.

Every key is generated when the tests run. Policies and admin keys come from
``tests.policies._build`` (``KEYS["ADMIN_ALL"]`` may grant every category,
``KEYS["ADMIN_BATTERY"]`` only ``battery``, ``KEYS["ADMIN_UNLISTED"]`` none).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from collector.config import to_ms
from collector.store.records import AuditEvent, BatchWrite
from overt.wire.batch import SignalCounts
from overt.wire.sealed import seal_batch
from overt.wire.signature import sign_request
from policies.keys import generate_private_key, raw_public_bytes
from tests.policies._build import GROUP, NOW, TENANT

__all__ = ["GROUP", "NOW", "TENANT"]

DATASET_KEY = X25519PrivateKey.generate()


class MutableClock:
    """The collector's clock in tests: starts at ``NOW``, moves only when told to."""

    def __init__(self, start: datetime = NOW) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)

    def ms(self) -> int:
        return to_ms(self.value)


def header_doc(device_id: str, seq: int, body_size: int, **overrides: Any) -> dict[str, Any]:
    start = 1_790_000_000_000 + seq * 60_000
    doc: dict[str, Any] = {
        "format": 1,
        "device_id": device_id,
        "batch_id": f"{device_id}-b{seq}",
        "seq": seq,
        "start_ms": start,
        "end_ms": start + 59_000,
        "policy_version": 1,
        "dataset_key_id": "test-dataset",
        "counts": asdict(SignalCounts(clicks=3, key_timings=10)),
        "app_ids": ["workapp"],
        "body_size": body_size,
    }
    doc.update(overrides)
    return doc


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Device:
    """A device's identity as the agent holds it: id and private key."""

    device_id: str
    key: Ed25519PrivateKey = field(default_factory=generate_private_key)
    tenant: str = TENANT
    group: str = GROUP

    @property
    def public_b64(self) -> str:
        return base64.b64encode(raw_public_bytes(self.key.public_key())).decode()

    def sealed(
        self,
        seq: int,
        body: bytes = b"captured events, compressed" * 40,
        *,
        signer: Ed25519PrivateKey | None = None,
        **header: Any,
    ) -> bytes:
        """A sealed batch (``overt.wire.sealed`` format 1) from this device."""
        named = header.pop("device_id", self.device_id)
        doc = header_doc(named, seq, len(body), **header)
        return seal_batch(canonical(doc), body, DATASET_KEY.public_key(), signer or self.key)

    def sign(
        self, method: str, target: str, body: bytes, now_ms: int, nonce: str | None = None
    ) -> dict[str, str]:
        return sign_request(self.key, self.device_id, method, target, body, now_ms, nonce)


def batch_write(
    device_id: str, seq: int, sealed: bytes | None = None, *, received_at_ms: int = 1, **hdr: Any
) -> BatchWrite:
    """A write for the storage suite: any bytes will do (the store does not parse them)."""
    data = sealed if sealed is not None else f"sealed {device_id} {seq}".encode() * 50
    doc = header_doc(device_id, seq, len(data), **hdr)
    return BatchWrite(
        device_id=device_id,
        seq=seq,
        batch_id=doc["batch_id"],
        header=canonical(doc),
        start_ms=doc["start_ms"],
        end_ms=doc["end_ms"],
        policy_version=doc["policy_version"],
        sealed=data,
        sha256=hashlib.sha256(data).digest(),
        received_at_ms=received_at_ms,
        conflict_audit=AuditEvent(
            received_at_ms,
            f"device:{device_id}",
            "batch.sequence_conflict",
            device_id,
            {"seq": seq},
        ),
    )
