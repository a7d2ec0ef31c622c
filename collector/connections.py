"""What one serving collector holds open for its clients: connections and their deadlines.

uvicorn closes a kept-alive connection that stays quiet after an answer, but
not a connection that never sends a request, nor one that sends its request
head a byte at a time, and its own cap (``limit_concurrency``) counts idle
connections too, so that strangers holding idle connections would make
every device's upload a 503. :func:`guarded_protocol` adds to uvicorn's HTTP
protocol (httptools or h11, whichever it picked):

- **A header deadline.** A new connection must deliver a complete request
  head within ``header_timeout_seconds``. A kept-alive connection may stay
  quiet for ``keep_alive_seconds`` (uvicorn's own timer), and from the first
  byte after an answer (the rest of a refused body, or the next request) the
  same deadline runs again. Past it the connection is closed without an
  answer.
- **A cap.** At most ``max_connections`` are counted open at once. At the cap,
  a new connection closes the one that has waited longest for a request
  head: never-used connections first, then kept-alive ones; a connection in
  the middle of a request is never closed for this. If every connection is
  in a request, the new one is answered ``503 overloaded`` with
  ``Retry-After`` and closed.

An honest device therefore gets a connection however many idle ones
strangers hold, and a stranger holds none for longer than the header
deadline. :func:`connection_cap` lowers the cap to what the process's file
limit leaves room for. Everything here runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from collector.config import ConnectionLimits

logger = logging.getLogger(__name__)

#: File descriptors kept for the store (SQLite and its WAL, blob segments, the
#: lock), the listening socket, the event loop and the log streams.
FD_RESERVE = 64

_BUSY_BODY = json.dumps(
    {"error": "overloaded", "detail": "too many connections are in a request"}
).encode()
#: The answer to a connection over the cap when none can make room for it.
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


def connection_cap(wanted: int, reserve: int = FD_RESERVE) -> int:
    """``wanted``, or fewer if the file limit (raised up to its hard limit) leaves no room."""
    try:
        import resource
    except ImportError:  # not Unix: no file limit to read
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(1, min(wanted, soft - reserve))
    if cap < wanted:
        logger.warning(
            "at most %d connections: the file limit is %d (raise it for %d)", cap, soft, wanted
        )
    return cap


class ConnectionGuard:
    """The cap and the connections waiting for a request head, for one server."""

    def __init__(self, max_connections: int, header_timeout_seconds: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout_seconds
        #: Counted open: admitted and neither lost nor closed to make room.
        self.open = 0
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0
        # Waiting for a request head, oldest first (dicts keep insertion order).
        self._fresh: dict[Any, None] = {}
        self._kept: dict[Any, None] = {}

    def admit(self, connection: Any) -> bool:
        """Count a new connection in, closing an idle one at the cap; ``False``: refuse it."""
        if self.open >= self.max_connections:
            victim = next(iter(self._fresh), None)
            if victim is None:
                victim = next(iter(self._kept), None)
            if victim is None:
                self.refused += 1
                return False
            self.release(victim)
            victim.close_for_room()
            self.evicted += 1
        self.open += 1
        connection.counted = True
        self._fresh[connection] = None
        return True

    def busy(self, connection: Any) -> None:
        """The connection delivered a request head."""
        self._fresh.pop(connection, None)
        self._kept.pop(connection, None)

    def waiting(self, connection: Any) -> None:
        """The connection was answered and waits for its next request."""
        self._kept.pop(connection, None)
        self._kept[connection] = None

    def release(self, connection: Any) -> None:
        """The connection no longer counts (closed, or closing to make room)."""
        if connection.counted:
            self.open -= 1
            connection.counted = False
        self._fresh.pop(connection, None)
        self._kept.pop(connection, None)


def guarded_protocol(base: type[asyncio.Protocol], guard: ConnectionGuard) -> type[Any]:
    """uvicorn's HTTP protocol ``base`` with ``guard``'s cap and header deadline."""

    class GuardedProtocol(base):  # type: ignore[valid-type, misc]
        counted = False
        _deadline: asyncio.TimerHandle | None = None
        _waiting = True
        _seen: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if not guard.admit(self):
                logger.debug("connection refused: %d in a request", guard.open)
                transport.write(BUSY_ANSWER)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.counted:
                return
            cycle = self.cycle
            if cycle is not None and cycle is not self._seen:
                # A request head was parsed: it is a request now, not a wait.
                self._seen = cycle
                self._waiting = False
                self._disarm()
                guard.busy(self)
            elif self._waiting and self._deadline is None:
                self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            idle = cycle is None or cycle.response_complete
            if self.counted and idle and not self.transport.is_closing():
                self._waiting = True
                guard.waiting(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.release(self)
            super().connection_lost(exc)

        def close_for_room(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(guard.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                guard.timed_out += 1
                self.transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def guard_for(limits: ConnectionLimits) -> ConnectionGuard:
    return ConnectionGuard(connection_cap(limits.max_connections), limits.header_timeout_seconds)
