"""The agent's calls to its collector, other than batch upload: enrollment,
exemption requests, consent records.

This module owns the client side of those endpoints of docs/PROTOCOL.md and
the signing of every request with the device key (``overt.wire.signature``).
It takes an injected ``httpx.Client`` whose ``base_url`` is the collector, so
tests hand it an ASGI app or a ``MockTransport``. It never retries on its own:
these calls are made by a person (through the tray or the CLI) who is told
at once when the collector cannot be reached. Batch upload, with its backoff
and dead-lettering, is ``agent.sinks.upload``.

Errors: :class:`RemoteError` (with the HTTP status, or None when the
collector could not be reached); :class:`EnrollmentError` for enrollment.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.local_state import Enrollment, LocalState
from agent.sinks.upload import RequestSigner
from policies.keys import raw_public_bytes

log = logging.getLogger(__name__)


class RemoteError(Exception):
    """The collector refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EnrollmentError(RemoteError):
    """Enrollment was refused (bad, used or expired token; device id taken)."""


def _detail(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(doc, dict):
        detail = doc.get("detail") or doc.get("error")
        if isinstance(detail, str):
            return f"HTTP {response.status_code}: {detail}"
    return f"HTTP {response.status_code}"


class CollectorClient:
    """Signed requests to the collector for one enrolled device."""

    def __init__(
        self,
        client: httpx.Client,
        device_id: str,
        key: Ed25519PrivateKey,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._signer = RequestSigner(device_id, key)
        self._clock = clock

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request signed with the device key; transport errors → RemoteError."""
        signed = self._signer.headers(method, path, body, int(self._clock() * 1000))
        all_headers = {**(headers or {}), **signed}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        try:
            return self._client.request(method, path, content=body, headers=all_headers)
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"the collector at {self.base_url} cannot be reached: {type(exc).__name__}"
            ) from exc

    def _json(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        body = b"" if doc is None else json.dumps(doc).encode()
        content_type = None if doc is None else "application/json"
        response = self.request(method, path, body=body, content_type=content_type)
        if response.status_code >= 400:
            raise RemoteError(
                f"the collector refused {method} {path}: {_detail(response)}",
                response.status_code,
            )
        try:
            result = response.json()
        except ValueError as exc:
            raise RemoteError(f"the collector answered {path} with no JSON") from exc
        if not isinstance(result, dict):
            raise RemoteError(f"the collector answered {path} with unexpected JSON")
        return result

    def request_exemption(self, category: str, reason: str, duration_days: int) -> dict[str, Any]:
        doc = {"category": category, "reason": reason, "duration_days": duration_days}
        return self._json("POST", "/v1/exemptions", doc)

    def exemptions(self) -> list[dict[str, Any]]:
        requests = self._json("GET", "/v1/exemptions").get("requests")
        if not isinstance(requests, list):
            raise RemoteError("the collector's exemption list is malformed")
        return [r for r in requests if isinstance(r, dict)]

    def record_consent(self, policy_version: int, accepted: bool, at: float) -> None:
        doc = {
            "policy_version": policy_version,
            "decision": "accepted" if accepted else "declined",
            "at_ms": int(at * 1000),
        }
        self._json("POST", "/v1/consent", doc)


def enroll(
    client: httpx.Client,
    local: LocalState,
    token: str,
    clock: Callable[[], float],
) -> Enrollment:
    """Register this device's key with the collector using a single-use token.

    Creates the device key if there is none. On success the enrollment is
    saved in the state directory; on failure nothing is written except the
    key (which a retry reuses).
    """
    key = local.device_key()
    device_id = local.device_id()
    doc = {
        "token": token,
        "device_id": device_id,
        "public_key": base64.b64encode(raw_public_bytes(key.public_key())).decode(),
        "hostname": socket.gethostname()[:128],
    }
    try:
        response = client.post("/v1/enroll", json=doc)
    except httpx.HTTPError as exc:
        raise EnrollmentError(
            f"the collector at {client.base_url} cannot be reached: {type(exc).__name__}"
        ) from exc
    if response.status_code == 401:
        raise EnrollmentError(
            "the enrollment token was refused (unknown, already used or expired); "
            "ask your admin for a new one",
            401,
        )
    if response.status_code == 409:
        raise EnrollmentError("this device id is already enrolled at the collector", 409)
    if response.status_code != 201:
        raise EnrollmentError(f"enrollment failed: {_detail(response)}", response.status_code)
    try:
        answer = response.json()
        enrollment = Enrollment(
            collector=str(client.base_url).rstrip("/"),
            device_id=device_id,
            tenant=str(answer["tenant"]),
            group=str(answer["group"]),
            enrolled_at=clock(),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrollmentError("the collector's enrollment answer is malformed") from exc
    local.save_enrollment(enrollment)
    log.info(
        "enrolled device %s (tenant %s, group %s)", device_id, enrollment.tenant, enrollment.group
    )
    return enrollment
