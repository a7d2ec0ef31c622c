"""Failed sign-in throttling: a counter per (name, address) with exponential backoff.

``free_failures`` failed sign-ins for one (lower-cased name, client
address) are free guesses; the last of them starts a wait of
``base_delay`` before the next attempt, and each failure after it doubles
the wait, up to ``max_delay``. With 3, a guesser gets exactly 3 attempts
before the first wait. While a key must wait,
the password is not even checked. A success clears the key; a key whose
wait is long over is forgotten. At most ``max_keys`` keys are kept (the
oldest go first), so a flood of made-up names cannot grow memory.

In memory and per process on purpose: losing the counters at a restart
costs an attacker's one restart's worth of guesses, and scrypt already makes
each guess expensive. Thread-safe; time comes from the injected clock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.config import Clock
from collector.web.errors import SignInThrottledError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Failures:
    count: int
    blocked_until: datetime


class SignInThrottle:
    """Counts failed sign-ins and says how long the next attempt must wait."""

    def __init__(
        self,
        clock: Clock,
        *,
        free_failures: int,
        base_delay: timedelta,
        max_delay: timedelta,
        max_keys: int = 10_000,
    ) -> None:
        self._clock = clock
        self._free = free_failures
        self._base = base_delay
        self._max = max_delay
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], _Failures] = {}

    @staticmethod
    def _key(name: str, address: str) -> tuple[str, str]:
        return (name.strip().lower(), address)

    def check(self, name: str, address: str) -> None:
        """Raise :class:`SignInThrottledError` if this (name, address) must still wait."""
        now = self._clock()
        with self._lock:
            entry = self._failures.get(self._key(name, address))
            if entry is not None and entry.blocked_until > now:
                raise SignInThrottledError((entry.blocked_until - now).total_seconds())

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        key = self._key(name, address)
        with self._lock:
            entry = self._failures.pop(key, None)
            if entry is not None and now - entry.blocked_until > self._max:
                entry = None  # long quiet: start counting again
            count = 1 if entry is None else entry.count + 1
            # The free_failures-th failure is the first that makes the next attempt wait.
            over = count - self._free + 1
            delay = (
                timedelta(0) if over <= 0 else min(self._max, self._base * (2 ** min(over - 1, 30)))
            )
            self._failures[key] = _Failures(count, now + delay)
            while len(self._failures) > self._max_keys:
                del self._failures[next(iter(self._failures))]
        if over > 0:
            logger.warning("sign-in throttled after %d failures", count)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop(self._key(name, address), None)
