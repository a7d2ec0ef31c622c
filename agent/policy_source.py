"""The local policy file: the signed file device management drops in place.

This module owns reading the file given with ``--policy`` and watching it
for replacement by IT: :class:`PolicyFileSource` hands its bytes to the
:class:`~agent.trust.TrustHolder` at start and again whenever the file was
replaced (another modification time or size), looking every few seconds of
the agent's clock on its own thread (``overt-policy-file``). It verifies and
stores nothing itself, and it never looks at a file the agent writes (the
trust store is the holder's).

:func:`load_policy` answers, once, which policy a command that is not the
running agent (``overt agent consent``, tests) would put in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from agent.trust import InForce, PolicyOffer, PolicyOrigin, TrustHolder
from policies.envelope import MAX_POLICY_BYTES
from policies.errors import PolicyError
from policies.model import SignerSet
from policies.store import TrustStore, read_file_limited
from policies.verify import DeviceScope

log = logging.getLogger(__name__)

#: How often, on the agent's clock, to look whether the file was replaced.
CHECK_INTERVAL_S = 5.0
#: How often the watching thread wakes to compare the clock with that.
_WAKE_S = 0.5


class PolicyFileSource:
    """Offers the policy file at ``path`` to ``trust`` at start and after each replacement."""

    def __init__(
        self,
        path: Path,
        trust: TrustHolder,
        clock: Callable[[], float],
        *,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.path = path
        self._trust = trust
        self._clock = clock
        self._interval_s = interval_s
        self._origin = PolicyOrigin.file(path)
        self._seen: tuple[int, int] | None = None
        self._next_check = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, now: float) -> PolicyOffer:
        """Read the file now and hand its bytes (or why it is unreadable) to the holder."""
        self._seen = self._signature()
        self._next_check = now + self._interval_s
        try:
            data = read_file_limited(self.path, MAX_POLICY_BYTES)
        except PolicyError as exc:
            return self._trust.refuse_policy(exc, self._origin)
        return self._trust.offer_policy(data, now, self._origin)

    def check(self, now: float) -> PolicyOffer | None:
        """Offer the file again if it was replaced since it was last read
        (looked at once per interval); None when there was nothing to offer."""
        if now < self._next_check:
            return None
        self._next_check = now + self._interval_s
        seen = self._signature()
        if seen is None or seen == self._seen:
            return None
        log.info("policy file changed; offering it")
        return self.offer(now)

    def start(self) -> None:
        """Watch the file on a thread of its own until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="overt-policy-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(_WAKE_S):
            try:
                self.check(self._clock())
            except Exception:
                # Watching must never take the agent down; the next look retries.
                log.exception("checking the policy file failed")

    def _signature(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


class _NoGrants:
    """The grant file of a one-off look: no grants, none kept."""

    def grants(self) -> list[bytes]:
        return []

    def save_grants(self, grants: list[bytes]) -> None:
        return None

    def device_id(self) -> str:
        return ""


def load_policy(
    store: TrustStore,
    trusted: SignerSet,
    device: DeviceScope,
    now: float,
    offered: Path | None = None,
) -> InForce:
    """The policy a holder over ``store`` puts in force now, and any problem worth
    showing: the ``offered`` file if it is accepted (it is then stored), else
    the last good one. Never raises for a bad policy file."""
    trust = TrustHolder(store, _NoGrants(), trusted, device, lambda: now)
    if offered is not None:
        PolicyFileSource(offered, trust, lambda: now).offer(now)
    return trust.load(now)
