"""The collector's service layer: enrollment, ingest, policies, exemptions, audit.

:class:`CollectorService` holds every rule of the collector and nothing of
HTTP: the JSON API (:mod:`collector.api`), the admin web pages and the
``overt collector`` command all call it. It takes plain values (ids, bytes,
header mappings) and returns records from :mod:`collector.store.records`, or raises
a :class:`~collector.errors.CollectorError` whose ``code`` the callers show.

Every decision an admin or a device makes (enrollment tokens, enrollments,
policies stored, exemption requests and decisions, consent answers,
erasures, revocations, sequence conflicts) is written to the audit log in
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
import functools
import hashlib
import logging
import re
import threading
import weakref
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.admission import RateLimiter, retry_after
from collector.auth import (
    AdminAuthenticator,
    AdminIdentity,
    DeviceAuthenticator,
    DeviceClaim,
    KnownDevice,
)
from collector.config import CollectorConfig, to_ms
from collector.credentials import (
    ADMIN_TOKEN_PREFIX,
    ENROLLMENT_TOKEN_PREFIX,
    MAX_SECRET_CHARS,
    hash_password,
    new_id,
    new_token,
    token_hash,
    verify_password,
)
from collector.errors import (
    AlreadyDecidedError,
    GrantKeyError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    SequenceConflictError,
)
from collector.store.protocols import Storage
from collector.store.records import (
    AdminTokenRecord,
    AdminUserRecord,
    AuditEvent,
    BatchOutcome,
    BatchWrite,
    Decision,
    DeviceRecord,
    EnrollmentTokenRecord,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
    PolicyPutOutcome,
    PolicyRecord,
)
from overt.wire.sealed import SealedBatchError, parse_sealed, verify_sealed
from policies.envelope import MAX_POLICY_BYTES, parse_envelope
from policies.errors import PolicyError
from policies.keys import keyid_of
from policies.model import POLICY_PAYLOAD_TYPE, Category, Grant, Policy
from policies.verify import parse_policy_payload, sign_grant, verify_grant

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest exemption a grant may carry.
MAX_GRANT_DAYS = 3650


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


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device as the admin sees it: its record and how many requests await a decision."""

    record: DeviceRecord
    open_requests: int


@dataclass(frozen=True, slots=True)
class NewEnrollmentToken:
    token: str
    record: EnrollmentTokenRecord


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


def device_actor(device_id: str) -> str:
    return f"device:{device_id}"


def _grants_etag(grants: list[GrantRecord]) -> str:
    digest = hashlib.sha256()
    for grant in grants:
        digest.update(hashlib.sha256(grant.envelope).digest())
    return digest.hexdigest()


