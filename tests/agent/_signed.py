"""Signed policies and grants for the trust holder's tests, made at run time."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.trust import PolicyOrigin
from policies.keys import generate_private_key, public_key_model
from policies.model import Category, Grant, SignerSet
from policies.verify import DeviceScope, sign_grant, sign_policy

NOW = datetime.now(UTC).replace(microsecond=0)
IT_KEY = generate_private_key()
ADMIN_KEY = generate_private_key()
TRUSTED = SignerSet(keys=(public_key_model(IT_KEY.public_key()),), threshold=1)
DEVICE = DeviceScope(tenant="acme", group="office")
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "examples" / "test-workapp.json"
FILE = PolicyOrigin.file(Path("p.signed.json"))


def clock() -> float:
    return NOW.timestamp()


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def policy_doc(version: int, *, admin: bool = True, **changes: Any) -> dict[str, Any]:
    doc = json.loads(EXAMPLE.read_text())
    signers = [{**public_key_model(ADMIN_KEY.public_key()).model_dump(), "categories": ["other"]}]
    doc.update(
        version=version,
        issued_at=stamp(NOW - timedelta(hours=1)),
        expires=stamp(NOW + timedelta(days=7)),
        scope={"tenant": "acme", "device_groups": ["office"]},
        grant_signers=signers if admin else [],
    )
    doc.update(changes)
    return doc


def signed(version: int, key: Ed25519PrivateKey = IT_KEY, **changes: Any) -> bytes:
    return sign_policy(json.dumps(policy_doc(version, **changes)).encode(), [key])


def tampered(version: int) -> bytes:
    envelope = json.loads(signed(version))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["apps"] = []
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(envelope).encode()


def grant(device_id: str, category: Category = Category.OTHER, key: Any = ADMIN_KEY) -> bytes:
    return sign_grant(
        Grant(
            grant_id=f"g-{category.value}",
            request_id="r1",
            tenant="acme",
            device_id=device_id,
            category=category,
            issued_at=NOW - timedelta(minutes=1),
            expires=NOW + timedelta(days=1),
        ),
        key,
    )
