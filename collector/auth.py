"""Who is calling: device request signatures and admin bearer tokens.

:class:`DeviceAuthenticator` checks a request's ``Overt-*`` headers with
:func:`policies.device_auth.verify_request` against the key the device
registered at enrollment, refuses revoked and unknown devices, and refuses a
nonce the device already used inside the accepted time window (the memory is
the store's, :meth:`collector.storage.Storage.claim_nonce`). Every failure
raises the same :class:`~collector.errors.UnauthorizedError`; the reason is
logged at debug level with the claimed device id, and never sent back.

:class:`AdminAuthenticator` maps an ``Authorization: Bearer`` token to the
admin it was issued to. Nothing here holds HTTP objects: callers pass header
mappings and bytes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.config import Clock, to_ms
from collector.credentials import MAX_SECRET_CHARS, token_hash
from collector.errors import UnauthorizedError
from collector.storage import DeviceRecord, Storage
from policies.device_auth import (
    MAX_SKEW_MS,
    TIMESTAMP_HEADER,
    RequestAuthError,
    claimed_device,
    verify_request,
)
from policies.sealed import SealedBatchError, ed25519_from_b64

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device record with its public key ready to verify with."""

    record: DeviceRecord
    key: Ed25519PublicKey


class DeviceAuthenticator:
    """Authenticates device-signed requests; caches device keys for ``cache_ms``."""

    def __init__(self, storage: Storage, clock: Clock, cache_ms: int) -> None:
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
        cached = self._cache.get(device_id)
        if cached is not None and now_ms - cached[1] < self._cache_ms:
            return cached[0]
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

    def authenticate(
        self, headers: Mapping[str, str], method: str, target: str, body: bytes
    ) -> KnownDevice:
        """The calling device, or :class:`UnauthorizedError` (one error for every reason)."""
        now_ms = to_ms(self._clock())
        device_id = "?"
        try:
            device_id = claimed_device(headers)
            known = self.known_device(device_id, now_ms)
            if known is None:
                raise RequestAuthError("unknown device")
            if known.record.revoked:
                raise RequestAuthError("revoked device")
            _, nonce = verify_request(headers, method, target, body, known.key, now_ms)
            stamp = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower())
            timestamp_ms = int(stamp or 0)
            # The nonce must be remembered until its timestamp is stale anyway.
            if not self._storage.claim_nonce(device_id, nonce, timestamp_ms + MAX_SKEW_MS, now_ms):
                raise RequestAuthError("replayed nonce")
        except (RequestAuthError, ValueError) as exc:
            # ValueError: header text that slipped past the format checks.
            logger.debug("device request refused (device %.64r): %s", device_id, exc)
            raise UnauthorizedError("authentication failed") from exc
        return known


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

    def __init__(self, storage: Storage) -> None:
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
