"""Policy sync: fetch the current signed policy and this device's exemption
grants from the collector, verify, store atomically.

This module owns the agent's side of ``GET /v1/policy`` and ``GET /v1/grants``
(docs/PROTOCOL.md): conditional requests with the last ETag, verification of
a new policy with ``policies`` against the device's trust store (the same
checks as a file that device management drops in place: signatures, rollback,
scope, expiry), and the atomic replacement of the stored grants. It does not
decide what the policy or grants mean for capture (the agent applies them).

A refused policy leaves the last good one in place and is reported as a
problem in words; a collector that cannot be reached is not a problem for
capture (the last good policy stays in force until it expires).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.local_state import LocalState
from agent.remote import CollectorClient, CollectorError
from policies.envelope import MAX_GRANT_BYTES
from policies.errors import PolicyError
from policies.model import SignerSet
from policies.store import accept_policy_bytes
from policies.verify import DeviceScope

log = logging.getLogger(__name__)

_MAX_GRANTS = 256


@dataclass(frozen=True, slots=True)
class SyncResult:
    policy_changed: bool = False
    grants_changed: bool = False
    #: Why a fetched policy or grant list was refused, or why the collector
    #: could not be asked; None when all went well.
    problem: str | None = None


class PolicySync:
    """Keeps the trust store and the stored grants in step with the collector."""

    def __init__(
        self,
        remote: CollectorClient,
        local: LocalState,
        trusted: SignerSet,
        device: DeviceScope,
    ) -> None:
        self._remote = remote
        self._local = local
        self._trusted = trusted
        self._device = device
        self._policy_etag: str | None = None
        self._grants_etag: str | None = None

    def sync(self, now: float) -> SyncResult:
        """One round: policy, then grants. Never raises for network or bad data."""
        policy_changed, problem = self._sync_policy(now)
        grants_changed, grants_problem = self._sync_grants()
        return SyncResult(policy_changed, grants_changed, problem or grants_problem)

    def _get(self, path: str, etag: str | None) -> tuple[int, bytes, str | None]:
        headers = {"If-None-Match": etag} if etag else None
        response = self._remote.request("GET", path, headers=headers)
        return response.status_code, response.content, response.headers.get("ETag")

    def _sync_policy(self, now: float) -> tuple[bool, str | None]:
        try:
            status, body, etag = self._get("/v1/policy", self._policy_etag)
        except CollectorError as exc:
            return False, str(exc)
        if status in (304, 404):
            return False, None
        if status != 200:
            return False, f"the collector answered the policy request with HTTP {status}"
        held = self._local.trust.load()
        before = None if held is None else held.state
        try:
            _, state = accept_policy_bytes(
                body,
                self._local.trust,
                self._trusted,
                self._device,
                datetime.fromtimestamp(now, UTC),
            )
        except PolicyError as exc:
            log.warning("policy from the collector refused (%s)", type(exc).__name__)
            # Keep asking: a fixed policy may replace this one under a new ETag.
            self._policy_etag = etag
            return False, f"the collector's policy was refused ({exc.label}): {exc}"
        self._policy_etag = etag
        changed = state != before
        if changed:
            log.info("policy version %d received from the collector", state.version)
        return changed, None

    def _sync_grants(self) -> tuple[bool, str | None]:
        try:
            response = self._remote.request(
                "GET",
                "/v1/grants",
                headers={"If-None-Match": self._grants_etag} if self._grants_etag else None,
            )
        except CollectorError as exc:
            return False, str(exc)
        if response.status_code == 304:
            return False, None
        if response.status_code != 200:
            return (
                False,
                f"the collector answered the grants request with HTTP {response.status_code}",
            )
        try:
            items = response.json()["grants"]
            if not isinstance(items, list) or len(items) > _MAX_GRANTS:
                raise TypeError("not a list of grants")
            grants = [base64.b64decode(item, validate=True) for item in items]
            if any(len(g) > MAX_GRANT_BYTES for g in grants):
                raise ValueError("grant over the size limit")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            return False, f"the collector's grant list is malformed: {exc}"
        self._grants_etag = response.headers.get("ETag")
        if sorted(grants) == sorted(self._local.grants()):
            return False, None
        self._local.save_grants(grants)
        log.info("%d exemption grants received from the collector", len(grants))
        return True, None
