"""Keys, a signed policy and device-signed requests for the admin-page tests.

Every key is generated when the tests run. The policy lists ``GRANT_KEY`` as
an admin key for every category, so the collector started with that key can
approve requests; ``IT_KEY`` signs the policy.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from overt.wire.signature import sign_request
from policies.envelope import sign_envelope
from policies.keys import generate_private_key, public_key_model, raw_public_bytes
from policies.model import POLICY_PAYLOAD_TYPE, Policy
from policies.verify import parse_policy_payload

TENANT = "example-corp"
GROUP = "office"
ADMIN = "alice"
PASSWORD = "correct horse battery staple"

IT_KEY = generate_private_key()
GRANT_KEY = generate_private_key()


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def policy_doc(now: datetime, version: int = 1) -> dict[str, Any]:
    return {
        "version": version,
        "issued_at": stamp(now - timedelta(days=1)),
        "expires": stamp(now + timedelta(days=60)),
        "scope": {"tenant": TENANT, "device_groups": [GROUP]},
        "notice": {"organisation": "Example Corp", "contact": "privacy@example.com"},
        "grant_signers": [
            {
                **public_key_model(GRANT_KEY.public_key(), name="collector").model_dump(),
                "categories": ["bandwidth", "sensitive", "battery", "other"],
            }
        ],
        "dataset_key": {
            "key_id": "test-dataset",
            "public_key": base64.b64encode(bytes(range(32))).decode("ascii"),
        },
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


def signed_policy(now: datetime) -> tuple[bytes, Policy]:
    payload = json.dumps(policy_doc(now)).encode("utf-8")
    return sign_envelope(payload, POLICY_PAYLOAD_TYPE, [IT_KEY]), parse_policy_payload(payload)


class Device:
    """A test device: its key and the signed requests it makes."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.key: Ed25519PrivateKey = generate_private_key()

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(raw_public_bytes(self.key.public_key())).decode("ascii")

    def enroll_body(self, token: str) -> dict[str, str]:
        return {
            "token": token,
            "device_id": self.device_id,
            "public_key": self.public_key_b64,
            "hostname": f"{self.device_id}.example",
        }

    def headers(self, method: str, target: str, body: bytes, now_ms: int) -> dict[str, str]:
        return sign_request(self.key, self.device_id, method, target, body, now_ms)
