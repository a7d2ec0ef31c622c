"""Signed policies at the collector: storing them, and the one each device gets.

The collector holds no IT trust keys: :class:`PolicyDesk` checks only that
an upload is a signed envelope of a valid, unexpired policy (agents verify
the signatures), files it by tenant, device groups and version, and hands
each device the newest policy covering its group. :func:`signed_policy`
reads the policy out of an envelope for the exemption flow too, which
checks grants against the stored policy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from collector.config import to_ms
from collector.errors import InvalidRequestError, NotFoundError
from collector.store.protocols import PolicyStore
from collector.store.records import AuditEvent, DeviceRecord, PolicyPutOutcome, PolicyRecord
from policies.envelope import MAX_POLICY_BYTES, parse_envelope
from policies.errors import PolicyError
from policies.model import POLICY_PAYLOAD_TYPE, Policy
from policies.verify import parse_policy_payload

logger = logging.getLogger(__name__)


class PolicyDesk:
    """Policies stored and served, over a :class:`PolicyStore`."""

    def __init__(self, store: PolicyStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    def put_policy(self, data: bytes, actor: str) -> tuple[PolicyRecord, PolicyPutOutcome]:
        """Store a signed policy; its tenant, groups and version come from its payload.

        The collector holds no IT trust keys, so it checks only that this is a
        signed envelope of a valid, unexpired policy; agents verify the
        signatures.
        """
        policy = signed_policy(data)
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
        outcome = self._store.put_policy(
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
        record = self._store.latest_policy(device.tenant, device.group)
        if record is None:
            raise NotFoundError(
                f"no policy for tenant {device.tenant!r}, group {device.group!r}", code="no_policy"
            )
        return record


def signed_policy(data: bytes) -> Policy:
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
