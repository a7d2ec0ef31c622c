"""Exemptions: employees' requests, the admins' decisions, the signed grants.

:class:`Exemptions` files a device's request, lists requests for the admin,
and decides them: a denial needs a reason; an approval signs a grant with
the collector's grant key and checks it exactly as the agent will, against
the stored policy for the device's tenant and group, before storing the
decision and the grant in one write. Devices fetch their unexpired grants
with an ETag over the envelopes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.auth import device_actor
from collector.config import to_ms
from collector.credentials import new_id
from collector.errors import AlreadyDecidedError, GrantKeyError, InvalidRequestError, NotFoundError
from collector.policy_desk import signed_policy
from collector.store.protocols import ExemptionStore, PolicyStore
from collector.store.records import (
    AuditEvent,
    DeviceRecord,
    ExemptionDecision,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
)
from policies.errors import PolicyError
from policies.keys import keyid_of
from policies.model import Category, Grant, Policy
from policies.verify import sign_grant, verify_grant

logger = logging.getLogger(__name__)

#: The longest exemption a grant may carry.
MAX_GRANT_DAYS = 3650
#: Something besides ASCII white space (``schemas.TEXT_PATTERN``; the same in every regex dialect).
_HAS_TEXT = re.compile(r"[^ \t\n\r\f\v]")


class GrantStore(ExemptionStore, PolicyStore, Protocol):
    """What :class:`Exemptions` reads and writes (policies: to check a grant against)."""


def _grants_etag(grants: list[GrantRecord]) -> str:
    digest = hashlib.sha256()
    for grant in grants:
        digest.update(hashlib.sha256(grant.envelope).digest())
    return digest.hexdigest()


class Exemptions:
    """Requests, decisions and grants, over a :class:`GrantStore`."""

    def __init__(
        self,
        store: GrantStore,
        clock: Callable[[], datetime],
        grant_key: Ed25519PrivateKey | None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._grant_key = grant_key

    def now(self) -> datetime:
        return self._clock()

    def now_ms(self) -> int:
        return to_ms(self._clock())

    def grants_for(self, device: DeviceRecord) -> tuple[list[GrantRecord], str]:
        """The device's unexpired grants and their ETag."""
        grants = self._store.grants_for_device(device.device_id, self.now_ms())
        return grants, _grants_etag(grants)

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
        self._store.add_exemption(
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
        return self._store.list_exemptions(device_id=device.device_id)

    def list_exemptions(self, status: ExemptionStatus | None = None) -> list[ExemptionRecord]:
        return self._store.list_exemptions(status=status)

    def get_exemption(self, request_id: str) -> ExemptionRecord:
        record = self._store.get_exemption(request_id)
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
        self._store.decide_exemption(
            ExemptionDecision(request_id, ExemptionStatus.APPROVED, now_ms, actor, "", record),
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
        stored = self._store.latest_policy(request.tenant, request.group)
        if stored is None:
            raise GrantKeyError(
                f"no policy is stored for tenant {request.tenant!r}, group {request.group!r}; "
                "a grant can only be checked against one",
                code="no_policy",
            )
        policy = signed_policy(stored.envelope)
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
        decided = self._store.decide_exemption(
            ExemptionDecision(request_id, ExemptionStatus.DENIED, now_ms, actor, reason),
            AuditEvent(now_ms, actor, "exemption.denied", request_id, {"reason": reason}),
        )
        logger.info("exemption request %s denied", request_id)
        return decided
