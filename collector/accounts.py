"""Who may use the collector: admin credentials, enrollment tokens and devices.

:class:`Accounts` creates admin tokens and passwords (stored hashed, by
:mod:`collector.credentials`), single-use enrollment tokens, enrolls and
revokes devices, and lists them for the admin. Every change is audited in
the same store write. It holds no HTTP and no ingest; after an enrollment or
a revocation it tells the device authenticator to forget its cached view.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from collector.auth import DeviceAuthenticator, device_actor
from collector.config import to_ms
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
from collector.errors import InvalidRequestError, NotFoundError
from collector.store.protocols import AdminStore, DeviceStore, ExemptionStore
from collector.store.records import (
    AdminTokenRecord,
    AdminUserRecord,
    AuditEvent,
    DeviceRecord,
    EnrollmentTokenRecord,
    ExemptionStatus,
)

logger = logging.getLogger(__name__)


class AccountStore(DeviceStore, AdminStore, ExemptionStore, Protocol):
    """What :class:`Accounts` reads and writes (exemptions: a device's open requests)."""


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device as the admin sees it: its record and how many requests await a decision."""

    record: DeviceRecord
    open_requests: int


@dataclass(frozen=True, slots=True)
class NewEnrollmentToken:
    token: str
    record: EnrollmentTokenRecord


class Accounts:
    """Admins, enrollment tokens and devices, over an :class:`AccountStore`."""

    def __init__(
        self,
        store: AccountStore,
        clock: Callable[[], datetime],
        devices_auth: DeviceAuthenticator,
        enrollment_token_minutes: int,
    ) -> None:
        self._store = store
        self._clock = clock
        self._devices_auth = devices_auth
        self._token_minutes = enrollment_token_minutes

    def now_ms(self) -> int:
        return to_ms(self._clock())

    def check_admin_password(self, name: str, password: str) -> bool:
        """Whether ``name`` is an admin user with this password (for the sign-in page)."""
        user = self._store.get_admin_user(name)
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
        self._store.add_admin_token(
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
        existing = self._store.get_admin_user(name)
        user = AdminUserRecord(
            name=name,
            password_hash=hash_password(password),
            created_at_ms=now_ms if existing is None else existing.created_at_ms,
            updated_at_ms=now_ms,
        )
        action = "admin_user.created" if existing is None else "admin_user.password_changed"
        self._store.set_admin_user(user, AuditEvent(now_ms, actor, action, name, {}))

    def create_enrollment_token(
        self, tenant: str, group: str, expires_minutes: int | None, actor: str
    ) -> NewEnrollmentToken:
        _require_name(tenant, "tenant")
        _require_name(group, "group")
        minutes = self._token_minutes if expires_minutes is None else expires_minutes
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
        self._store.add_enrollment_token(
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
        return self._store.list_enrollment_tokens()

    def enroll(self, token: str, device_id: str, public_key: str, hostname: str) -> DeviceRecord:
        """Register a device with a single-use token (see ``Storage.enroll_device``)."""
        now_ms = self.now_ms()
        device = self._store.enroll_device(
            token_hash(token),
            device_id,
            public_key,
            hostname,
            now_ms,
            AuditEvent(now_ms, device_actor(device_id), "device.enrolled", device_id, {}),
        )
        self._devices_auth.forget(device_id)
        logger.info(
            "device %s enrolled (tenant %s, group %s)", device_id, device.tenant, device.group
        )
        return device

    def list_devices(self) -> list[DeviceView]:
        pending = Counter(
            r.device_id for r in self._store.list_exemptions(status=ExemptionStatus.PENDING)
        )
        return [DeviceView(d, pending[d.device_id]) for d in self._store.list_devices()]

    def revoke_device(self, device_id: str, actor: str) -> None:
        now_ms = self.now_ms()
        if self._store.get_device(device_id) is None:
            raise NotFoundError(f"no device {device_id!r}")
        self._store.revoke_device(
            device_id, now_ms, AuditEvent(now_ms, actor, "device.revoked", device_id, {})
        )
        self._devices_auth.forget(device_id)
        logger.info("device %s revoked", device_id)


def _require_name(value: str, what: str) -> None:
    if not _NAME.fullmatch(value):
        raise InvalidRequestError(
            f"{what} must be 1 to 128 letters, digits or . _ @ + -", code="bad_name"
        )


_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,128}")


@functools.cache
def _dummy_password_record() -> str:
    return hash_password("not a real password")
