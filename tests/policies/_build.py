"""Keys, policies, grants and signed files for the ``policies`` tests.

Every key is generated when the tests run; no private key is ever committed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.envelope import sign_envelope
from policies.keys import generate_private_key, keyid_of, public_key_model
from policies.model import GRANT_PAYLOAD_TYPE, POLICY_PAYLOAD_TYPE, PublicKey, SignerSet

#: The fixed "now" of every test.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TENANT = "example-corp"
GROUP = "office"
DEVICE_ID = "dev-0001"

_DATASET_KEY = base64.b64encode(bytes(range(32))).decode("ascii")

#: Named keys: A, B, C, D sign policies in various sets; E is nobody's;
#: ADMIN_* sign grants.
KEYS: dict[str, Ed25519PrivateKey] = {
    name: generate_private_key()
    for name in ("A", "B", "C", "D", "E", "ADMIN_ALL", "ADMIN_BATTERY", "ADMIN_UNLISTED")
}


def pub(name: str) -> PublicKey:
    return public_key_model(KEYS[name].public_key(), name=name)


def signers(names: Sequence[str], threshold: int = 1) -> SignerSet:
    return SignerSet(keys=tuple(pub(n) for n in names), threshold=threshold)


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def policy_doc(version: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid policy document; ``overrides`` replace top-level fields."""
    doc: dict[str, Any] = {
        "version": version,
        "issued_at": stamp(NOW - timedelta(days=1)),
        "expires": stamp(NOW + timedelta(days=30)),
        "scope": {"tenant": TENANT, "device_groups": [GROUP]},
        "notice": {"organisation": "Example Corp", "contact": "privacy@example.com"},
        "grant_signers": [
            {
                **pub("ADMIN_ALL").model_dump(),
                "categories": ["bandwidth", "sensitive", "battery", "other"],
            },
            {**pub("ADMIN_BATTERY").model_dump(), "categories": ["battery"]},
        ],
        "dataset_key": {"key_id": "test-dataset", "public_key": _DATASET_KEY},
        "apps": [
            {
                "id": "workapp",
                "name": "Work app",
                "match": {"wm_classes": ["overt-workapp"]},
                "capture": {"keystrokes": "text"},
            }
        ],
        "retention": {"days": 30, "readers": ["the data team"]},
    }
    doc.update(overrides)
    return doc


def rotation_doc(version: int, names: Sequence[str], threshold: int = 1) -> dict[str, Any]:
    return policy_doc(
        version,
        next_signers={"keys": [pub(n).model_dump() for n in names], "threshold": threshold},
    )


def to_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode("utf-8")


def sign(
    payload: bytes | dict[str, Any],
    names: Sequence[str],
    payload_type: str = POLICY_PAYLOAD_TYPE,
) -> bytes:
    data = to_bytes(payload) if isinstance(payload, dict) else payload
    return sign_envelope(data, payload_type, [KEYS[n] for n in names])


def grant_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "grant_id": "g-1",
        "request_id": "r-1",
        "tenant": TENANT,
        "device_id": DEVICE_ID,
        "category": "battery",
        "issued_at": stamp(NOW - timedelta(hours=1)),
        "expires": stamp(NOW + timedelta(days=7)),
        "reason": "laptop is rarely on a charger",
    }
    doc.update(overrides)
    return doc


def sign_grant_doc(
    doc: dict[str, Any], name: str = "ADMIN_ALL", payload_type: str = GRANT_PAYLOAD_TYPE
) -> bytes:
    return sign_envelope(json.dumps(doc).encode("utf-8"), payload_type, [KEYS[name]])


def edit_envelope(data: bytes, **changes: Any) -> bytes:
    """The envelope with top-level fields replaced (``None`` removes a field)."""
    doc = json.loads(data)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode("utf-8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def keyid(name: str) -> str:
    return keyid_of(KEYS[name])


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its exact bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
