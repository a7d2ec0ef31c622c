"""The admin pages' configuration: one typed object, built at the entry point.

Nothing here reads the environment; ``overt collector serve`` (or a test)
builds :class:`AdminPagesConfig` and hands it to
:func:`collector.web.install_admin_pages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class AdminPagesConfig:
    """Session lifetimes, cookie security, sign-in throttling and page sizes."""

    #: Mark the session cookie ``Secure`` even on plain-HTTP requests (set it
    #: when TLS ends at a proxy that does not say so). Requests that arrive
    #: over HTTPS always get ``Secure``.
    force_secure_cookies: bool = False
    #: A session unused for this long is over.
    session_idle: timedelta = timedelta(minutes=30)
    #: A session is over this long after sign-in, however busy.
    session_absolute: timedelta = timedelta(hours=12)
    #: A sign-in page's anonymous session (it only carries the CSRF token).
    anonymous_session_idle: timedelta = timedelta(minutes=15)
    #: At most this many anonymous sessions are kept; the oldest goes first.
    max_anonymous_sessions: int = 2000
    #: Failed sign-ins allowed per (name, address) before a wait is imposed.
    sign_in_free_failures: int = 3
    #: The first wait; each further failure doubles it, up to the maximum.
    sign_in_base_delay: timedelta = timedelta(seconds=2)
    sign_in_max_delay: timedelta = timedelta(minutes=15)
    #: Origins (``scheme://host[:port]``) accepted on POSTs besides the
    #: collector's own, e.g. the public name of a TLS-terminating proxy.
    trusted_origins: tuple[str, ...] = ()
    #: Largest form body accepted, checked before the body is read.
    max_form_bytes: int = 16 * 1024
    #: Audit events per page.
    audit_page_size: int = 50
