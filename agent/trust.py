"""The trust holder: the one place the agent verifies a policy or a grant.

This module owns what the agent trusts and how it comes to trust it. Signed
bytes reach :class:`TrustHolder` from two sources — the local policy file
(``agent.policy_source``) and the collector (``agent.policy_sync``) — and
the holder, alone in the agent:

- verifies them with ``policies`` (a policy against the trust store's state:
  signatures, rotation, rollback, scope, expiry; a grant against the policy
  in force: admin key, category, tenant, device, validity);
- persists what it accepted: a policy through the trust store
  (``policies.store``), the signed grants in ``grants.json``
  (``agent.local_state``);
- hands the verified objects, as one :class:`InForce` value, to whoever
  subscribed (capture), in memory.

So capture never reads a policy or grant file and never verifies anything;
what it is handed has been verified once, here. The trust store is read once
per run for its last good policy (:meth:`TrustHolder.load`), and for its
rollback state on each offer, so that a policy accepted by another process
(``overt agent consent``) is never rolled back.

Grants are kept as the collector sent them (a grant that the policy in force
does not cover may be covered by the next one) and verified when they
arrive, when the stored ones are first read, and whenever another policy
comes into force, since which admin keys may grant what is the policy's to
say. Only the grants that verify are handed on.

A refused policy never changes what is in force or what is stored. A
refusal of the local file is shown in :attr:`InForce.problem` until a policy
is accepted; one from the collector is only returned to the caller (policy
sync logs it), as the collector is asked again anyway.

Offers may come from any thread. Verification, persistence and the handing
on happen under one lock, so subscribers see the changes in the order they
were made; a subscriber must not call back into the holder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from policies.errors import PolicyError
from policies.model import Grant, Policy, SignerSet
from policies.store import TrustStore, accept_policy_bytes
from policies.verify import DeviceScope, verify_grant, verify_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InForce:
    """What the agent trusts now: every member verified by the holder."""

    policy: Policy | None
    #: The exemption grants that verify against ``policy``.
    grants: tuple[Grant, ...] = ()
    #: Why the local policy file was refused, or why there is no policy; None if all is well.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyOrigin:
    """Where offered policy bytes come from, as a refusal names it."""

    #: The start of the problem's sentence, e.g. "policy file p.signed.json rejected".
    refused: str
    #: Whether a refusal is shown in :attr:`InForce.problem`.
    shown: bool

    @classmethod
    def file(cls, path: Path) -> PolicyOrigin:
        return cls(f"policy file {path.name} rejected", shown=True)


COLLECTOR = PolicyOrigin("the collector's policy was refused", shown=False)


@dataclass(frozen=True, slots=True)
class PolicyOffer:
    """What came of offering a policy to the holder."""

    #: Whether another policy is in force now.
    changed: bool
    #: Why the policy was refused, in words; None if it was accepted.
    problem: str | None = None


Listener = Callable[[InForce], None]


class GrantFile(Protocol):
    """Where the signed grants are kept (``LocalState``), and whose device this is."""

    def grants(self) -> list[bytes]: ...

    def save_grants(self, grants: list[bytes]) -> None: ...

    def device_id(self) -> str: ...


class TrustHolder:
    """Verifies policies and grants once, persists them, and hands them on.

    ``store`` is the device's trust store and ``grants`` its grant file (both
    of the agent's one :class:`~agent.local_state.LocalState`: pass
    ``local.trust, local``); ``trusted`` the pinned signer set; ``clock`` the
    agent's wall clock in epoch seconds.
    """

    def __init__(
        self,
        store: TrustStore,
        grants: GrantFile,
        trusted: SignerSet,
        device: DeviceScope,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._grants = grants
        self._trusted = trusted
        self._device = device
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._in_force = InForce(None)
        #: The SHA-256 of the payload in force, to tell a new policy from the same one.
        self._digest: str | None = None
        self._loaded = False
        #: The signed grants as stored (None until read from ``grants.json``).
        self._grant_bytes: list[bytes] | None = None

    @property
    def in_force(self) -> InForce:
        with self._lock:
            return self._in_force

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with what is in force now and after every change.

        Returns the function that ends the subscription.
        """
        with self._lock:
            self._listeners.append(listener)
            listener(self._in_force)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def load(self, now: float) -> InForce:
        """Settle what is in force at start: unless a policy offered in this run
        was accepted, the trust store's last good one, verified now; and the
        stored grants, verified against it.

        Raises ``LocalStateError`` when the grant file cannot be read.
        """
        with self._lock:
            if not self._loaded:
                self._loaded = True
                policy, problem = self._in_force.policy, self._in_force.problem
                if policy is None:
                    policy, problem = self._last_good(problem, now)
                self._publish(policy, problem, now, regrant=True)
            return self._in_force

    def offer_policy(self, data: bytes, now: float, origin: PolicyOrigin) -> PolicyOffer:
        """Verify signed policy bytes; if accepted and new, persist them and hand
        the policy on. A refusal changes neither the store nor what is in force."""
        with self._lock:
            try:
                policy, state = accept_policy_bytes(
                    data, self._store, self._trusted, self._device, _when(now)
                )
            except PolicyError as exc:
                return self._refused(exc, origin, now)
            changed = state.payload_sha256 != self._digest
            if changed:
                self._digest = state.payload_sha256
                log.info("policy version %d accepted", policy.version)
                self._publish(policy, None, now, regrant=True)
            elif origin.shown:
                self._publish(self._in_force.policy, None, now, regrant=False)
            return PolicyOffer(changed=changed)

    def refuse_policy(self, exc: PolicyError, origin: PolicyOrigin) -> PolicyOffer:
        """Record that bytes from ``origin`` could not even be read (``exc``)."""
        with self._lock:
            return self._refused(exc, origin, self._clock())

    def offer_grants(self, signed: Sequence[bytes], now: float) -> bool:
        """Store the grant list the collector sent, if it differs from the stored
        one, and hand on the grants that verify. Returns whether it differed.

        Raises ``LocalStateError`` when the grant file cannot be read or written
        (then nothing changed).
        """
        with self._lock:
            if sorted(signed) == sorted(self._stored_grants()):
                return False
            self._grants.save_grants(list(signed))
            self._grant_bytes = list(signed)
            log.info("%d exemption grants received", len(signed))
            in_force = self._in_force
            self._publish(in_force.policy, in_force.problem, now, regrant=True)
            return True

    # ------------------------------------------------------------ internals

    def _refused(self, exc: PolicyError, origin: PolicyOrigin, now: float) -> PolicyOffer:
        problem = f"{origin.refused} ({exc.label}): {exc}"
        log.warning("offered policy refused (%s)", type(exc).__name__)
        if origin.shown:
            self._publish(self._in_force.policy, problem, now, regrant=False)
        return PolicyOffer(changed=False, problem=problem)

    def _last_good(self, problem: str | None, now: float) -> tuple[Policy | None, str | None]:
        """The trust store's policy, verified against its own state."""
        try:
            held = self._store.load()
            if held is None:
                return None, problem or "no policy has been installed"
            policy, state = verify_policy(
                held.signed_policy, self._trusted, held.state, self._device, _when(now)
            )
        except PolicyError as exc:
            last = f"the last good policy cannot be used ({exc.label}): {exc}"
            return None, f"{problem}; {last}" if problem else last
        self._digest = state.payload_sha256
        log.info("policy version %d in force (the last good one)", policy.version)
        return policy, problem

    def _stored_grants(self) -> list[bytes]:
        if self._grant_bytes is None:
            self._grant_bytes = self._grants.grants()
        return self._grant_bytes

    def _publish(
        self, policy: Policy | None, problem: str | None, now: float, *, regrant: bool
    ) -> None:
        """Put ``policy`` in force with ``problem``, verifying the grants again
        if ``regrant`` (the policy or the grants changed), and hand it on.

        Before :meth:`load` no grant is verified: the stored ones are read then.
        """
        grants = self._in_force.grants
        if regrant:
            grants = self._verified_grants(policy, now) if self._loaded else ()
        in_force = InForce(policy, grants, problem)
        if in_force == self._in_force:
            return
        self._in_force = in_force
        for listener in list(self._listeners):
            listener(in_force)

    def _verified_grants(self, policy: Policy | None, now: float) -> tuple[Grant, ...]:
        if policy is None:
            return ()
        device_id = self._grants.device_id()
        grants: list[Grant] = []
        refused = 0
        for data in self._stored_grants():
            try:
                grants.append(verify_grant(data, policy, device_id, _when(now)))
            except PolicyError as exc:
                refused += 1
                log.info("exemption grant not applied (%s)", type(exc).__name__)
        if grants or refused:
            log.info("%d exemption grants in force, %d not applicable", len(grants), refused)
        return tuple(grants)


def _when(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)
