"""The collector's service layer: every rule of the collector, and nothing of HTTP.

:class:`CollectorService` is what the JSON API (:mod:`collector.api`), the
admin web pages and the ``overt collector`` command hold. It keeps the
device hot path itself — admitting a device request from its headers,
verifying and durably storing a sealed batch, consent answers, erasure,
the audit log — and composes the other use cases, each over the narrow
store protocols it needs:

- ``service.accounts`` (:class:`collector.accounts.Accounts`): admin
  credentials, enrollment tokens, enrolling and revoking devices;
- ``service.policies`` (:class:`collector.policy_desk.PolicyDesk`): signed
  policies stored and served;
- ``service.exemptions`` (:class:`collector.exemptions.Exemptions`):
  requests, decisions and the signed grants.

They take plain values (ids, bytes, header mappings) and return records from
:mod:`collector.store.records`, or raise a
:class:`~collector.errors.CollectorError` whose ``code`` the callers show.
Every decision an admin or a device makes is written to the audit log in
the same transaction as the change itself. Logs carry ids and counts, never
reasons or captured content.

Methods are synchronous and thread-safe (the HTTP layer calls them from a
thread pool), except :meth:`CollectorService.admit_device` and
:meth:`CollectorService.ingest`, coroutines: a device request is admitted
from its headers alone before its body is read (a store read, when the
device is not cached, goes to a thread), and batch uploads are the hot path
and wait for the store's group commit without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from collector.accounts import Accounts
from collector.admission import RateLimiter, retry_after
from collector.auth import (
    AdminAuthenticator,
    AdminIdentity,
    DeviceAuthenticator,
    DeviceClaim,
    KnownDevice,
    device_actor,
)
from collector.config import CollectorConfig, to_ms
from collector.errors import (
    InvalidRequestError,
    RateLimitedError,
    SequenceConflictError,
)
from collector.exemptions import Exemptions
from collector.policy_desk import PolicyDesk
from collector.store.protocols import Storage
from collector.store.records import (
    AuditEvent,
    BatchOutcome,
    BatchWrite,
    DeviceRecord,
)
from overt.wire.sealed import SealedBatchError, parse_sealed, verify_sealed

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: BatchOutcome
    seq: int
    batch_id: str


@dataclass(frozen=True, slots=True)
class AdmittedDevice:
    """A device request whose headers could be genuine: its signature is not checked yet."""

    known: KnownDevice
    claim: DeviceClaim

    @property
    def record(self) -> DeviceRecord:
        return self.known.record


class _LoopRelay:
    """Hands finished store futures to one event loop, waking it once per burst.

    ``asyncio.wrap_future`` wakes the loop once per future, and each wake-up is
    a syscall in the store's writer thread that lets go of the GIL; getting
    it back can take a whole switch interval while the loop is busy, so a
    group of 50 acknowledgements could stall the writer for 50 intervals.
    Here the first completion of a burst schedules one drain on the loop and
    later ones only append to the list that drain will read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done: list[tuple[asyncio.Future[Any], Future[Any]]] = []
        self._lock = threading.Lock()

    def wrap(self, future: Future[T]) -> asyncio.Future[T]:
        waiter: asyncio.Future[T] = self._loop.create_future()
        future.add_done_callback(lambda f: self._finished(waiter, f))
        return waiter

    def _finished(self, waiter: asyncio.Future[Any], future: Future[Any]) -> None:
        with self._lock:
            first = not self._done
            self._done.append((waiter, future))
        if first:
            # RuntimeError: the loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for waiter, future in done:
            if waiter.done():
                continue
            error = future.exception()
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(future.result())


