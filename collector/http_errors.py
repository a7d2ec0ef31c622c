"""How a :class:`~collector.errors.CollectorError` is answered over HTTP.

One table maps the error classes to statuses; :func:`error_parts` gives the
status, the JSON body (``{"error": code, "detail": words}``) and the extra
headers (``Retry-After``, ``Connection: close``, ``WWW-Authenticate``), and
:func:`send_error` writes them on a raw ASGI ``send``: the app's routes, its
batch fast path and the admission gate in front of both answer the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from collector.errors import (
    BodyTimeoutError,
    CollectorError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    RetryLaterError,
    StorageError,
    UnauthorizedError,
)

logger = logging.getLogger(__name__)

JSON = "application/json"

_STATUS: tuple[tuple[type[CollectorError], int], ...] = (
    (UnauthorizedError, 401),
    (NotFoundError, 404),
    (BodyTimeoutError, 408),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidRequestError, 422),
    (RateLimitedError, 429),
    (OverloadedError, 503),
    (StorageError, 503),
)

#: What a client waits before retrying when the store cannot write.
STORAGE_RETRY_AFTER = 5


def status_of(exc: CollectorError) -> int:
    return next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)


def error_parts(exc: CollectorError, path: str) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers of the answer to ``exc`` on ``path``."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    detail = exc.detail
    if status == 401:
        # One answer for every reason: the reason is in the debug log only.
        detail = (
            "bad, used or expired enrollment token"
            if path == "/v1/enroll"
            else "authentication failed"
        )
        if path.startswith("/v1/admin/"):
            headers["WWW-Authenticate"] = "Bearer"
    elif status in {408, 413}:
        # The rest of the body is not wanted: the connection cannot be reused.
        headers["Connection"] = "close"
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, StorageError):
        headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
        logger.error("store unavailable: %s", exc)
    elif status == 500:
        logger.error("internal error %s: %s", exc.code, exc)
    return status, json.dumps({"error": exc.code, "detail": detail}).encode(), headers


async def send_error(send: Any, exc: CollectorError, path: str) -> None:
    """Answer ``exc`` on a raw ASGI connection."""
    status, payload, extra = error_parts(exc, path)
    await send_json(send, status, payload, extra)


async def send_json(send: Any, status: int, payload: bytes, extra: dict[str, str]) -> None:
    headers = [
        (b"content-type", JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
