"""Cross-site request forgery defences for the admin pages' forms.

Two independent checks, both required on every POST:

1. **Origin.** The request's ``Origin`` header (or, when a browser sent
   none, the origin of its ``Referer``) must be the collector's own origin
   or one of the configured trusted origins. A request with neither header,
   or with ``Origin: null``, is refused: every browser this page supports
   sends ``Origin`` on a form POST.
2. **Token.** The form's hidden ``csrf_token`` must equal the session's
   token, compared with :func:`hmac.compare_digest`.

Pure functions of strings; the route layer supplies the headers and the
session.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from collector.web.errors import ForgedRequestError

#: The hidden form field every POST form carries.
FIELD = "csrf_token"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str | None:
    """``scheme://host:port`` in lower case with the port spelled out; ``None`` if unusable."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port or _DEFAULT_PORTS[scheme]}"


def check_origin(
    origin: str | None, referer: str | None, own_origin: str, trusted: Iterable[str] = ()
) -> None:
    """Raise :class:`ForgedRequestError` unless the request came from an allowed origin."""
    allowed = {normalise_origin(o) for o in (own_origin, *trusted)} - {None}
    if origin is not None:
        if normalise_origin(origin) not in allowed:
            raise ForgedRequestError("the form was posted from another site")
        return
    if referer:
        if normalise_origin(referer) not in allowed:
            raise ForgedRequestError("the form was posted from another site")
        return
    raise ForgedRequestError("the request names no origin")


def check_token(expected: str, submitted: str | None) -> None:
    """Raise :class:`ForgedRequestError` unless ``submitted`` is the session's token."""
    if not submitted or not hmac.compare_digest(
        expected.encode("utf-8"), submitted.encode("utf-8")
    ):
        raise ForgedRequestError("the form's CSRF token is missing or wrong")
