"""How the admin pages refuse a request.

Every class here is a :class:`collector.errors.CollectorError`, so the
collector's one exception tree still holds; the pages turn them into HTML
answers (never JSON) and nothing below :mod:`collector.web.pages` knows about
HTTP::

    CollectorError
    └── AdminPageError              base of the pages' own refusals
        ├── ForgedRequestError      a POST without a valid CSRF token, or
        │                           from a foreign Origin/Referer (a 403)
        ├── SignInThrottledError    too many failed sign-ins for this name
        │                           and address; ``retry_after`` seconds (a 429)
        └── FormError               a form field is missing or malformed;
                                    the message says which (nothing is changed)
"""

from __future__ import annotations

from collector.errors import CollectorError


class AdminPageError(CollectorError):
    """Base of the admin pages' own refusals."""

    code = "admin_page_error"


class ForgedRequestError(AdminPageError):
    """The form did not come from a page of this collector, or its session ended."""

    code = "forbidden"


class SignInThrottledError(AdminPageError):
    """Too many failed sign-ins for this name from this address."""

    code = "throttled"

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(f"too many failed sign-ins; try again in {seconds} s")
        self.retry_after = seconds


class FormError(AdminPageError):
    """A form field is missing or malformed."""

    code = "invalid_form"
