"""The admin pages' forms: reading a URL-encoded body within its limits, and its fields.

A form is a handful of short fields, so it is read here rather than by
python-multipart: only ``application/x-www-form-urlencoded`` (else 415), no
more than the configured bytes whether declared or streamed (else 413), at
most 32 fields, strict UTF-8 (else 400); the first value of a repeated field
wins. :class:`Form` turns fields into the values the routes need, raising
:class:`~collector.web.errors.FormError` with a sentence the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from collector.web.errors import FormError

#: The most characters a denial reason may have (the service's own limit).
MAX_REASON_CHARS = 2000
MAX_TOKEN_MINUTES = 30 * 24 * 60

#: Where a sign-in may send the admin next: a page of this collector only.
NEXT_URL = re.compile(r"/admin/[A-Za-z0-9_\-/]*")
#: What an exemption request id in a page's URL may look like.
REQUEST_ID = re.compile(r"[A-Za-z0-9._@+-]{1,128}")


@dataclass(frozen=True, slots=True)
class Form:
    fields: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def integer(self, name: str, label: str, low: int, high: int) -> int:
        text = self.get(name).strip()
        if not text.isdigit() or not low <= int(text) <= high:
            raise FormError(f"{label} must be a whole number from {low} to {high}.")
        return int(text)


class FormStatus(FormError):
    """A form the pages refuse before reading it (size or type)."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


async def read_form(request: Request, limit: int) -> Form:
    """The form of ``request``, or :class:`FormStatus` with the HTTP status to answer."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormStatus("Forms must be sent URL-encoded.", 415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormStatus(f"The form is larger than {limit} bytes.", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormStatus(f"The form is larger than {limit} bytes.", 413)
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=32, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormStatus("The form could not be read.", 400) from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return Form(fields)
