"""Signed policies in (``PUT /v1/admin/policy``) and out (``GET /v1/policy``), with ETags."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from starlette.testclient import TestClient

from policies.model import GRANT_PAYLOAD_TYPE
from tests.policies._build import NOW, policy_doc, sign, stamp

from .conftest import Enroll

DeviceCall = Callable[..., httpx.Response]


def _put(client: TestClient, admin: dict[str, str], data: bytes) -> httpx.Response:
    return client.put("/v1/admin/policy", content=data, headers=admin)


def test_a_stored_policy_is_served_byte_for_byte_with_an_etag(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    signed = sign(policy_doc(1), ["A"])
    stored = _put(client, admin_headers, signed)
    assert stored.status_code == 201
    assert stored.json() == {
        "status": "stored",
        "version": 1,
        "tenant": "example-corp",
        "groups": ["office"],
    }
    device = enroll()
    answer = device_call(device, "GET", "/v1/policy")
    assert answer.status_code == 200
    assert answer.content == signed
    etag = answer.headers["etag"]
    assert device_call(device, "GET", "/v1/policy", **{"If-None-Match": etag}).status_code == 304
    assert (
        device_call(device, "GET", "/v1/policy", **{"If-None-Match": f'W/{etag}, "x"'}).status_code
        == 304
    )
    assert device_call(device, "GET", "/v1/policy", **{"If-None-Match": '"old"'}).status_code == 200


def test_a_new_version_changes_what_is_served_and_its_etag(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    device = enroll()
    _put(client, admin_headers, sign(policy_doc(1), ["A"]))
    first = device_call(device, "GET", "/v1/policy")
    newer = sign(policy_doc(2), ["A"])
    _put(client, admin_headers, newer)
    second = device_call(device, "GET", "/v1/policy", **{"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200
    assert second.content == newer
    assert second.headers["etag"] != first.headers["etag"]


def test_the_identical_policy_again_is_unchanged_not_an_error(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    signed = sign(policy_doc(1), ["A"])
    _put(client, admin_headers, signed)
    again = _put(client, admin_headers, signed)
    assert (again.status_code, again.json()["status"]) == (200, "unchanged")


@pytest.mark.parametrize(
    ("version", "groups"),
    [(1, ["office"]), (2, ["office"]), (2, ["*"])],
    ids=["older", "same-version-other-bytes", "wildcard-same-version"],
)
def test_a_policy_not_newer_than_an_overlapping_one_is_409(
    client: TestClient, admin_headers: dict[str, str], version: int, groups: list[str]
) -> None:
    _put(client, admin_headers, sign(policy_doc(2), ["A"]))
    doc = policy_doc(version, scope={"tenant": "example-corp", "device_groups": groups})
    doc["notice"] = {"organisation": "Example Corp (changed)", "contact": "privacy@example.com"}
    answer = _put(client, admin_headers, sign(doc, ["A"]))
    assert (answer.status_code, answer.json()["error"]) == (409, "policy_version")


def _envelope_of(payload_type: str, payload: bytes) -> bytes:
    return json.dumps(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "00" * 32, "sig": base64.b64encode(bytes(64)).decode()}],
        }
    ).encode()


NOT_POLICIES = {
    "garbage": b"not json at all",
    "unsigned": json.dumps(
        {
            "payloadType": "application/vnd.overt.policy+json; version=1",
            "payload": base64.b64encode(json.dumps(policy_doc(1)).encode()).decode(),
            "signatures": [],
        }
    ).encode(),
    "a grant": _envelope_of(GRANT_PAYLOAD_TYPE, b"{}"),
    "an invalid policy": _envelope_of(
        "application/vnd.overt.policy+json; version=1", json.dumps({"version": 1}).encode()
    ),
    "expired": sign(
        policy_doc(1, issued_at=stamp(NOW - timedelta(days=40)), expires=stamp(NOW)), ["A"]
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_POLICIES))
def test_anything_but_a_signed_valid_policy_is_422(
    client: TestClient, admin_headers: dict[str, str], case: str
) -> None:
    answer = _put(client, admin_headers, NOT_POLICIES[case])
    assert answer.status_code == 422
    assert answer.json()["error"] in {"not_a_policy", "not_signed", "expired_policy"}
    events = client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
    assert "policy.stored" not in [e["action"] for e in events]


def test_a_device_gets_its_own_groups_policy_or_404(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    lab_policy = sign(
        policy_doc(3, scope={"tenant": "example-corp", "device_groups": ["lab"]}), ["A"]
    )
    _put(client, admin_headers, lab_policy)
    office, lab, other_tenant = enroll(), enroll(group="lab"), enroll(tenant="other-corp")
    assert device_call(lab, "GET", "/v1/policy").content == lab_policy
    for device in (office, other_tenant):
        answer = device_call(device, "GET", "/v1/policy")
        assert (answer.status_code, answer.json()["error"]) == (404, "no_policy")


def test_policy_and_grants_need_a_signed_request(client: TestClient) -> None:
    for path in ("/v1/policy", "/v1/grants", "/v1/exemptions"):
        answer = client.get(path)
        assert answer.status_code == 401
        assert answer.json() == {"error": "unauthorized", "detail": "authentication failed"}


def test_grants_are_served_with_an_etag(enroll: Enroll, device_call: DeviceCall) -> None:
    device = enroll()
    answer = device_call(device, "GET", "/v1/grants")
    assert answer.json() == {"grants": []}
    etag = answer.headers["etag"]
    assert device_call(device, "GET", "/v1/grants", **{"If-None-Match": etag}).status_code == 304
