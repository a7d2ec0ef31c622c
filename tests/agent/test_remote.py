"""Enrollment, signed requests and policy sync against a scripted collector.

The real collector is exercised in tests/e2e; here ``httpx.MockTransport``
plays it, so each refusal and each malformed answer can be provoked.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.local_state import LocalState, LocalStateError
from agent.policy_sync import PolicySync
from agent.remote import CollectorClient, EnrollmentError, RemoteError, enroll
from agent.trust import TrustHolder
from overt.wire.sealed import ed25519_from_b64
from overt.wire.signature import verify_request
from policies.keys import generate_private_key, public_key_model
from policies.model import Category, Grant, SignerSet
from policies.verify import DeviceScope, sign_grant, sign_policy

NOW = datetime.now(UTC).replace(microsecond=0)
IT_KEY = generate_private_key()
ADMIN_KEY = generate_private_key()
TRUSTED = SignerSet(keys=(public_key_model(IT_KEY.public_key()),), threshold=1)
DEVICE = DeviceScope(tenant="acme", group="office")
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "examples" / "test-workapp.json"


def clock() -> float:
    return NOW.timestamp()


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def policy_bytes(version: int, **changes: Any) -> bytes:
    doc = json.loads(EXAMPLE.read_text())
    doc.update(
        version=version,
        issued_at=stamp(NOW - timedelta(hours=1)),
        expires=stamp(NOW + timedelta(days=7)),
        scope={"tenant": "acme", "device_groups": ["office"]},
        grant_signers=[
            {**public_key_model(ADMIN_KEY.public_key()).model_dump(), "categories": ["other"]}
        ],
    )
    doc.update(changes)
    return sign_policy(json.dumps(doc).encode(), [IT_KEY])


def grant_bytes(device_id: str) -> bytes:
    grant = Grant(
        grant_id="g1",
        request_id="r1",
        tenant="acme",
        device_id=device_id,
        category=Category.OTHER,
        issued_at=NOW - timedelta(minutes=1),
        expires=NOW + timedelta(days=1),
    )
    return sign_grant(grant, ADMIN_KEY)


def transport(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url="http://collector.test", transport=httpx.MockTransport(handler))


# ------------------------------------------------------------------ state


def test_device_key_is_created_once_with_owner_only_mode(tmp_path: Path) -> None:
    local = LocalState(tmp_path)
    first = local.device_key()
    mode = stat.S_IMODE(os.stat(tmp_path / "device.key").st_mode)
    assert mode == 0o600
    assert local.device_key().public_key() == first.public_key()


def test_a_damaged_device_key_is_reported_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "device.key").write_bytes(b"not a key")
    with pytest.raises(LocalStateError, match="not a PEM"):
        LocalState(tmp_path).device_key()
    assert (tmp_path / "device.key").read_bytes() == b"not a key"


# ------------------------------------------------------------- enrollment


def test_enroll_registers_the_device_key_and_saves_where(tmp_path: Path) -> None:
    local = LocalState(tmp_path)
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(
            201, json={"device_id": seen["device_id"], "tenant": "acme", "group": "office"}
        )

    enrollment = enroll(transport(handler), local, "tok-1", clock)
    assert seen["token"] == "tok-1"
    assert seen["device_id"] == local.device_id()
    key = ed25519_from_b64(seen["public_key"])
    assert key == local.device_key().public_key()
    assert enrollment.tenant == "acme"
    assert enrollment.group == "office"
    assert local.enrollment() == enrollment


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "token was refused"), (409, "already enrolled"), (500, "HTTP 500")],
)
def test_refused_enrollment_says_why_and_saves_nothing(
    tmp_path: Path, status: int, message: str
) -> None:
    local = LocalState(tmp_path)
    client = transport(lambda _: httpx.Response(status, json={"error": "x"}))
    with pytest.raises(EnrollmentError, match=message):
        enroll(client, local, "tok", clock)
    assert local.enrollment() is None


def test_enroll_with_no_collector_is_a_clear_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(EnrollmentError, match="cannot be reached"):
        enroll(transport(handler), LocalState(tmp_path), "tok", clock)


# ------------------------------------------------------- signed requests


def test_every_request_is_signed_by_the_device_key(tmp_path: Path) -> None:
    local = LocalState(tmp_path)
    key = local.device_key()
    checked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        device_id, _ = verify_request(
            request.headers,
            request.method,
            request.url.raw_path.decode(),
            request.content,
            key.public_key(),
            int(clock() * 1000),
        )
        checked.append(device_id)
        return httpx.Response(201, json={"request_id": "r1", "status": "pending"})

    remote = CollectorClient(transport(handler), local.device_id(), key, clock)
    assert remote.request_exemption("other", "on a slow line", 7)["status"] == "pending"
    assert checked == [local.device_id()]


def test_a_refusal_carries_the_status_and_the_collectors_words(tmp_path: Path) -> None:
    local = LocalState(tmp_path)
    client = transport(lambda _: httpx.Response(422, json={"detail": "unknown category"}))
    remote = CollectorClient(client, local.device_id(), local.device_key(), clock)
    with pytest.raises(RemoteError, match="unknown category") as caught:
        remote.request_exemption("nope", "x", 1)
    assert caught.value.status == 422


# ------------------------------------------------------------ policy sync


class FakeCollector:
    def __init__(self) -> None:
        self.policy: bytes | None = None
        self.grants: list[bytes] = []
        self.requests: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        etag_in = request.headers.get("If-None-Match")
        self.requests.append((request.url.path, etag_in))
        if request.url.path == "/v1/policy":
            if self.policy is None:
                return httpx.Response(404, json={"error": "no_policy"})
            etag = f'"{len(self.policy)}-{hash(self.policy) & 0xFFFF}"'
            if etag_in == etag:
                return httpx.Response(304)
            return httpx.Response(200, content=self.policy, headers={"ETag": etag})
        body = {"grants": [base64.b64encode(g).decode() for g in self.grants]}
        return httpx.Response(200, json=body)


def holder(local: LocalState) -> TrustHolder:
    return TrustHolder(local.trust, local, TRUSTED, DEVICE, clock)


def make_sync(tmp_path: Path, collector: FakeCollector) -> tuple[PolicySync, LocalState]:
    local = LocalState(tmp_path)
    remote = CollectorClient(transport(collector), local.device_id(), local.device_key(), clock)
    return PolicySync(remote, holder(local)), local


def test_a_new_policy_is_verified_and_stored_then_not_fetched_again(tmp_path: Path) -> None:
    collector = FakeCollector()
    sync, local = make_sync(tmp_path, collector)
    assert sync.sync(clock()).policy_changed is False  # 404: nothing yet
    collector.policy = policy_bytes(3)
    result = sync.sync(clock())
    assert result.policy_changed
    assert result.problem is None
    stored = local.trust.load()
    assert stored is not None
    assert stored.state.version == 3
    assert sync.sync(clock()).policy_changed is False
    assert collector.requests[-2][1] is not None  # the second fetch was conditional


def test_a_tampered_or_older_policy_from_the_collector_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    collector = FakeCollector()
    sync, _ = make_sync(tmp_path, collector)
    collector.policy = policy_bytes(3)
    sync.sync(clock())
    before = (tmp_path / "trust" / "state.json").read_bytes()
    collector.policy = policy_bytes(2)
    result = sync.sync(clock())
    assert not result.policy_changed
    assert result.problem
    assert "rollback" in result.problem
    signed = json.loads(policy_bytes(4))
    signed["payload"] = base64.b64encode(b'{"version": 4}').decode()
    collector.policy = json.dumps(signed).encode()
    result = sync.sync(clock())
    assert not result.policy_changed
    assert result.problem
    assert (tmp_path / "trust" / "state.json").read_bytes() == before


def test_grants_are_stored_when_they_change(tmp_path: Path) -> None:
    collector = FakeCollector()
    sync, local = make_sync(tmp_path, collector)
    collector.grants = [grant_bytes(local.device_id())]
    assert sync.sync(clock()).grants_changed
    assert local.grants() == collector.grants
    assert not sync.sync(clock()).grants_changed


def test_a_malformed_grant_list_changes_nothing(tmp_path: Path) -> None:
    local = LocalState(tmp_path)
    local.save_grants([b"old"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/grants":
            return httpx.Response(200, json={"grants": ["%%%"]})
        return httpx.Response(404)

    remote = CollectorClient(transport(handler), local.device_id(), local.device_key(), clock)
    result = PolicySync(remote, holder(local)).sync(clock())
    assert result.problem
    assert "malformed" in result.problem
    assert local.grants() == [b"old"]


def test_an_unreachable_collector_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    local = LocalState(tmp_path)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    remote = CollectorClient(transport(handler), local.device_id(), local.device_key(), clock)
    result = PolicySync(remote, holder(local)).sync(clock())
    assert result.problem
    assert "cannot be reached" in result.problem