class CollectorService:
    """Every use case of the collector over one :class:`~collector.store.protocols.Storage`.

    The service owns the store's lifecycle (:meth:`close`); its own methods
    use the batch store and the audit log, and the composed use cases the
    protocols their classes name.
    """

    def __init__(self, storage: Storage, config: CollectorConfig) -> None:
        self.storage = storage
        self.config = config
        self._clock = config.clock
        self.devices_auth = DeviceAuthenticator(
            storage, config.clock, int(config.device_cache_seconds * 1000)
        )
        self.admins_auth = AdminAuthenticator(storage)
        self.accounts = Accounts(
            storage, config.clock, self.devices_auth, config.enrollment_token_minutes
        )
        self.policies = PolicyDesk(storage, config.clock)
        self.exemptions = Exemptions(storage, config.clock, config.grant_key)
        admission = config.admission
        self._max_device_requests = admission.max_device_requests
        self._device_requests: Counter[str] = Counter()
        self._device_requests_lock = threading.Lock()
        self.device_rates = (
            RateLimiter(admission.device_rate, admission.max_tracked)
            if admission.device_rate is not None
            else None
        )
        self._verifier = (
            ThreadPoolExecutor(
                max_workers=config.verify_threads, thread_name_prefix="collector-verify"
            )
            if config.verify_threads > 0
            else None
        )
        self._relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRelay] = (
            weakref.WeakKeyDictionary()
        )

    def _relay(self) -> _LoopRelay:
        loop = asyncio.get_running_loop()
        relay = self._relays.get(loop)
        if relay is None:
            relay = self._relays[loop] = _LoopRelay(loop)
        return relay

    def now(self) -> datetime:
        return self._clock()

    def now_ms(self) -> int:
        return to_ms(self._clock())

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.shutdown(wait=True)
        self.storage.close()

    # -------------------------------------------------------- authentication

    async def admit_device(self, headers: Mapping[str, str]) -> AdmittedDevice:
        """Admit a device request from its headers alone, before its body is read.

        Refuses with :class:`UnauthorizedError` malformed or stale signature
        headers and unknown or revoked devices, and with
        :class:`RateLimitedError` a device over its rate or with
        ``max_device_requests`` in flight. The signature is checked by
        :meth:`verify_device` once the body is in; every admitted request
        must end with :meth:`release_device`.
        """
        now = self._clock()
        now_ms = to_ms(now)
        claim = self.devices_auth.claim(headers, now_ms)
        known = self.devices_auth.cached(claim.device_id, now_ms)
        if known is None:
            loop = asyncio.get_running_loop()
            known = await loop.run_in_executor(
                None, self.devices_auth.known_device, claim.device_id, now_ms
            )
        known = self.devices_auth.admit(claim, known)
        device_id = claim.device_id
        if self.device_rates is not None:
            wait = self.device_rates.wait(device_id, now.timestamp())
            if wait > 0:
                logger.debug("device %s refused: over its rate", device_id)
                raise RateLimitedError("too many requests from this device", retry_after(wait))
        with self._device_requests_lock:
            if self._device_requests[device_id] >= self._max_device_requests:
                raise RateLimitedError("too many requests from this device at once", 1)
            self._device_requests[device_id] += 1
        return AdmittedDevice(known, claim)

    def release_device(self, admitted: AdmittedDevice) -> None:
        """The admitted request is over (answered, refused or abandoned)."""
        device_id = admitted.claim.device_id
        with self._device_requests_lock:
            left = self._device_requests[device_id] - 1
            if left > 0:
                self._device_requests[device_id] = left
            else:
                del self._device_requests[device_id]

    def verify_device(
        self,
        admitted: AdmittedDevice,
        headers: Mapping[str, str],
        method: str,
        target: str,
        body: bytes,
    ) -> DeviceRecord:
        """Check an admitted request's signature and nonce; charge the device's rate."""
        self.devices_auth.verify(admitted.known, admitted.claim, headers, method, target, body)
        if self.device_rates is not None:
            self.device_rates.charge(admitted.claim.device_id, self._clock().timestamp())
        return admitted.record

    def authenticate_device(
        self, headers: Mapping[str, str], method: str, target: str, body: bytes
    ) -> DeviceRecord:
        """The device that signed this request; :class:`UnauthorizedError` otherwise."""
        return self.devices_auth.authenticate(headers, method, target, body).record

    def authenticate_admin(self, authorization: str | None) -> AdminIdentity:
        """The admin behind an ``Authorization: Bearer`` header value."""
        return self.admins_auth.authenticate(authorization)

    # ----------------------------------------------------------------- ingest

    def prepare_batch(
        self, known: KnownDevice, body: bytes, sha256: bytes | None = None
    ) -> BatchWrite:
        """Parse and verify a sealed batch from ``known``; what the store should write.

        ``sha256`` is the body's digest when the caller hashed it as it arrived.
        """
        device = known.record
        try:
            sealed = parse_sealed(body)
        except (SealedBatchError, ValueError, RecursionError) as exc:
            raise InvalidRequestError(str(exc), code="malformed_batch") from exc
        if sealed.device_id != device.device_id:
            raise InvalidRequestError(
                f"the batch header names device {sealed.device_id[:128]!r}, not the caller",
                code="wrong_device",
            )
        try:
            verify_sealed(sealed, known.key)
        except SealedBatchError as exc:
            raise InvalidRequestError(
                f"batch {sealed.batch_id} is not signed by the calling device's key",
                code="bad_batch_signature",
            ) from exc
        header = sealed.header
        now_ms = self.now_ms()
        return BatchWrite(
            device_id=device.device_id,
            seq=sealed.seq,
            batch_id=sealed.batch_id,
            header=sealed.header_bytes,
            start_ms=header.start_ms,
            end_ms=header.end_ms,
            policy_version=header.policy_version,
            sealed=body,
            sha256=sha256 if sha256 is not None else hashlib.sha256(body).digest(),
            received_at_ms=now_ms,
            conflict_audit=AuditEvent(
                now_ms,
                device_actor(device.device_id),
                "batch.sequence_conflict",
                device.device_id,
                {"seq": sealed.seq, "batch_id": sealed.batch_id, "alert": True},
            ),
        )

    def verify_upload(
        self,
        admitted: AdmittedDevice,
        headers: Mapping[str, str],
        target: str,
        body: bytes,
        sha256: bytes | None,
    ) -> BatchWrite:
        """Verify an admitted batch upload and the batch: what the store should write.

        CPU only (a SHA-256 of the body and two Ed25519 verifications); the
        cryptography releases the GIL, so this runs on the verifier thread.
        """
        self.verify_device(admitted, headers, "POST", target, body)
        return self.prepare_batch(admitted.known, body, sha256)

    def _verify_and_store(
        self,
        done: Future[tuple[BatchWrite, BatchOutcome]],
        admitted: AdmittedDevice,
        headers: Mapping[str, str],
        target: str,
        body: bytes,
        sha256: bytes | None,
    ) -> None:
        """On the verifier thread: verify, submit to the store, resolve ``done`` with both."""
        if not done.set_running_or_notify_cancel():
            return
        try:
            write = self.verify_upload(admitted, headers, target, body, sha256)
            stored = self.storage.submit_batch(write)
        except BaseException as exc:
            done.set_exception(exc)
            return

        def finish(future: Future[BatchOutcome]) -> None:
            error = future.exception()
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result((write, future.result()))

        stored.add_done_callback(finish)

    async def ingest(
        self,
        admitted: AdmittedDevice,
        headers: Mapping[str, str],
        target: str,
        body: bytes,
        sha256: bytes | None = None,
    ) -> IngestResult:
        """Verify and durably store one sealed batch upload (``POST`` to ``target``).

        ``admitted`` comes from :meth:`admit_device`, before the body was
        read. Verification runs on a separate thread (it lets go of the GIL,
        so it uses another core while the event loop parses the next
        requests); the answer comes once the store's group commit made the
        batch durable. Raises :class:`UnauthorizedError`,
        :class:`InvalidRequestError`, :class:`SequenceConflictError` or a
        :class:`StorageError`.
        """
        relay = self._relay()
        if self._verifier is None:
            write = self.verify_upload(admitted, headers, target, body, sha256)
            outcome = await relay.wrap(self.storage.submit_batch(write))
        else:
            # The verifier thread hands the batch to the store itself: the
            # event loop is woken once, when the outcome is durable.
            done: Future[tuple[BatchWrite, BatchOutcome]] = Future()
            self._verifier.submit(
                self._verify_and_store, done, admitted, headers, target, body, sha256
            )
            write, outcome = await relay.wrap(done)
        if outcome is BatchOutcome.CONFLICT:
            logger.warning(
                "device %s sent seq %d again with other bytes (audit alert)",
                write.device_id,
                write.seq,
            )
            raise SequenceConflictError(f"sequence number {write.seq} is stored with other content")
        return IngestResult(outcome, write.seq, write.batch_id)

    # ------------------------------------------------------ consent, erasure

    def record_consent(
        self, device: DeviceRecord, policy_version: int, decision: str, at_ms: int
    ) -> None:
        now_ms = self.now_ms()
        self.storage.append_audit(
            AuditEvent(
                now_ms,
                device_actor(device.device_id),
                f"consent.{decision}",
                device.device_id,
                {"policy_version": policy_version, "at_ms": at_ms},
            )
        )

    def erase(self, device: DeviceRecord, start_ms: int, end_ms: int, reason: str) -> int:
        """Delete the device's batches overlapping [start_ms, end_ms]: rows and ciphertext.

        An ``end_ms`` before ``start_ms`` is an empty range: nothing is deleted
        (the erasure is still audited).
        """
        now_ms = self.now_ms()
        audit = AuditEvent(
            now_ms,
            device_actor(device.device_id),
            "erasure",
            device.device_id,
            {"start_ms": start_ms, "end_ms": end_ms, "reason": reason},
        )
        if end_ms < start_ms:
            self.storage.append_audit(replace(audit, detail={**audit.detail, "deleted": 0}))
            return 0
        deleted = self.storage.erase_batches(device.device_id, start_ms, end_ms, audit)
        logger.info("erasure for device %s deleted %d batch(es)", device.device_id, deleted)
        return deleted

    # ------------------------------------------------------------------ audit

    def audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditEvent]:
        return self.storage.list_audit(max(1, min(limit, 1000)), before_id)

    def record_event(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """Audit an event that changes nothing else (an admin signing in or out)."""
        self.storage.append_audit(AuditEvent(self.now_ms(), actor, action, subject, detail))
