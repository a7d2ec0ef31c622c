"""Policy sync: fetch the current signed policy and this device's exemption
grants from the collector and hand them to the trust holder.

This module owns the agent's side of ``GET /v1/policy`` and ``GET /v1/grants``
(docs/PROTOCOL.md): conditional requests with the last ETag and the checks
of the grant list's shape and sizes. What it fetches goes as bytes to
:class:`~agent.trust.TrustHolder`, which verifies (the same checks as for the
file that device management drops in place: signatures, rollback, scope,
expiry), stores, and hands the result to capture; this module verifies and
stores nothing itself, and does not decide what the policy or grants mean.

A refused policy leaves the last good one in place and is reported as a
problem in words; a collector that cannot be reached is not a problem for
capture (the last good policy stays in force until it expires).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from agent.remote import CollectorClient, RemoteError
from agent.trust import COLLECTOR, TrustHolder
from policies.envelope import MAX_GRANT_BYTES

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
    """Keeps what the trust holder holds in step with the collector."""

    def __init__(self, remote: CollectorClient, trust: TrustHolder) -> None:
        self._remote = remote
        self._trust = trust
        self._policy_etag: str | None = None
        self._grants_etag: str | None = None

    def sync(self, now: float) -> SyncResult:
        """One round: policy, then grants. Never raises for network or bad data."""
        policy_changed, problem = self._sync_policy(now)
        grants_changed, grants_problem = self._sync_grants(now)
        return SyncResult(policy_changed, grants_changed, problem or grants_problem)

    def _get(self, path: str, etag: str | None) -> tuple[int, bytes, str | None]:
        headers = {"If-None-Match": etag} if etag else None
        response = self._remote.request("GET", path, headers=headers)
        return response.status_code, response.content, response.headers.get("ETag")

    def _sync_policy(self, now: float) -> tuple[bool, str | None]:
        try:
            status, body, etag = self._get("/v1/policy", self._policy_etag)
        except RemoteError as exc:
            return False, str(exc)
        if status in (304, 404):
            return False, None
        if status != 200:
            return False, f"the collector answered the policy request with HTTP {status}"
        offer = self._trust.offer_policy(body, now, COLLECTOR)
        # After a refusal too: a fixed policy may replace this one under a new ETag.
        self._policy_etag = etag
        return offer.changed, offer.problem

    def _sync_grants(self, now: float) -> tuple[bool, str | None]:
        try:
            response = self._remote.request(
                "GET",
                "/v1/grants",
                headers={"If-None-Match": self._grants_etag} if self._grants_etag else None,
            )
        except RemoteError as exc:
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
        return self._trust.offer_grants(grants, now), None
