"""Consent answers to the audit log; erasure of a device's own batches in a time range."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from collector.blobs import segment_name
from collector.config import CollectorConfig
from collector.service import CollectorService
from collector.store.sqlite import BLOB_DIR

from ._build import header_doc
from .conftest import Enroll, Upload

DeviceCall = Callable[..., httpx.Response]


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_a_consent_answer_is_recorded_in_the_audit_log(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    device = enroll()
    for decision in ("accepted", "declined"):
        body = _json({"policy_version": 3, "decision": decision, "at_ms": 1_790_000_000_000})
        answer = device_call(device, "POST", "/v1/consent", body)
        assert (answer.status_code, answer.json()) == (201, {"status": "recorded"})
    events = client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
    assert [(e["action"], e["actor"], e["detail"]["policy_version"]) for e in events[:2]] == [
        ("consent.declined", f"device:{device.device_id}", 3),
        ("consent.accepted", f"device:{device.device_id}", 3),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"policy_version": 3, "decision": "maybe", "at_ms": 1},
        {"policy_version": 0, "decision": "accepted", "at_ms": 1},
        {"policy_version": 3, "decision": "accepted", "at_ms": -1},
        {"policy_version": 3, "decision": "accepted"},
    ],
)
def test_a_malformed_consent_answer_is_422(
    enroll: Enroll, device_call: DeviceCall, body: dict[str, Any]
) -> None:
    assert device_call(enroll(), "POST", "/v1/consent", _json(body)).status_code == 422


def _range(first_seq: int, last_seq: int) -> dict[str, int]:
    """A time range overlapping exactly batches first_seq..last_seq of ``header_doc``."""
    return {
        "start_ms": header_doc("d", first_seq, 0)["start_ms"] + 10,
        "end_ms": header_doc("d", last_seq, 0)["start_ms"] + 20,
    }


def test_erasure_deletes_the_devices_batches_in_the_range_and_nothing_else(
    client: TestClient,
    admin_headers: dict[str, str],
    enroll: Enroll,
    upload: Upload,
    device_call: DeviceCall,
    service: CollectorService,
    config: CollectorConfig,
) -> None:
    alice, bob = enroll(), enroll()
    sealed = {seq: alice.sealed(seq) for seq in range(1, 6)}
    for data in sealed.values():
        upload(alice, data)
    upload(bob, bob.sealed(3))

    body = _json({**_range(2, 3), "reason": "I opened a private document"})
    answer = device_call(alice, "POST", "/v1/erasure", body)
    assert (answer.status_code, answer.json()) == (200, {"deleted": 2})

    assert [b.seq for b in service.storage.iter_batches(alice.device_id)] == [1, 4, 5]
    assert service.storage.count_batches(bob.device_id) == 1
    # The ciphertext itself is gone from the blob store, not only the rows.
    blobs = config.storage.data_dir.joinpath(*BLOB_DIR, segment_name(1)).read_bytes()
    assert sealed[2] not in blobs
    assert sealed[3] not in blobs
    assert sealed[4] in blobs
    devices = {
        d["device_id"]: d
        for d in client.get("/v1/admin/devices", headers=admin_headers).json()["devices"]
    }
    assert devices[alice.device_id]["batches"] == 3
    [event] = [
        e
        for e in client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
        if e["action"] == "erasure"
    ]
    assert (event["actor"], event["subject"]) == (f"device:{alice.device_id}", alice.device_id)
    assert event["detail"]["deleted"] == 2
    assert event["detail"]["reason"] == "I opened a private document"


def test_an_erasure_that_matches_nothing_still_leaves_a_record(
    client: TestClient, admin_headers: dict[str, str], enroll: Enroll, device_call: DeviceCall
) -> None:
    device = enroll()
    answer = device_call(device, "POST", "/v1/erasure", _json({"start_ms": 0, "end_ms": 10}))
    assert answer.json() == {"deleted": 0}
    events = client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
    assert events[0]["action"] == "erasure"


def test_an_erased_batch_uploaded_again_is_stored_again(
    enroll: Enroll, upload: Upload, device_call: DeviceCall
) -> None:
    device = enroll()
    sealed = device.sealed(1)
    upload(device, sealed)
    erased = device_call(device, "POST", "/v1/erasure", _json(_range(1, 1)))
    assert erased.json() == {"deleted": 1}
    assert upload(device, sealed).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"start_ms": -1, "end_ms": 5},
        {"start_ms": 0.5, "end_ms": 5},
        {"start_ms": 0, "end_ms": 2**63},
        {"start_ms": "0", "end_ms": 5},
        {"end_ms": 5},
    ],
)
def test_a_malformed_erasure_is_422_and_deletes_nothing(
    enroll: Enroll,
    upload: Upload,
    device_call: DeviceCall,
    service: CollectorService,
    body: dict[str, Any],
) -> None:
    device = enroll()
    upload(device, device.sealed(1))
    assert device_call(device, "POST", "/v1/erasure", _json(body)).status_code == 422
    assert service.storage.count_batches() == 1


def test_an_inverted_range_is_empty_and_deletes_nothing(
    enroll: Enroll, upload: Upload, device_call: DeviceCall, service: CollectorService
) -> None:
    # The schema cannot say end_ms >= start_ms, so the server does not refuse it either.
    device = enroll()
    upload(device, device.sealed(1))
    erased = device_call(device, "POST", "/v1/erasure", _json({"start_ms": 10**15, "end_ms": 5}))
    assert erased.status_code == 200
    assert erased.json() == {"deleted": 0}
    assert service.storage.count_batches() == 1


def test_an_integer_valued_float_is_an_integer(
    enroll: Enroll, upload: Upload, device_call: DeviceCall, service: CollectorService
) -> None:
    device = enroll()
    upload(device, device.sealed(1))
    body = b'{"start_ms": 0.0, "end_ms": 4e18}'
    assert device_call(device, "POST", "/v1/erasure", body).json() == {"deleted": 1}


def test_erasure_needs_the_devices_own_signature(
    client: TestClient, enroll: Enroll, upload: Upload, service: CollectorService
) -> None:
    device = enroll()
    upload(device, device.sealed(1))
    answer = client.post("/v1/erasure", content=_json({"start_ms": 0, "end_ms": 2**62}))
    assert answer.status_code == 401
    assert service.storage.count_batches() == 1
