"""Batch upload (``POST /v1/batches``): stored once, duplicates, conflicts, refusals.

Every refusal also checks that nothing was stored. The 413 of a body that is
never sent is tested against a real process in ``test_process.py``.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from collector.api import create_app
from collector.config import CollectorConfig, Limits, StorageConfig
from collector.service import CollectorService
from overt.wire.sealed import MAGIC, MAX_SEALED_BYTES
from overt.wire.signature import MAX_SKEW_MS
from policies.keys import generate_private_key

from ._build import GROUP, TENANT, Device, MutableClock
from .conftest import Enroll, Upload

UNAUTHORIZED = {"error": "unauthorized", "detail": "authentication failed"}


def test_a_batch_is_stored_once_and_acknowledged(
    enroll: Enroll, upload: Upload, service: CollectorService
) -> None:
    device = enroll()
    sealed = device.sealed(1)
    answer = upload(device, sealed)
    assert answer.status_code == 201
    assert answer.json() == {"status": "stored", "seq": 1, "batch_id": f"{device.device_id}-b1"}
    stored = service.storage.get_batch(device.device_id, 1)
    assert stored is not None
    assert stored.sealed == sealed
    assert stored.header["device_id"] == device.device_id
    assert service.storage.count_batches() == 1


def test_an_identical_resend_is_acknowledged_as_a_duplicate_and_stored_once(
    enroll: Enroll, upload: Upload, service: CollectorService
) -> None:
    device = enroll()
    sealed = device.sealed(1)
    upload(device, sealed)
    again = upload(device, sealed)  # a new request (new nonce), the same batch
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "seq": 1, "batch_id": f"{device.device_id}-b1"}
    assert service.storage.count_batches() == 1


def test_the_same_seq_with_other_content_is_a_409_and_an_audit_alert(
    client: TestClient,
    enroll: Enroll,
    upload: Upload,
    service: CollectorService,
    admin_headers: dict[str, str],
) -> None:
    device = enroll()
    first = device.sealed(1)
    upload(device, first)
    answer = upload(device, device.sealed(1, b"other events entirely" * 10))
    assert answer.status_code == 409
    assert answer.json()["error"] == "sequence_conflict"
    assert service.storage.get_batch(device.device_id, 1).sealed == first  # type: ignore[union-attr]
    events = client.get("/v1/admin/audit", headers=admin_headers).json()["events"]
    alert = events[0]
    assert (alert["action"], alert["actor"], alert["subject"]) == (
        "batch.sequence_conflict",
        f"device:{device.device_id}",
        device.device_id,
    )
    assert alert["detail"]["alert"] is True
    assert alert["detail"]["seq"] == 1


def test_storing_updates_what_the_admin_sees_of_the_device(
    client: TestClient, enroll: Enroll, upload: Upload, admin_headers: dict[str, str]
) -> None:
    device = enroll()
    sizes = 0
    for seq in (1, 2, 3):
        sealed = device.sealed(seq, policy_version=7)
        sizes += len(sealed)
        upload(device, sealed)
    [row] = client.get("/v1/admin/devices", headers=admin_headers).json()["devices"]
    assert (row["batches"], row["bytes"], row["policy_version"]) == (3, sizes, 7)
    assert row["last_seen"] == "2026-11-22T12:00:00.000Z"


# ---------------------------------------------------------------- 401


Forge = Callable[[Device, bytes, int], dict[str, str | bytes]]


def _signed_by_stranger(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(Device(device.device_id).sign("POST", "/v1/batches", body, now))


def _stale(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(device.sign("POST", "/v1/batches", body, now - MAX_SKEW_MS - 1))


def _future(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(device.sign("POST", "/v1/batches", body, now + MAX_SKEW_MS + 1))


def _for_other_body(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(device.sign("POST", "/v1/batches", body + b"x", now))


def _for_other_path(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(device.sign("POST", "/v1/batches?x=1", body, now))


def _unknown_device(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return dict(Device("dev-never-enrolled").sign("POST", "/v1/batches", body, now))


def _no_headers(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    return {}


def _superscript_timestamp(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    headers: dict[str, str | bytes] = dict(device.sign("POST", "/v1/batches", body, now))
    headers["Overt-Timestamp"] = "\xb2".encode("latin-1")  # "²": isdigit() but not int()
    return headers


def _garbage_signature(device: Device, body: bytes, now: int) -> dict[str, str | bytes]:
    headers: dict[str, str | bytes] = dict(device.sign("POST", "/v1/batches", body, now))
    headers["Overt-Signature"] = "not base64 at all!"
    return headers


FORGERIES: dict[str, Forge] = {
    "forged signature": _signed_by_stranger,
    "stale timestamp": _stale,
    "future timestamp": _future,
    "signature over another body": _for_other_body,
    "signature for another target": _for_other_path,
    "unknown device": _unknown_device,
    "no signature headers": _no_headers,
    "non-ASCII digit timestamp": _superscript_timestamp,
    "garbage signature": _garbage_signature,
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_every_authentication_failure_is_the_same_401_and_stores_nothing(
    case: str,
    client: TestClient,
    enroll: Enroll,
    clock: MutableClock,
    service: CollectorService,
) -> None:
    device = enroll()
    sealed = device.sealed(1)
    headers = FORGERIES[case](device, sealed, clock.ms())
    answer = client.post("/v1/batches", content=sealed, headers=headers)
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)
    assert service.storage.count_batches() == 0


def test_a_replayed_request_is_the_same_401(
    client: TestClient, enroll: Enroll, clock: MutableClock, service: CollectorService
) -> None:
    device = enroll()
    sealed = device.sealed(1)
    headers = device.sign("POST", "/v1/batches", sealed, clock.ms())
    assert client.post("/v1/batches", content=sealed, headers=headers).status_code == 201
    clock.advance(seconds=30)
    replay = client.post("/v1/batches", content=sealed, headers=headers)
    assert (replay.status_code, replay.json()) == (401, UNAUTHORIZED)


def test_a_revoked_device_gets_the_same_401(
    client: TestClient,
    enroll: Enroll,
    upload: Upload,
    admin_headers: dict[str, str],
    service: CollectorService,
) -> None:
    device = enroll()
    assert upload(device, device.sealed(1)).status_code == 201
    revoked = client.post(f"/v1/admin/devices/{device.device_id}/revoke", headers=admin_headers)
    assert revoked.status_code == 200
    answer = upload(device, device.sealed(2))
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)
    assert service.storage.count_batches() == 1


# ---------------------------------------------------------------- 422


def _nested_header_batch(device: Device) -> bytes:
    header = b"[" * 50_000 + b"]" * 50_000  # under the header limit, deeper than any parser
    return MAGIC + struct.pack(">I", len(header)) + header + bytes(200)


def _huge_header_length(device: Device) -> bytes:
    return MAGIC + struct.pack(">I", 2**32 - 1) + bytes(200)


def _gzip_bomb(device: Device) -> bytes:
    return gzip.compress(bytes(50 * 2**20), compresslevel=9)  # 50 MiB of zeros in ~50 KB


def _header_for_another_device(device: Device) -> bytes:
    return device.sealed(1, device_id="dev-someone-else")


def _signed_by_another_devices_key(device: Device) -> bytes:
    return device.sealed(1, signer=generate_private_key())


def _bad_header_json(device: Device) -> bytes:
    header = b'{"format": 1, "device_id": '
    return MAGIC + struct.pack(">I", len(header)) + header + bytes(200)


BAD_BATCHES: dict[str, tuple[Callable[[Device], bytes], str]] = {
    "garbage": (lambda d: b"this is not a sealed batch", "malformed_batch"),
    "empty": (lambda d: b"", "malformed_batch"),
    "compression bomb": (_gzip_bomb, "malformed_batch"),
    "deeply nested header": (_nested_header_batch, "malformed_batch"),
    "header length past the end": (_huge_header_length, "malformed_batch"),
    "truncated header JSON": (_bad_header_json, "malformed_batch"),
    "header names another device": (_header_for_another_device, "wrong_device"),
    "batch signed by another key": (_signed_by_another_devices_key, "bad_batch_signature"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_bad_batch_from_an_authenticated_device_is_422_and_stores_nothing(
    case: str, enroll: Enroll, upload: Upload, service: CollectorService
) -> None:
    device = enroll()
    build, code = BAD_BATCHES[case]
    answer = upload(device, build(device), **{"Content-Encoding": "gzip"})
    assert answer.status_code == 422
    assert answer.json()["error"] == code
    assert service.storage.count_batches() == 0


def test_a_batch_another_enrolled_device_signed_is_refused(
    enroll: Enroll, upload: Upload, service: CollectorService
) -> None:
    alice, bob = enroll(), enroll()
    # Bob authenticates the request, but the batch inside is Alice's, signed by her.
    answer = upload(bob, alice.sealed(1))
    assert (answer.status_code, answer.json()["error"]) == (422, "wrong_device")
    # Bob claims to be Alice in the header and signs the batch himself.
    forged = bob.sealed(1, device_id=alice.device_id)
    answer = upload(alice.__class__(alice.device_id, key=bob.key), forged)
    assert answer.status_code == 401
    assert service.storage.count_batches() == 0


# ---------------------------------------------------------------- 413


@pytest.fixture
def small_limit_client(tmp_path: Path, config: CollectorConfig) -> Iterator[TestClient]:
    small = replace(
        config,
        storage=StorageConfig(data_dir=tmp_path / "small"),
        limits=Limits(sealed_batch_bytes=4096),
    )
    app = create_app(small)
    with TestClient(app, base_url="http://collector.test") as client:
        yield client


def test_a_declared_length_over_the_limit_is_413_before_reading(
    small_limit_client: TestClient,
) -> None:
    device = Device("dev-x")  # not even enrolled: the size is checked first
    answer = small_limit_client.post(
        "/v1/batches", content=b"x" * 5000, headers=device.sign("POST", "/v1/batches", b"", 0)
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"
    assert answer.headers["connection"] == "close"


def _enrolled_on(client: TestClient, device_id: str) -> Device:
    service: CollectorService = client.app.state.service  # type: ignore[attr-defined]
    device = Device(device_id)
    token = service.accounts.create_enrollment_token(TENANT, GROUP, 60, "cli:test").token
    service.accounts.enroll(token, device.device_id, device.public_b64, "h")
    return device


def _chunks() -> Iterator[bytes]:
    for _ in range(100):
        yield b"x" * 1000


def test_a_chunked_body_is_cut_off_at_the_limit(
    small_limit_client: TestClient, clock: MutableClock
) -> None:
    # That the rest is never read is shown on a real socket in test_process.py.
    device = _enrolled_on(small_limit_client, "dev-chunked")
    # Signed over an empty body: the headers admit it, the body never gets as far as the check.
    headers = device.sign("POST", "/v1/batches", b"", clock.ms())
    answer = small_limit_client.post("/v1/batches", content=_chunks(), headers=headers)
    assert answer.status_code == 413
    assert "content-length" not in {k.lower() for k in answer.request.headers}


def test_a_strangers_chunked_body_is_refused_before_it_is_read(
    small_limit_client: TestClient, clock: MutableClock
) -> None:
    stranger = Device("dev-never-enrolled")
    headers = stranger.sign("POST", "/v1/batches", b"", clock.ms())
    answer = small_limit_client.post("/v1/batches", content=_chunks(), headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthorized", "detail": "authentication failed"}


def test_the_default_limit_is_the_sealed_format_limit(client: TestClient) -> None:
    answer = client.post(
        "/v1/batches", content=b"", headers={"Content-Length": str(MAX_SEALED_BYTES + 1)}
    )
    assert answer.status_code == 413


def test_an_unreadable_content_length_is_422(client: TestClient) -> None:
    answer = client.post("/v1/batches", content=b"abc", headers={"Content-Length": "three"})
    assert answer.status_code in {400, 422}


def test_the_ack_is_json(enroll: Enroll, upload: Upload) -> None:
    device = enroll()
    answer = upload(device, device.sealed(1))
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.content)["status"] == "stored"
