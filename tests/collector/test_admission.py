"""Admission in-process: rates per device and per address, refusals before the body, 405s.

The app runs on the injected clock, so a bucket refills only when a test
moves the clock. What needs real sockets (memory, idle connections, requests
in flight, header and body deadlines) is in ``test_bounds.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from collector.admission import RateLimiter
from collector.api import create_app
from collector.config import Admission, CollectorConfig, RateLimit, StorageConfig
from collector.service import CollectorService

from ._build import GROUP, TENANT, Device, MutableClock


def _enrolled(service: CollectorService, device_id: str) -> Device:
    device = Device(device_id)
    token = service.accounts.create_enrollment_token(TENANT, GROUP, 60, "cli:test").token
    service.accounts.enroll(token, device.device_id, device.public_b64, "h")
    return device


@pytest.fixture
def limited(
    tmp_path: Path, config: CollectorConfig
) -> Iterator[tuple[TestClient, CollectorService]]:
    small = replace(
        config,
        storage=StorageConfig(data_dir=tmp_path / "limited"),
        admission=Admission(
            device_rate=RateLimit(per_second=1, burst=3),
            address_rate=RateLimit(per_second=1, burst=4),
        ),
    )
    app = create_app(small)
    with TestClient(app, base_url="http://collector.test") as client:
        yield client, app.state.service


def _upload(client: TestClient, clock: MutableClock, device: Device, seq: int) -> int:
    sealed = device.sealed(seq)
    headers = device.sign("POST", "/v1/batches", sealed, clock.ms())
    status: int = client.post("/v1/batches", content=sealed, headers=headers).status_code
    return status


# ------------------------------------------------------------- the buckets


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = RateLimiter(RateLimit(per_second=2, burst=3))
    for _ in range(3):
        assert bucket.wait("k", 100.0) == 0
        bucket.charge("k", 100.0)
    assert bucket.wait("k", 100.0) == pytest.approx(0.5)
    assert bucket.wait("k", 100.5) == 0
    assert bucket.wait("other", 100.0) == 0


def test_a_bucket_never_holds_more_than_its_burst_nor_less_than_nothing() -> None:
    bucket = RateLimiter(RateLimit(per_second=1, burst=2))
    bucket.charge("k", 0.0)
    for _ in range(10):  # charged past empty: it stays empty, no debt
        bucket.charge("k", 0.0)
    assert bucket.wait("k", 1.0) == 0
    bucket.charge("k", 1000.0)  # long quiet: full again (2), minus one
    bucket.charge("k", 1000.0)
    assert bucket.wait("k", 1000.0) == pytest.approx(1.0)


def test_the_buckets_kept_are_bounded_least_recent_first() -> None:
    bucket = RateLimiter(RateLimit(per_second=1, burst=1), max_keys=3)
    for key in ("a", "b", "c", "d"):
        bucket.charge(key, 0.0)
    assert len(bucket) == 3
    assert bucket.wait("a", 0.0) == 0  # forgotten: a full bucket again
    assert bucket.wait("d", 0.0) == pytest.approx(1.0)


# ------------------------------------------------------------ device rates


def test_a_device_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    limited: tuple[TestClient, CollectorService], clock: MutableClock
) -> None:
    client, service = limited
    flood, other = _enrolled(service, "dev-flood"), _enrolled(service, "dev-other")
    assert [_upload(client, clock, flood, seq) for seq in (1, 2, 3)] == [201, 201, 201]
    sealed = flood.sealed(4)
    answer = client.post(
        "/v1/batches", content=sealed, headers=flood.sign("POST", "/v1/batches", sealed, clock.ms())
    )
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "rate_limited"
    assert service.storage.get_batch(flood.device_id, 4) is None
    assert _upload(client, clock, other, 1) == 201
    clock.advance(seconds=1)
    assert _upload(client, clock, flood, 4) == 201


def test_a_forged_request_does_not_spend_the_devices_rate(
    limited: tuple[TestClient, CollectorService], clock: MutableClock
) -> None:
    client, service = limited
    device = _enrolled(service, "dev-victim")
    forger = Device(device.device_id)  # the right id, the wrong key
    for seq in range(1, 4):
        assert _upload(client, clock, forger, seq) == 401
    # The forger paid at its address (4 a burst), the device paid nothing.
    assert [_upload(client, clock, device, seq) for seq in (1, 2, 3)] == [201, 201, 201]


# ----------------------------------------------------------- address rates


def test_an_address_over_its_rate_waits_for_everything(
    limited: tuple[TestClient, CollectorService], clock: MutableClock
) -> None:
    client, service = limited
    device = _enrolled(service, "dev-behind-the-nat")
    statuses = [client.get("/v1/policy").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    refused = client.get("/openapi.json")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    # While its address is over its rate, a device behind it waits too.
    assert _upload(client, clock, device, 1) == 429
    clock.advance(seconds=2)
    assert _upload(client, clock, device, 1) == 201


def test_authenticated_device_requests_do_not_spend_the_addresss_rate(
    limited: tuple[TestClient, CollectorService], clock: MutableClock
) -> None:
    client, service = limited
    devices = [_enrolled(service, f"dev-office-{n}") for n in range(4)]
    for device in devices:
        for seq in (1, 2, 3):
            assert _upload(client, clock, device, seq) == 201
    assert client.get("/openapi.json").status_code == 200


def test_an_admin_with_a_valid_token_does_not_spend_the_addresss_rate(
    limited: tuple[TestClient, CollectorService],
) -> None:
    client, service = limited
    token = {"Authorization": f"Bearer {service.accounts.create_admin_token('alice', 'cli:test')}"}
    for _ in range(10):
        assert client.get("/v1/admin/devices", headers=token).status_code == 200
    wrong = {"Authorization": "Bearer not-a-token"}
    statuses = [client.get("/v1/admin/devices", headers=wrong).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]


# ------------------------------------------------ refused before the body


def test_refusals_from_the_headers_never_read_the_body(
    limited: tuple[TestClient, CollectorService], clock: MutableClock
) -> None:
    client, _ = limited
    read: list[int] = []

    def body() -> Iterator[bytes]:
        read.append(1)
        yield b"x" * 1000

    stranger = Device("dev-unknown")
    stale = stranger.sign("POST", "/v1/batches", b"", clock.ms() - 10 * 60_000)
    for headers in (
        {},
        stranger.sign("POST", "/v1/batches", b"", clock.ms()),
        stale,
        {**stranger.sign("POST", "/v1/batches", b"", clock.ms()), "Overt-Signature": "!!"},
    ):
        answer = client.post("/v1/batches", content=body(), headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"error": "unauthorized", "detail": "authentication failed"}
    # TestClient starts the body's iterator only when the app asks for the body.
    assert read == []


# ------------------------------------------------------------------ 405


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/batches", "POST"),
        ("DELETE", "/v1/exemptions", "GET, POST"),
        ("PUT", "/v1/admin/enrollment-tokens", "GET, POST"),
        ("OPTIONS", "/v1/policy", "GET"),
        ("HEAD", "/v1/grants", "GET"),
        ("GET", "/v1/admin/exemptions/r-1/approve", "POST"),
    ],
)
def test_other_methods_get_405_with_every_allowed_method(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers.get_list("allow") == [allow]
    if method != "HEAD":
        assert answer.json()["error"] == "method_not_allowed"


# ------------------------------------------------ what the schema promises


def test_an_integer_valued_float_is_accepted_where_the_schema_says_integer(
    client: TestClient, admin_headers: dict[str, str], clock: MutableClock
) -> None:
    body = {"tenant": TENANT, "group": GROUP, "expires_minutes": 168.0}
    answer = client.post("/v1/admin/enrollment-tokens", json=body, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    for wrong in (168.5, "168", True):
        body["expires_minutes"] = wrong
        answer = client.post("/v1/admin/enrollment-tokens", json=body, headers=admin_headers)
        assert answer.status_code == 422, wrong


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=5", 200),
        ("limit=5.0", 200),
        ("limit=0", 422),
        ("limit=1001", 422),
        ("limit=1_0", 422),
        ("limit=%205", 422),
        ("before=1", 200),
        ("before=0", 422),
        ("before=-3", 422),
        ("before=9223372036854775808", 422),
    ],
)
def test_audit_query_integers_are_what_the_schema_says(
    client: TestClient, admin_headers: dict[str, str], query: str, status: int
) -> None:
    answer = client.get(f"/v1/admin/audit?{query}", headers=admin_headers)
    assert answer.status_code == status, answer.text


def test_an_unauthenticated_bad_query_is_401_not_422(client: TestClient) -> None:
    assert client.get("/v1/admin/audit?limit=0").status_code == 401


@pytest.mark.parametrize(
    "public_key",
    [
        "A" * 43 + "=",
        "A" * 42 + "B=",  # the last character's two low bits are not zero
        "A" * 44,
        "A" * 43,
        "A" * 42 + "==",
    ],
)
def test_an_enrollment_key_must_be_canonical_base64_of_32_bytes(
    client: TestClient, public_key: str
) -> None:
    body = {"token": "t", "device_id": "dev-k", "public_key": public_key}
    answer = client.post("/v1/enroll", content=json.dumps(body))
    expected = 401 if public_key == "A" * 43 + "=" else 422  # well formed: the token decides
    assert answer.status_code == expected, answer.text


def test_the_schema_refuses_what_approve_refuses(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ApproveIn"]
    assert schema["not"]["required"] == ["expires_at", "duration_days"]
    both = {"expires_at": "2030-01-01T00:00:00Z", "duration_days": 3}
    answer = client.post("/v1/admin/exemptions/r-x/approve", json=both, headers=admin_headers)
    assert answer.status_code == 422
    one = {"expires_at": None, "duration_days": 3}
    answer = client.post("/v1/admin/exemptions/r-x/approve", json=one, headers=admin_headers)
    assert answer.status_code == 404  # well formed: no such request
