"""Exemption requests: ask, approve (a grant the agent will accept), deny, audit."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from collector.api import create_app
from collector.config import CollectorConfig, StorageConfig
from policies.errors import ScopeMismatchError
from policies.model import Policy
from policies.verify import parse_policy_payload, verify_grant
from tests.policies._build import KEYS, policy_doc, sign

from ._build import Device, MutableClock
from .conftest import Enroll

DeviceCall = Callable[..., httpx.Response]
POLICY = sign(policy_doc(1), ["A"])


def _policy() -> Policy:
    return parse_policy_payload(json.dumps(policy_doc(1), indent=2).encode())


@pytest.fixture
def with_policy(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert client.put("/v1/admin/policy", content=POLICY, headers=admin_headers).status_code == 201


def _ask(device_call: DeviceCall, device: Device, **body: Any) -> str:
    doc = {"category": "battery", "reason": "my laptop is rarely on a charger", "duration_days": 14}
    doc.update(body)
    answer = device_call(device, "POST", "/v1/exemptions", json.dumps(doc).encode())
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending"
    request_id: str = answer.json()["request_id"]
    return request_id


def _audit(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get("/v1/admin/audit", headers=admin).json()["events"]
    return events


def test_a_request_waits_for_an_admin(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    device = enroll()
    request_id = _ask(device_call, device)
    pending = client.get("/v1/admin/exemptions?status=pending", headers=admin_headers).json()
    [row] = pending["requests"]
    assert (row["request_id"], row["device_id"], row["category"], row["status"]) == (
        request_id,
        device.device_id,
        "battery",
        "pending",
    )
    mine = device_call(device, "GET", "/v1/exemptions").json()["requests"]
    assert [r["status"] for r in mine] == ["pending"]
    devices = client.get("/v1/admin/devices", headers=admin_headers).json()["devices"]
    assert devices[0]["open_requests"] == 1


def test_approval_produces_a_grant_that_verifies_against_the_policy(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    clock: MutableClock,
    with_policy: None,
) -> None:
    device = enroll()
    request_id = _ask(device_call, device, category="sensitive", duration_days=30)
    approved = client.post(
        f"/v1/admin/exemptions/{request_id}/approve",
        json={"duration_days": 10},
        headers=admin_headers,
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["expires"] == "2026-12-02T12:00:00.000Z"

    grants = device_call(device, "GET", "/v1/grants").json()["grants"]
    [envelope] = [base64.b64decode(g) for g in grants]
    grant = verify_grant(envelope, _policy(), device.device_id, clock())
    assert (grant.grant_id, grant.request_id, grant.category.value) == (
        body["grant_id"],
        request_id,
        "sensitive",
    )
    with pytest.raises(ScopeMismatchError):
        verify_grant(envelope, _policy(), "dev-someone-else", clock())

    [mine] = device_call(device, "GET", "/v1/exemptions").json()["requests"]
    assert (mine["status"], mine["grant_expires"]) == ("approved", body["expires"])
    [event] = [e for e in _audit(client, admin_headers) if e["action"] == "exemption.approved"]
    assert (event["actor"], event["subject"], event["at"]) == (
        "admin:alice",
        request_id,
        "2026-11-22T12:00:00.000Z",
    )
    assert event["detail"]["grant_id"] == body["grant_id"]


def test_without_a_duration_the_grant_lasts_what_was_asked(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    with_policy: None,
) -> None:
    request_id = _ask(device_call, enroll(), duration_days=14)
    approved = client.post(f"/v1/admin/exemptions/{request_id}/approve", headers=admin_headers)
    assert approved.json()["expires"] == "2026-12-06T12:00:00.000Z"


def test_an_expiry_date_can_be_given_instead(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    with_policy: None,
) -> None:
    request_id = _ask(device_call, enroll())
    approved = client.post(
        f"/v1/admin/exemptions/{request_id}/approve",
        json={"expires_at": "2027-01-31T00:00:00Z"},
        headers=admin_headers,
    )
    assert approved.json()["expires"] == "2027-01-31T00:00:00.000Z"
    for bad in ({"expires_at": "2020-01-01T00:00:00Z"}, {"expires_at": "2027-01-31"}):
        other = _ask(device_call, enroll())
        refused = client.post(
            f"/v1/admin/exemptions/{other}/approve", json=bad, headers=admin_headers
        )
        assert refused.status_code == 422


def test_expired_grants_are_no_longer_served(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    clock: MutableClock,
    with_policy: None,
) -> None:
    device = enroll()
    request_id = _ask(device_call, device)
    client.post(
        f"/v1/admin/exemptions/{request_id}/approve",
        json={"duration_days": 1},
        headers=admin_headers,
    )
    assert len(device_call(device, "GET", "/v1/grants").json()["grants"]) == 1
    clock.advance(days=1)
    assert device_call(device, "GET", "/v1/grants").json()["grants"] == []


def test_a_request_is_decided_once(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    with_policy: None,
) -> None:
    request_id = _ask(device_call, enroll())
    assert client.post(
        f"/v1/admin/exemptions/{request_id}/approve", headers=admin_headers
    ).is_success
    for action, body in (("approve", {}), ("deny", {"reason": "changed my mind"})):
        again = client.post(
            f"/v1/admin/exemptions/{request_id}/{action}", json=body, headers=admin_headers
        )
        assert (again.status_code, again.json()["error"]) == (409, "already_decided")


def test_denial_carries_its_reason_to_the_employee(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    device = enroll()
    request_id = _ask(device_call, device)
    denied = client.post(
        f"/v1/admin/exemptions/{request_id}/deny",
        json={"reason": "battery exemptions need a manager's note"},
        headers=admin_headers,
    )
    assert denied.json() == {"request_id": request_id, "status": "denied"}
    [mine] = device_call(device, "GET", "/v1/exemptions").json()["requests"]
    assert (mine["status"], mine["decision_reason"]) == (
        "denied",
        "battery exemptions need a manager's note",
    )
    assert device_call(device, "GET", "/v1/grants").json()["grants"] == []
    [event] = [e for e in _audit(client, admin_headers) if e["action"] == "exemption.denied"]
    assert event["actor"] == "admin:alice"
    assert event["detail"]["reason"] == "battery exemptions need a manager's note"


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5}])
def test_a_denial_without_a_reason_is_refused(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    body: dict[str, Any],
) -> None:
    request_id = _ask(device_call, enroll())
    answer = client.post(
        f"/v1/admin/exemptions/{request_id}/deny", json=body, headers=admin_headers
    )
    assert answer.status_code == 422
    pending = client.get("/v1/admin/exemptions?status=pending", headers=admin_headers).json()
    assert [r["request_id"] for r in pending["requests"]] == [request_id]


def test_unknown_requests_are_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    for action, body in (("approve", {}), ("deny", {"reason": "no"})):
        answer = client.post(
            f"/v1/admin/exemptions/r-none/{action}", json=body, headers=admin_headers
        )
        assert answer.status_code == 404


@pytest.fixture
def client_with_grant_key(
    tmp_path: Path, config: CollectorConfig, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    key_name: str | None = request.param
    other = replace(
        config,
        storage=StorageConfig(data_dir=tmp_path / "other"),
        grant_key=None if key_name is None else KEYS[key_name],
    )
    with TestClient(create_app(other), base_url="http://collector.test") as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("client_with_grant_key", "category", "code"),
    [
        ("ADMIN_BATTERY", "sensitive", "grant_key_not_authorised"),
        ("ADMIN_UNLISTED", "battery", "grant_key_not_authorised"),
        (None, "battery", "no_grant_key"),
    ],
    indirect=["client_with_grant_key"],
    ids=["key-not-for-category", "key-not-listed", "no-key"],
)
def test_approval_is_refused_unless_the_policy_authorises_the_grant_key(
    client_with_grant_key: TestClient,
    clock: MutableClock,
    category: str,
    code: str,
) -> None:
    client = client_with_grant_key
    service = client.app.state.service  # type: ignore[attr-defined]
    admin = {"Authorization": f"Bearer {service.accounts.create_admin_token('alice', 'cli:test')}"}
    client.put("/v1/admin/policy", content=POLICY, headers=admin)
    token = service.accounts.create_enrollment_token("example-corp", "office", 60, "cli:test").token
    device = Device("dev-1")
    service.accounts.enroll(token, device.device_id, device.public_b64, "h")
    doc = json.dumps({"category": category, "reason": "r", "duration_days": 3}).encode()
    headers = device.sign("POST", "/v1/exemptions", doc, clock.ms())
    request_id = client.post("/v1/exemptions", content=doc, headers=headers).json()["request_id"]
    answer = client.post(f"/v1/admin/exemptions/{request_id}/approve", headers=admin)
    assert (answer.status_code, answer.json()["error"]) == (409, code)
    assert service.exemptions.get_exemption(request_id).status.value == "pending"
    assert service.storage.grants_for_device("dev-1", clock.ms()) == []


def test_approval_without_a_stored_policy_is_refused(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    request_id = _ask(device_call, enroll())
    answer = client.post(f"/v1/admin/exemptions/{request_id}/approve", headers=admin_headers)
    assert (answer.status_code, answer.json()["error"]) == (409, "no_policy")


@pytest.mark.parametrize(
    "body",
    [
        {"category": "holiday", "reason": "r", "duration_days": 3},
        {"category": "battery", "reason": "", "duration_days": 3},
        {"category": "battery", "reason": "r", "duration_days": 0},
        {"category": "battery", "reason": "r", "duration_days": "3"},
        {"category": "battery", "reason": "r" * 2001, "duration_days": 3},
        {"category": "battery", "reason": "r"},
    ],
)
def test_a_malformed_request_is_422(
    enroll: Enroll, device_call: DeviceCall, body: dict[str, Any]
) -> None:
    answer = device_call(enroll(), "POST", "/v1/exemptions", json.dumps(body).encode())
    assert answer.status_code == 422


def test_the_request_is_audited_without_its_reason_in_the_logs(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    device_call: DeviceCall,
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = enroll()
    with caplog.at_level("DEBUG"):
        request_id = _ask(device_call, device, reason="a very private reason")
    [event] = [e for e in _audit(client, admin_headers) if e["action"] == "exemption.requested"]
    assert (event["actor"], event["subject"]) == (f"device:{device.device_id}", request_id)
    assert "a very private reason" not in caplog.text


def test_audit_times_come_from_the_collectors_clock(
    client: TestClient, admin_headers: dict[str, str], clock: MutableClock
) -> None:
    clock.value = datetime.fromisoformat("2027-03-04T05:06:07+00:00")
    client.post(
        "/v1/admin/enrollment-tokens",
        json={"tenant": "example-corp", "group": "office"},
        headers=admin_headers,
    )
    assert _audit(client, admin_headers)[0]["at"] == "2027-03-04T05:06:07.000Z"
