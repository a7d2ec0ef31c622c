"""Enrollment over HTTP: single-use expiring tokens, one device per id, admin tokens."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from collector.credentials import token_hash
from collector.service import CollectorService

from ._build import Device, MutableClock
from .conftest import Enroll


def _token(client: TestClient, admin: dict[str, str], **body: Any) -> str:
    answer = client.post(
        "/v1/admin/enrollment-tokens",
        json={"tenant": "example-corp", "group": "office", **body},
        headers=admin,
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def _enroll(client: TestClient, token: str, device: Device) -> Any:
    return client.post(
        "/v1/enroll",
        json={
            "token": token,
            "device_id": device.device_id,
            "public_key": device.public_b64,
            "hostname": "laptop-7",
        },
    )


UNAUTHORIZED = {"error": "unauthorized", "detail": "bad, used or expired enrollment token"}


def test_a_device_enrolls_with_a_token_into_its_tenant_and_group(
    client: TestClient, admin_headers: dict[str, str], service: CollectorService
) -> None:
    token = _token(client, admin_headers, group="lab")
    answer = _enroll(client, token, Device("dev-1"))
    assert answer.status_code == 201
    assert answer.json() == {"device_id": "dev-1", "tenant": "example-corp", "group": "lab"}
    device = service.storage.get_device("dev-1")
    assert device is not None
    assert device.hostname == "laptop-7"


def test_tokens_are_stored_hashed_and_listed_without_the_secret(
    client: TestClient, admin_headers: dict[str, str], service: CollectorService
) -> None:
    token = _token(client, admin_headers)
    [record] = service.storage.list_enrollment_tokens()
    assert record.token_hash == token_hash(token)
    listing = client.get("/v1/admin/enrollment-tokens", headers=admin_headers)
    assert token not in listing.text
    assert listing.json()["tokens"][0]["token_id"] == record.token_id


def test_a_token_is_single_use(client: TestClient, admin_headers: dict[str, str]) -> None:
    token = _token(client, admin_headers)
    assert _enroll(client, token, Device("dev-1")).status_code == 201
    again = _enroll(client, token, Device("dev-2"))
    assert (again.status_code, again.json()) == (401, UNAUTHORIZED)


def test_an_expired_token_is_refused(
    client: TestClient, admin_headers: dict[str, str], clock: MutableClock
) -> None:
    token = _token(client, admin_headers, expires_minutes=10)
    clock.advance(minutes=10)
    answer = _enroll(client, token, Device("dev-1"))
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)


def test_a_token_still_valid_a_moment_before_expiry_works(
    client: TestClient, admin_headers: dict[str, str], clock: MutableClock
) -> None:
    token = _token(client, admin_headers, expires_minutes=10)
    clock.advance(minutes=9, seconds=59)
    assert _enroll(client, token, Device("dev-1")).status_code == 201


def test_an_unknown_token_is_refused_like_a_used_one(client: TestClient) -> None:
    answer = _enroll(client, "ovt_enroll_never-issued", Device("dev-1"))
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)


def test_a_taken_device_id_is_a_conflict_and_keeps_the_token(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll
) -> None:
    enroll("dev-1")
    token = _token(client, admin_headers)
    answer = _enroll(client, token, Device("dev-1"))
    assert answer.status_code == 409
    assert answer.json()["error"] == "device_exists"
    assert _enroll(client, token, Device("dev-2")).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"token": "t", "device_id": "bad id with spaces", "public_key": "A" * 43 + "="},
        {"token": "t", "device_id": "dev-1", "public_key": "not base64!"},
        {"token": "t", "device_id": "dev-1", "public_key": "AAAA"},  # 3 bytes, not 32
        {"token": "t", "device_id": "dev-1"},
        {"token": 5, "device_id": "dev-1", "public_key": "A" * 43 + "="},
        {"token": "t", "device_id": "dev-1", "public_key": "A" * 43 + "=", "extra": 1},
        [],
    ],
    ids=["bad-id", "bad-base64", "short-key", "no-key", "number-token", "extra-field", "list"],
)
def test_a_malformed_enrollment_is_422(client: TestClient, body: Any) -> None:
    answer = client.post("/v1/enroll", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"


def test_enrollment_tokens_need_an_admin(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer ovt_admin_wrong"}, {"Authorization": "Basic x"}):
        answer = client.post(
            "/v1/admin/enrollment-tokens",
            json={"tenant": "example-corp", "group": "office"},
            headers=headers,
        )
        assert answer.status_code == 401
        assert answer.json() == {"error": "unauthorized", "detail": "authentication failed"}
        assert answer.headers["www-authenticate"] == "Bearer"


def test_token_creation_is_audited_with_the_admins_name(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _token(client, admin_headers)
    events = client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
    created = [e for e in events if e["action"] == "enrollment_token.created"]
    assert created[0]["actor"] == "admin:alice"
    assert created[0]["detail"] == {
        "tenant": "example-corp",
        "group": "office",
        "expires_minutes": 60,
    }
