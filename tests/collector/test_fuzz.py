"""Fuzzing every endpoint in-process: whatever arrives, the answer is never a 5xx.

Three kinds of caller, each a few hundred examples through the in-process
app (``TestClient``): strangers (random methods, paths, headers, bodies),
enrolled devices whose requests are correctly signed but whose bodies are
random bytes or JSON of the right and the wrong shapes, and admins with a
valid token sending the same to the admin endpoints.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from collector.api import create_app
from collector.config import Admission, CollectorConfig, StorageConfig
from collector.service import CollectorService
from overt.wire.sealed import MAGIC, SIGNATURE_CONTEXT
from tests.policies._build import KEYS, policy_doc, sign

from ._build import Device, MutableClock, canonical, header_doc

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DEVICE_PATHS = [
    "/v1/enroll",
    "/v1/batches",
    "/v1/policy",
    "/v1/grants",
    "/v1/exemptions",
    "/v1/erasure",
    "/v1/consent",
]
ADMIN_PATHS = [
    "/v1/admin/enrollment-tokens",
    "/v1/admin/policy",
    "/v1/admin/exemptions",
    "/v1/admin/exemptions/{id}/approve",
    "/v1/admin/exemptions/{id}/deny",
    "/v1/admin/devices",
    "/v1/admin/devices/{id}/revoke",
    "/v1/admin/audit",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    clock = MutableClock()
    config = CollectorConfig(
        storage=StorageConfig(data_dir=tmp_path_factory.mktemp("fuzz") / "collector"),
        grant_key=KEYS["ADMIN_ALL"],
        clock=clock,
        # The clock stands still, so a bucket would never refill: every example must get in.
        admission=Admission(device_rate=None, address_rate=None),
    )
    app = create_app(config)
    service: CollectorService = app.state.service
    admin = {"Authorization": f"Bearer {service.accounts.create_admin_token('fuzz', 'cli:test')}"}
    device = Device("dev-fuzz")
    token = service.accounts.create_enrollment_token("example-corp", "office", 60, "cli:test").token
    service.accounts.enroll(token, device.device_id, device.public_b64, "h")
    with TestClient(app, base_url="http://collector.test") as client:
        client.put("/v1/admin/policy", content=sign(policy_doc(1), ["A"]), headers=admin)
        yield {"client": client, "admin": admin, "device": device, "clock": clock}


# ------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "token",
    "device_id",
    "public_key",
    "hostname",
    "category",
    "reason",
    "duration_days",
    "start_ms",
    "end_ms",
    "policy_version",
    "decision",
    "at_ms",
    "tenant",
    "group",
    "expires_minutes",
    "expires_at",
]
right_shapes = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: MAGIC + b),
    json_values.map(lambda v: json.dumps(v).encode()),
    right_shapes.map(lambda v: json.dumps(v).encode()),
    st.just(b"[" * 5000 + b"]" * 5000),
)
header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=20,
)
header_values = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip()
)
known_headers = st.sampled_from(
    [
        "Overt-Device",
        "Overt-Timestamp",
        "Overt-Nonce",
        "Overt-Signature",
        "Authorization",
        "If-None-Match",
        "Content-Type",
        "Content-Encoding",
    ]
)
headers = st.dictionaries(st.one_of(header_names, known_headers), header_values, max_size=6)
# Percent-encoded, since httpx (rightly) refuses to send control characters in a URL.
ids = st.text(max_size=30).map(lambda t: quote(t, safe=""))


def _path(template: str, some_id: str) -> str:
    return template.replace("{id}", some_id or "x")


paths = st.one_of(
    st.sampled_from(DEVICE_PATHS),
    st.builds(_path, st.sampled_from(ADMIN_PATHS), ids),
    st.text(max_size=40).map(lambda t: "/" + quote(t, safe="/%")),
    st.builds(
        lambda p, q: f"{p}?{quote(q, safe='=&%')}",
        st.sampled_from(DEVICE_PATHS + ADMIN_PATHS),
        st.text(max_size=20),
    ),
)


def _no_5xx(answer: Any) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])


# ------------------------------------------------------------------ tests


@FUZZ
@given(method=st.sampled_from(METHODS), path=paths, hdrs=headers, body=bodies)
def test_strangers_never_get_a_5xx(
    world: dict[str, Any], method: str, path: str, hdrs: dict[str, bytes], body: bytes
) -> None:
    client: TestClient = world["client"]
    content = None if method in {"GET", "HEAD", "OPTIONS"} and not body else body
    _no_5xx(client.request(method, path, content=content, headers=hdrs))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST"]),
    path=st.sampled_from(DEVICE_PATHS),
    body=bodies,
    extra=st.dictionaries(st.sampled_from(["If-None-Match", "Content-Type"]), header_values),
)
def test_signed_device_requests_with_any_body_never_get_a_5xx(
    world: dict[str, Any], method: str, path: str, body: bytes, extra: dict[str, bytes]
) -> None:
    client: TestClient = world["client"]
    device: Device = world["device"]
    signed: dict[str, Any] = dict(device.sign(method, path, body, world["clock"].ms()))
    signed.update(extra)
    _no_5xx(client.request(method, path, content=body, headers=signed))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.builds(_path, st.sampled_from(ADMIN_PATHS), ids),
    query=st.dictionaries(st.sampled_from(["status", "limit", "before"]), st.text(max_size=12)),
    body=bodies,
)
def test_admin_requests_with_any_body_never_get_a_5xx(
    world: dict[str, Any], method: str, path: str, query: dict[str, str], body: bytes
) -> None:
    client: TestClient = world["client"]
    _no_5xx(client.request(method, path, params=query, content=body, headers=world["admin"]))


@FUZZ
@given(
    seq=st.integers(min_value=-5, max_value=2**64),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "start_ms",
                "end_ms",
                "policy_version",
                "body_size",
                "batch_id",
                "counts",
                "app_ids",
                "format",
            ]
        ),
        json_values,
        max_size=3,
    ),
)
def test_well_signed_batches_with_odd_headers_never_get_a_5xx(
    world: dict[str, Any], seq: int, fields: dict[str, Any]
) -> None:
    client: TestClient = world["client"]
    device: Device = world["device"]
    doc = header_doc(device.device_id, 1, 10)
    doc.update(fields, seq=seq)
    header = canonical(doc)
    ciphertext = bytes(64)
    signature = device.key.sign(
        SIGNATURE_CONTEXT + struct.pack(">I", len(header)) + header + ciphertext
    )
    sealed = MAGIC + struct.pack(">I", len(header)) + header + signature + ciphertext
    signed = device.sign("POST", "/v1/batches", sealed, world["clock"].ms())
    _no_5xx(client.post("/v1/batches", content=sealed, headers=signed))
