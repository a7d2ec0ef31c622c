"""Who is calling: device request signatures and admin bearer tokens.

:class:`DeviceAuthenticator` checks a device request in two steps, so that
a request that cannot be genuine is refused before its body is read:

1. :meth:`~DeviceAuthenticator.claim` (headers only): the four ``Overt-*``
   headers are well formed, the timestamp is within ``MAX_SKEW_MS`` of the
   collector's clock, and the claimed device is enrolled and not revoked
   (:meth:`~DeviceAuthenticator.known_device`, cached for ``cache_ms``).
2. :meth:`~DeviceAuthenticator.verify` (once the body is in): the
   signature, with :func:`overt.wire.signature.verify_request`, against the
   key the device registered at enrollment, then the nonce, refused if the
   device already used it inside the accepted time window (the memory is the
   store's, :meth:`collector.store.protocols.NonceStore.claim_nonce`).

Every failure raises the same :class:`~collector.errors.UnauthorizedError`;
the reason is logged at debug level with the claimed device id, and never
sent back.

:class:`AdminAuthenticator` maps an ``Authorization: Bearer`` token to the
admin it was issued to. Nothing here holds HTTP objects: callers pass header
mappings and bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.config import Clock, to_ms
from collector.credentials import MAX_SECRET_CHARS, token_hash
from collector.errors import UnauthorizedError
from collector.store.protocols import AdminStore, DeviceStore, NonceStore
from collector.store.records import DeviceRecord
from overt.wire.sealed import SealedBatchError, ed25519_from_b64
from overt.wire.signature import (
    MAX_SKEW_MS,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestAuthError,
    claimed_device,
    verify_request,
)

logger = logging.getLogger(__name__)


class DeviceKeyStore(DeviceStore, NonceStore, Protocol):
    """What device authentication reads: the devices' keys, and the nonces seen."""


def device_actor(device_id: str) -> str:
    """How the audit log names a device acting for itself."""
    return f"device:{device_id}"


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device record with its public key ready to verify with."""

    record: DeviceRecord
    key: Ed25519PublicKey


class DeviceAuthenticator:
    """Authenticates device-signed requests; caches device keys for ``cache_ms``."""

    def __init__(self, storage: DeviceKeyStore, clock: Clock, cache_ms: int) -> None:
        self._storage = storage
        self._clock = clock
        self._cache_ms = cache_ms
        self._cache: dict[str, tuple[KnownDevice, int]] = {}
        self._lock = threading.Lock()

    def forget(self, device_id: str) -> None:
        """Drop a cached device (after it was revoked, say)."""
        with self._lock:
            self._cache.pop(device_id, None)

    def known_device(self, device_id: str, now_ms: int) -> KnownDevice | None:
        """The enrolled device (from the cache, else the store), or ``None``."""
        cached = self.cached(device_id, now_ms)
        if cached is not None:
            return cached
        record = self._storage.get_device(device_id)
        if record is None:
            return None
        try:
            known = KnownDevice(record, ed25519_from_b64(record.public_key))
        except SealedBatchError:
            logger.error("device %s has an unusable stored public key", device_id)
            return None
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[device_id] = (known, now_ms)
        return known

    def cached(self, device_id: str, now_ms: int) -> KnownDevice | None:
        """The device if it is in the cache and fresh; no store read."""
        cached = self._cache.get(device_id)
        if cached is not None and now_ms - cached[1] < self._cache_ms:
            return cached[0]
        return None

    def claim(self, headers: Mapping[str, str], now_ms: int) -> DeviceClaim:
        """What the headers claim, if they could be genuine; :class:`UnauthorizedError` if not.

        Reads no body and no store: the device is looked up afterwards
        (:meth:`admit`).
        """
        device_id = "?"
        try:
            device_id = claimed_device(headers)
            timestamp_ms = _timestamp(_header(headers, TIMESTAMP_HEADER))
            if abs(now_ms - timestamp_ms) > MAX_SKEW_MS:
                raise RequestAuthError("timestamp outside the accepted window")
            nonce = _header(headers, NONCE_HEADER)
            if not 16 <= len(nonce) <= 64:
                raise RequestAuthError("malformed nonce")
            try:
                signature = base64.b64decode(_header(headers, SIGNATURE_HEADER), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RequestAuthError("malformed signature") from exc
            if len(signature) != 64:
                raise RequestAuthError("malformed signature")
        except RequestAuthError as exc:
            _refuse(device_id, exc)
        return DeviceClaim(device_id, timestamp_ms)

    def admit(self, claim: DeviceClaim, known: KnownDevice | None) -> KnownDevice:
        """The claimed device if it is enrolled and not revoked."""
        if known is None:
            _refuse(claim.device_id, RequestAuthError("unknown device"))
        if known.record.revoked:
            _refuse(claim.device_id, RequestAuthError("revoked device"))
        return known

    def verify(
        self,
        known: KnownDevice,
        claim: DeviceClaim,
        headers: Mapping[str, str],
        method: str,
        target: str,
        body: bytes,
    ) -> None:
        """Check the signature over the request and its body, then spend the nonce."""
        now_ms = to_ms(self._clock())
        device_id = claim.device_id
        try:
            _, nonce = verify_request(headers, method, target, body, known.key, now_ms)
            # The nonce must be remembered until its timestamp is stale anyway.
            expires_ms = claim.timestamp_ms + MAX_SKEW_MS
            if not self._storage.claim_nonce(device_id, nonce, expires_ms, now_ms):
                raise RequestAuthError("replayed nonce")
        except (RequestAuthError, ValueError) as exc:
            # ValueError: header text that slipped past the format checks.
            _refuse(device_id, exc)

    def authenticate(
        self, headers: Mapping[str, str], method: str, target: str, body: bytes
    ) -> KnownDevice:
        """All of it at once, for a caller that already holds the body."""
        now_ms = to_ms(self._clock())
        claim = self.claim(headers, now_ms)
        known = self.admit(claim, self.known_device(claim.device_id, now_ms))
        self.verify(known, claim, headers, method, target, body)
        return known


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """Who a device request says it is from, and when it says it was signed (unverified)."""

    device_id: str
    timestamp_ms: int


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise RequestAuthError(f"missing {name} header")
    return value


def _timestamp(text: str) -> int:
    # isdigit() alone admits "²" and other non-ASCII digits that int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > 16:
        raise RequestAuthError("malformed timestamp")
    return int(text)


def _refuse(device_id: str, reason: Exception) -> NoReturn:
    logger.debug("device request refused (device %.64r): %s", device_id, reason)
    raise UnauthorizedError("authentication failed") from reason


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """The admin behind a bearer token."""

    name: str
    token_id: str

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


class AdminAuthenticator:
    """Maps bearer tokens to admins (the store keeps only their hashes)."""

    def __init__(self, storage: AdminStore) -> None:
        self._storage = storage

    def authenticate(self, authorization: str | None) -> AdminIdentity:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_SECRET_CHARS:
            raise UnauthorizedError("authentication failed")
        record = self._storage.find_admin_token(token_hash(token))
        if record is None:
            logger.debug("admin request with an unknown or revoked token refused")
            raise UnauthorizedError("authentication failed")
        return AdminIdentity(name=record.name, token_id=record.token_id)
