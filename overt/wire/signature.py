"""The request signature (version 1): how an enrolled agent proves who sent a request.

This module owns the four ``Overt-*`` headers and the canonical request
they sign (method, target, device id, time, nonce and the body's hash):
``sign_request`` (agent), ``claimed_device`` and ``verify_request``
(collector). Pure functions of bytes, keys and time; no I/O. The replay
memory (a nonce seen twice) is the collector's, not this module's.

docs/FORMATS.md ("Request signature") specifies the headers and the
canonical request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DEVICE_HEADER = "Overt-Device"
TIMESTAMP_HEADER = "Overt-Timestamp"
NONCE_HEADER = "Overt-Nonce"
SIGNATURE_HEADER = "Overt-Signature"

#: How far a request's timestamp may be from the collector's clock.
MAX_SKEW_MS = 5 * 60 * 1000
_CONTEXT = "overt-request-v1"


class RequestAuthError(Exception):
    """A request's device signature headers are missing, malformed, stale or wrong."""


def canonical_request(
    method: str, target: str, device_id: str, timestamp_ms: int, nonce: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    fields = (_CONTEXT, method.upper(), target, device_id, str(timestamp_ms), nonce, digest)
    return "\n".join(fields).encode("utf-8")


def sign_request(
    key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    target: str,
    body: bytes,
    now_ms: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request."""
    nonce = nonce or base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    signature = key.sign(canonical_request(method, target, device_id, now_ms, nonce, body))
    return {
        DEVICE_HEADER: device_id,
        TIMESTAMP_HEADER: str(now_ms),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
    }


def claimed_device(headers: Mapping[str, str]) -> str:
    """The device id a request claims (unverified), for looking up its key."""
    device_id = headers.get(DEVICE_HEADER) or headers.get(DEVICE_HEADER.lower())
    if not device_id or len(device_id) > 128:
        raise RequestAuthError("missing or oversized device header")
    return device_id


def verify_request(
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    device_key: Ed25519PublicKey,
    now_ms: int,
) -> tuple[str, str]:
    """Check a request's signature and freshness; return (device id, nonce).

    ``headers`` may use any case (pass Starlette's case-insensitive headers or
    a plain dict). Raises :class:`RequestAuthError` with the reason; callers
    answer every reason with the same 401.
    """

    def get(name: str) -> str:
        value = headers.get(name) or headers.get(name.lower())
        if not value:
            raise RequestAuthError(f"missing {name} header")
        return value

    device_id = claimed_device(headers)
    timestamp_text = get(TIMESTAMP_HEADER)
    nonce = get(NONCE_HEADER)
    # isdigit() alone admits "²" and other non-ASCII digits that int() refuses.
    if not (timestamp_text.isascii() and timestamp_text.isdigit()) or len(timestamp_text) > 16:
        raise RequestAuthError("malformed timestamp")
    timestamp_ms = int(timestamp_text)
    if abs(now_ms - timestamp_ms) > MAX_SKEW_MS:
        raise RequestAuthError("timestamp outside the accepted window")
    if not 16 <= len(nonce) <= 64:
        raise RequestAuthError("malformed nonce")
    try:
        signature = base64.b64decode(get(SIGNATURE_HEADER), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestAuthError("malformed signature") from exc
    message = canonical_request(method, target, device_id, timestamp_ms, nonce, body)
    try:
        device_key.verify(signature, message)
    except InvalidSignature as exc:
        raise RequestAuthError("signature does not verify") from exc
    return device_id, nonce
