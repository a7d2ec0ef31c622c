"""Admin sign-in sessions: random ids, kept server-side in memory, with expiry.

A session is what the ``overt_admin`` cookie names: 32 random bytes
(URL-safe base64), looked up here by their SHA-256 so that the table never
holds a usable cookie value. Each session carries its own CSRF token and a
one-shot message ("flash") that the next page shows once.

Two kinds of session live here:

- **signed in** (``admin`` is the admin's name): over after
  ``session_idle`` without a request, and ``session_absolute`` after
  sign-in however busy; :meth:`SessionStore.end` ends one at sign-out.
- **anonymous** (``admin`` is ``None``): created by the sign-in page to carry
  the CSRF token of its form, so that signing in is protected like every
  other form. Short-lived, and capped at ``max_anonymous_sessions`` (the
  oldest is dropped first) so that fetching the sign-in page in a loop
  cannot grow memory. Signing in never upgrades an anonymous session: it
  ends it and starts a new one with a new id (no session fixation).

Why memory and not the collector's store: a session is a short-lived
credential that nothing else needs; keeping it out of SQLite means no
session secret ever reaches the disk or a backup, and a restart of the
collector simply signs everyone out. The cost: sessions are per process, so
a fleet of several collector processes behind a load balancer needs sticky
sessions, or a store implementing the same four methods over the shared
database.

Crash guarantee: none needed — after a crash every session is gone and
admins sign in again. Thread-safe (route functions run in a thread pool).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from starlette.responses import Response

from collector.config import Clock

logger = logging.getLogger(__name__)

#: The cookie's name. Not ``__Host-``-prefixed: that prefix demands ``Path=/``
#: and this cookie is scoped to ``/admin``.
COOKIE_NAME = "overt_admin"


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8")).digest()


@dataclass(slots=True)
class AdminSession:
    """One session. ``session_id`` is the cookie value; keep it out of logs."""

    session_id: str
    admin: str | None
    csrf_token: str
    created_at: datetime
    last_seen: datetime
    #: Shown once by the next page that renders, then cleared.
    flash: list[tuple[str, str]] = field(default_factory=list)
    #: A secret to show exactly once (a new enrollment token), then cleared.
    reveal: dict[str, str] | None = None

    @property
    def signed_in(self) -> bool:
        return self.admin is not None

    def pop_flash(self) -> list[tuple[str, str]]:
        messages, self.flash = self.flash, []
        return messages

    def pop_reveal(self) -> dict[str, str] | None:
        secret, self.reveal = self.reveal, None
        return secret


class SessionStore:
    """Sessions in memory, with idle and absolute expiry against an injected clock."""

    def __init__(
        self,
        clock: Clock,
        *,
        idle: timedelta,
        absolute: timedelta,
        anonymous_idle: timedelta,
        max_anonymous: int,
    ) -> None:
        self._clock = clock
        self._idle = idle
        self._absolute = absolute
        self._anonymous_idle = anonymous_idle
        self._max_anonymous = max_anonymous
        self._lock = threading.Lock()
        #: SHA-256 of the session id -> session; insertion order is age order.
        self._sessions: dict[bytes, AdminSession] = {}

    def start(self, admin: str | None) -> AdminSession:
        """A new session (signed in as ``admin``, or anonymous) with fresh secrets."""
        now = self._clock()
        session = AdminSession(
            session_id=secrets.token_urlsafe(32),
            admin=admin,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
        )
        with self._lock:
            self._purge(now)
            self._sessions[_digest(session.session_id)] = session
            if admin is None:
                self._cap_anonymous()
        if admin is not None:
            logger.info("admin session started (%d sessions)", len(self._sessions))
        return session

    def get(self, session_id: str | None) -> AdminSession | None:
        """The live session with this id, its idle timer restarted; ``None`` if over."""
        if not session_id or len(session_id) > 128:
            return None
        now = self._clock()
        key = _digest(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def end(self, session_id: str | None) -> bool:
        """End a session (sign-out); ``False`` if there was none."""
        if not session_id:
            return False
        with self._lock:
            return self._sessions.pop(_digest(session_id), None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expired(self, session: AdminSession, now: datetime) -> bool:
        if session.admin is None:
            return now - session.last_seen >= self._anonymous_idle
        return now - session.last_seen >= self._idle or now - session.created_at >= self._absolute

    def _purge(self, now: datetime) -> None:
        expired = [key for key, s in self._sessions.items() if self._expired(s, now)]
        for key in expired:
            del self._sessions[key]

    def _cap_anonymous(self) -> None:
        anonymous = [key for key, s in self._sessions.items() if s.admin is None]
        for key in anonymous[: max(0, len(anonymous) - self._max_anonymous)]:
            del self._sessions[key]


def set_session_cookie(response: Response, session_id: str, path: str, *, secure: bool) -> None:
    """Send the session cookie (``HttpOnly``, ``SameSite=Strict``, no ``Max-Age``).

    An empty ``session_id`` clears the cookie instead.
    """
    if not session_id:
        response.set_cookie(
            COOKIE_NAME,
            "",
            max_age=0,
            expires=0,
            httponly=True,
            samesite="strict",
            secure=secure,
            path=path,
        )
        return
    response.set_cookie(
        COOKIE_NAME, session_id, httponly=True, samesite="strict", secure=secure, path=path
    )
