"""Which requests the collector starts at all, decided before a byte of their bodies is read.

- :class:`RateLimiter`: token buckets keyed by a string, a device id or a
  client address. A key may send ``burst`` requests at once and
  ``per_second`` after that; :meth:`RateLimiter.wait` says how long the next
  request must wait, :meth:`RateLimiter.charge` spends a token. At most
  ``max_keys`` buckets are kept (the least recently charged go first, and
  forgetting a bucket only gives it back its burst).
- :class:`AdmissionGate`: the outermost ASGI middleware of the app. It
  refuses a request when ``max_requests`` are already in flight (503
  ``overloaded``) or when the client address's bucket is empty (429
  ``rate_limited``), both with ``Retry-After``, before any route sees it.
  A request that ends without an authenticated caller (the routes set
  :data:`CALLER_SCOPE_KEY` in the ASGI scope once a device's signature or
  an admin's bearer token verified) is charged to its address: strangers,
  enrollment, the admin pages and every failed authentication pay there;
  an honest device pays only its own bucket
  (:class:`collector.service.CollectorService` charges it), an admin
  script with a valid token nothing.

In memory and per process: the counters start over at a restart, which
costs an abuser nothing it could not get by waiting. Time is the injected
clock's, so tests do not sleep. Thread-safe.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from typing import Any

from collector.config import Admission, Clock, RateLimit
from collector.errors import OverloadedError, RateLimitedError
from collector.http_errors import send_error

logger = logging.getLogger(__name__)

#: Set in the ASGI scope (to the actor) once a device or admin request is authenticated.
CALLER_SCOPE_KEY = "overt.caller"


def retry_after(wait_seconds: float) -> int:
    """A wait in whole seconds, as ``Retry-After`` says it (never 0)."""
    return max(1, math.ceil(wait_seconds))


class RateLimiter:
    """Token buckets per key: ``burst`` at once, then ``per_second``."""

    def __init__(self, limit: RateLimit, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._rate = limit.per_second
        self._burst = float(limit.burst)
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (tokens, at): the level when last charged, and when.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, entry: tuple[float, float], now: float) -> float:
        tokens, at = entry
        return min(self._burst, tokens + max(0.0, now - at) * self._rate)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may send its next request; 0 when it may now."""
        with self._lock:
            entry = self._buckets.get(key)
            level = self._burst if entry is None else self._level(entry, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self._rate

    def charge(self, key: str, now: float) -> None:
        """Spend one of ``key``'s tokens (none left: the bucket stays empty)."""
        with self._lock:
            entry = self._buckets.pop(key, None)
            level = self._burst if entry is None else self._level(entry, now)
            self._buckets[key] = (max(0.0, level - 1.0), now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(scope: Any) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AdmissionGate:
    """ASGI middleware: the in-flight cap and the per-address rate, ahead of every route."""

    def __init__(self, app: Any, admission: Admission, clock: Clock) -> None:
        self.app = app
        self._max_requests = admission.max_requests
        self._clock = clock
        self.addresses = (
            RateLimiter(admission.address_rate, admission.max_tracked)
            if admission.address_rate is not None
            else None
        )
        #: Requests between admission and their answer (the event loop's thread only).
        self.in_flight = 0

    def _now(self) -> float:
        return self._clock().timestamp()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.in_flight >= self._max_requests:
            logger.debug("request refused: %d requests in flight", self.in_flight)
            await send_error(send, OverloadedError("too many requests in flight", 1), path)
            return
        address = client_address(scope)
        addresses = self.addresses
        if addresses is not None:
            wait = addresses.wait(address, self._now())
            if wait > 0:
                logger.debug("request refused: address over its rate")
                refusal = RateLimitedError("too many requests from this address", retry_after(wait))
                await send_error(send, refusal, path)
                return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if addresses is not None and CALLER_SCOPE_KEY not in scope:
                addresses.charge(address, self._now())
