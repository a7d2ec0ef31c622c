"""Which policy is in force: a newly dropped file, else the last good one.

This module owns the agent's side of policy acceptance at start and on
change: read the file device management dropped in place, verify it with
``policies`` against the device's trust store, and fall back to the last good
policy when the new file is rejected. It returns a value saying what is in
force and, when something was refused, why; it never raises for a bad policy
file, because a bad file must not stop the agent from explaining itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from policies.errors import PolicyError
from policies.model import Policy, SignerSet
from policies.store import TrustStore, accept_policy_file
from policies.verify import DeviceScope, verify_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    policy: Policy | None
    #: Why the offered file was refused, or why there is no policy; None if all is well.
    problem: str | None = None


def load_policy(
    store: TrustStore,
    trusted: SignerSet,
    device: DeviceScope,
    now: float,
    offered: Path | None = None,
) -> PolicyInForce:
    """The policy to enforce now, and any problem worth showing the user."""
    when = datetime.fromtimestamp(now, UTC)
    problem: str | None = None
    if offered is not None:
        try:
            policy, _ = accept_policy_file(offered, store, trusted, device, when)
        except PolicyError as exc:
            problem = f"policy file {offered.name} rejected ({exc.label}): {exc}"
            log.warning("policy file rejected (%s)", type(exc).__name__)
        else:
            log.info("policy version %d in force", policy.version)
            return PolicyInForce(policy)
    try:
        held = store.load()
        if held is None:
            return PolicyInForce(None, problem or "no policy has been installed")
        policy, _ = verify_policy(held.signed_policy, trusted, held.state, device, when)
    except PolicyError as exc:
        last = f"the last good policy cannot be used ({exc.label}): {exc}"
        return PolicyInForce(None, f"{problem}; {last}" if problem else last)
    return PolicyInForce(policy, problem)