class CollectorService:
    """Everything the collector does, over one :class:`~collector.storage.Storage`."""

    def __init__(self, storage: Storage, config: CollectorConfig) -> None:
        self.storage = storage
        self.config = config
        self._clock = config.clock
        self._grant_key: Ed25519PrivateKey | None = config.grant_key
        self.devices_auth = DeviceAuthenticator(
            storage, config.clock, int(config.device_cache_seconds * 1000)
        )
        self.admins_auth = AdminAuthenticator(storage)
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

    def check_admin_password(self, name: str, password: str) -> bool:
        """Whether ``name`` is an admin user with this password (for the sign-in page)."""
        user = self.storage.get_admin_user(name)
        if user is None:
            # Spend the same time as a real check, so timing does not reveal names.
            verify_password(password, _dummy_password_record())
            return False
        return verify_password(password, user.password_hash)

    def create_admin_token(self, name: str, actor: str) -> str:
        """A new admin bearer token for ``name``; shown once, stored hashed."""
        _require_name(name, "admin name")
        token = new_token(ADMIN_TOKEN_PREFIX)
        now_ms = self.now_ms()
        record = AdminTokenRecord(
            token_id=new_id("at"),
            name=name,
            token_hash=token_hash(token),
            created_at_ms=now_ms,
        )
        self.storage.add_admin_token(
            record,
            AuditEvent(now_ms, actor, "admin_token.created", record.token_id, {"name": name}),
        )
        logger.info("admin token %s created for %s", record.token_id, name)
        return token

    def set_admin_password(self, name: str, password: str, actor: str) -> None:
        """Create admin user ``name`` or change its password (scrypt, per-user salt)."""
        _require_name(name, "admin name")
        if not password or len(password) > MAX_SECRET_CHARS:
            raise InvalidRequestError(f"a password must have 1 to {MAX_SECRET_CHARS} characters")
        now_ms = self.now_ms()
        existing = self.storage.get_admin_user(name)
        user = AdminUserRecord(
            name=name,
            password_hash=hash_password(password),
            created_at_ms=now_ms if existing is None else existing.created_at_ms,
            updated_at_ms=now_ms,
        )
        action = "admin_user.created" if existing is None else "admin_user.password_changed"
        self.storage.set_admin_user(user, AuditEvent(now_ms, actor, action, name, {}))

    # ------------------------------------------------------------ enrollment

    def create_enrollment_token(
        self, tenant: str, group: str, expires_minutes: int | None, actor: str
    ) -> NewEnrollmentToken:
        _require_name(tenant, "tenant")
        _require_name(group, "group")
        minutes = (
            self.config.enrollment_token_minutes if expires_minutes is None else expires_minutes
        )
        if not 1 <= minutes <= 30 * 24 * 60:
            raise InvalidRequestError("an enrollment token lives 1 minute to 30 days")
        token = new_token(ENROLLMENT_TOKEN_PREFIX)
        now_ms = self.now_ms()
        record = EnrollmentTokenRecord(
            token_id=new_id("et"),
            token_hash=token_hash(token),
            tenant=tenant,
            group=group,
            created_at_ms=now_ms,
            expires_at_ms=now_ms + minutes * 60_000,
            created_by=actor,
        )
        self.storage.add_enrollment_token(
            record,
            AuditEvent(
                now_ms,
                actor,
                "enrollment_token.created",
                record.token_id,
                {"tenant": tenant, "group": group, "expires_minutes": minutes},
            ),
        )
        return NewEnrollmentToken(token, record)

    def list_enrollment_tokens(self) -> list[EnrollmentTokenRecord]:
        return self.storage.list_enrollment_tokens()

    def enroll(self, token: str, device_id: str, public_key: str, hostname: str) -> DeviceRecord:
        """Register a device with a single-use token (see ``Storage.enroll_device``)."""
        now_ms = self.now_ms()
        device = self.storage.enroll_device(
            token_hash(token),
            device_id,
            public_key,
            hostname,
            now_ms,
            AuditEvent(now_ms, device_actor(device_id), "device.enrolled", device_id, {}),
        )
        self.devices_auth.forget(device_id)
        logger.info(
            "device %s enrolled (tenant %s, group %s)", device_id, device.tenant, device.group
        )
        return device

    def list_devices(self) -> list[DeviceView]:
        pending = Counter(
            r.device_id for r in self.storage.list_exemptions(status=ExemptionStatus.PENDING)
        )
        return [DeviceView(d, pending[d.device_id]) for d in self.storage.list_devices()]

    def revoke_device(self, device_id: str, actor: str) -> None:
        now_ms = self.now_ms()
        if self.storage.get_device(device_id) is None:
            raise NotFoundError(f"no device {device_id!r}")
        self.storage.revoke_device(
            device_id, now_ms, AuditEvent(now_ms, actor, "device.revoked", device_id, {})
        )
        self.devices_auth.forget(device_id)
        logger.info("device %s revoked", device_id)

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
            start_ms=header["start_ms"],
            end_ms=header["end_ms"],
            policy_version=header["policy_version"],
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

    # --------------------------------------------------------------- policies

    def put_policy(self, data: bytes, actor: str) -> tuple[PolicyRecord, PolicyPutOutcome]:
        """Store a signed policy; its tenant, groups and version come from its payload.

        The collector holds no IT trust keys, so it checks only that this is a
        signed envelope of a valid, unexpired policy; agents verify the
        signatures.
        """
        policy = _signed_policy(data)
        now = self.now()
        if policy.expires <= now:
            raise InvalidRequestError(
                f"policy version {policy.version} expired at {policy.expires.isoformat()}",
                code="expired_policy",
            )
        now_ms = to_ms(now)
        record = PolicyRecord(
            tenant=policy.scope.tenant,
            version=policy.version,
            groups=tuple(policy.scope.device_groups),
            envelope=data,
            sha256=hashlib.sha256(data).hexdigest(),
            expires_ms=to_ms(policy.expires),
            stored_at_ms=now_ms,
        )
        outcome = self.storage.put_policy(
            record,
            AuditEvent(
                now_ms,
                actor,
                "policy.stored",
                f"{record.tenant}/v{record.version}",
                {"groups": list(record.groups), "sha256": record.sha256},
            ),
        )
        if outcome is PolicyPutOutcome.STORED:
            logger.info("policy %s v%d stored", record.tenant, record.version)
        return record, outcome

    def policy_for(self, device: DeviceRecord) -> PolicyRecord:
        record = self.storage.latest_policy(device.tenant, device.group)
        if record is None:
            raise NotFoundError(
                f"no policy for tenant {device.tenant!r}, group {device.group!r}", code="no_policy"
            )
        return record

    def grants_for(self, device: DeviceRecord) -> tuple[list[GrantRecord], str]:
        """The device's unexpired grants and their ETag."""
        grants = self.storage.grants_for_device(device.device_id, self.now_ms())
        return grants, _grants_etag(grants)

    # ------------------------------------------------------------- exemptions

    def request_exemption(
        self, device: DeviceRecord, category: Category, reason: str, duration_days: int
    ) -> ExemptionRecord:
        now_ms = self.now_ms()
        record = ExemptionRecord(
            request_id=new_id("r"),
            device_id=device.device_id,
            tenant=device.tenant,
            group=device.group,
            category=category.value,
            reason=reason,
            duration_days=duration_days,
            created_at_ms=now_ms,
        )
        self.storage.add_exemption(
            record,
            AuditEvent(
                now_ms,
                device_actor(device.device_id),
                "exemption.requested",
                record.request_id,
                {"category": category.value, "duration_days": duration_days},
            ),
        )
        logger.info("exemption request %s from device %s", record.request_id, device.device_id)
        return record

    def device_exemptions(self, device: DeviceRecord) -> list[ExemptionRecord]:
        return self.storage.list_exemptions(device_id=device.device_id)

    def list_exemptions(self, status: ExemptionStatus | None = None) -> list[ExemptionRecord]:
        return self.storage.list_exemptions(status=status)

    def get_exemption(self, request_id: str) -> ExemptionRecord:
        record = self.storage.get_exemption(request_id)
        if record is None:
            raise NotFoundError(f"no exemption request {request_id!r}")
        return record

    def approve(
        self,
        request_id: str,
        actor: str,
        *,
        expires_at: datetime | None = None,
        duration_days: int | None = None,
    ) -> GrantRecord:
        """Approve a pending request: sign a grant with the grant key and store both.

        The grant expires at ``expires_at``, or ``duration_days`` from now, or
        after the duration the employee asked for. Refused with
        :class:`GrantKeyError` when there is no grant key, no policy for the
        device, or the policy does not list the grant key for the category.
        """
        request = self.get_exemption(request_id)
        if request.status is not ExemptionStatus.PENDING:
            raise AlreadyDecidedError(
                f"exemption request {request_id} was already {request.status}"
            )
        now = self.now().replace(microsecond=0)
        if expires_at is None:
            days = request.duration_days if duration_days is None else duration_days
            expires_at = now + timedelta(days=days)
        if not now < expires_at <= now + timedelta(days=MAX_GRANT_DAYS):
            raise InvalidRequestError(
                f"a grant must expire after now and within {MAX_GRANT_DAYS} days",
                code="bad_expiry",
            )
        key, policy = self._grant_signer(request)
        grant = Grant(
            grant_id=new_id("g"),
            request_id=request.request_id,
            tenant=request.tenant,
            device_id=request.device_id,
            category=Category(request.category),
            issued_at=now,
            expires=expires_at,
            reason=request.reason,
        )
        envelope = sign_grant(grant, key)
        # The agent will check exactly this; refuse to hand out a grant it would reject.
        try:
            verify_grant(envelope, policy, request.device_id, now)
        except PolicyError as exc:
            raise GrantKeyError(f"the signed grant does not verify: {exc}") from exc
        now_ms = to_ms(now)
        record = GrantRecord(
            grant_id=grant.grant_id,
            request_id=request.request_id,
            device_id=request.device_id,
            tenant=request.tenant,
            category=request.category,
            issued_at_ms=now_ms,
            expires_ms=to_ms(expires_at),
            envelope=envelope,
        )
        self.storage.decide_exemption(
            Decision(request_id, ExemptionStatus.APPROVED, now_ms, actor, "", record),
            AuditEvent(
                now_ms,
                actor,
                "exemption.approved",
                request_id,
                {
                    "device_id": request.device_id,
                    "category": request.category,
                    "grant_id": record.grant_id,
                    "expires_ms": record.expires_ms,
                },
            ),
        )
        logger.info("exemption request %s approved as grant %s", request_id, record.grant_id)
        return record

    def _grant_signer(self, request: ExemptionRecord) -> tuple[Ed25519PrivateKey, Policy]:
        key = self._grant_key
        if key is None:
            raise GrantKeyError(
                "the collector has no grant key (start it with --grant-key ADMIN.key)",
                code="no_grant_key",
            )
        stored = self.storage.latest_policy(request.tenant, request.group)
        if stored is None:
            raise GrantKeyError(
                f"no policy is stored for tenant {request.tenant!r}, group {request.group!r}; "
                "a grant can only be checked against one",
                code="no_policy",
            )
        policy = _signed_policy(stored.envelope)
        admin = policy.admin_key(keyid_of(key))
        if admin is None or Category(request.category) not in admin.categories:
            raise GrantKeyError(
                f"policy version {policy.version} does not list this collector's grant key "
                f"({keyid_of(key)[:16]}…) for the {request.category!r} category"
            )
        return key, policy

    def deny(self, request_id: str, actor: str, reason: str) -> ExemptionRecord:
        if not _HAS_TEXT.search(reason) or len(reason) > 2000:
            raise InvalidRequestError("a denial needs a reason (at most 2000 characters)")
        self.get_exemption(request_id)
        now_ms = self.now_ms()
        decided = self.storage.decide_exemption(
            Decision(request_id, ExemptionStatus.DENIED, now_ms, actor, reason),
            AuditEvent(now_ms, actor, "exemption.denied", request_id, {"reason": reason}),
        )
        logger.info("exemption request %s denied", request_id)
        return decided

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


def _signed_policy(data: bytes) -> Policy:
    """The policy inside a signed envelope (signatures not checked: agents do that)."""
    try:
        envelope = parse_envelope(data, MAX_POLICY_BYTES)
        if envelope.payload_type != POLICY_PAYLOAD_TYPE:
            raise InvalidRequestError(
                f"payload type {envelope.payload_type[:80]!r} is not a policy", code="not_a_policy"
            )
        if not envelope.signatures:
            raise InvalidRequestError("the policy is not signed", code="not_signed")
        return parse_policy_payload(envelope.payload)
    except PolicyError as exc:
        raise InvalidRequestError(f"not a signed policy: {exc}", code="not_a_policy") from exc


def _require_name(value: str, what: str) -> None:
    if not _NAME.fullmatch(value):
        raise InvalidRequestError(
            f"{what} must be 1 to 128 letters, digits or . _ @ + -", code="bad_name"
        )


_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
#: Something besides ASCII white space (``schemas.TEXT_PATTERN``; the same in every regex dialect).
_HAS_TEXT = re.compile(r"[^ \t\n\r\f\v]")


@functools.cache
def _dummy_password_record() -> str:
    return hash_password("not a real password")
