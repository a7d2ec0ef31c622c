"""Reading request bodies within their bounds, after the caller is known.

A declared ``Content-Length`` over the limit is refused unread
(:func:`check_declared_length`); a body is streamed and cut off with a 413
as soon as it passes the limit, and a 408 when nothing arrives for the idle
time or the whole outlasts the request's signed timestamp
(:func:`stream_body`, hashing as it reads for batches); JSON is validated by
the pydantic request models of :mod:`collector.schemas` (:func:`parse_json`).
Also the request target as a device signed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from collector.config import Admission
from collector.errors import (
    BodyTimeoutError,
    InvalidRequestError,
    PayloadTooLargeError,
)
from collector.service import AdmittedDevice
from overt.wire.signature import (
    MAX_SKEW_MS,
)

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)


def request_target(request: Request) -> str:
    return scope_target(request.scope)


def scope_target(scope: Any) -> str:
    """The request target as the device signed it: raw path, then ``?query`` if any."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


def check_declared_length(declared: str | None, limit: int) -> None:
    """Refuse a declared ``Content-Length`` over ``limit`` before anything is read."""
    if declared is None:
        return
    declared = declared.strip()
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidRequestError("Content-Length is not a number")
    if int(declared) > limit:
        raise PayloadTooLargeError(f"the body is over the {limit}-byte limit")


async def stream_body(
    receive: Any,
    limit: int,
    idle_seconds: float,
    within_seconds: float | None = None,
    *,
    digest: bool = False,
) -> tuple[bytes, bytes | None]:
    """The body and, if asked, its SHA-256, read as it arrives.

    Refused with a 413 as soon as it passes ``limit``, with a 408 when
    nothing arrives for ``idle_seconds`` or the whole takes longer than
    ``within_seconds``. Raises :class:`ClientGone` if the client leaves.
    """
    loop = asyncio.get_running_loop()
    hasher = hashlib.sha256() if digest else None
    chunks: list[bytes] = []
    total = 0
    end = None if within_seconds is None else loop.time() + max(0.0, within_seconds)
    try:
        async with asyncio.timeout(None) as timer:
            while True:
                when = loop.time() + idle_seconds
                timer.reschedule(when if end is None else min(when, end))
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLargeError(f"the body is over the {limit}-byte limit")
                if chunk:
                    chunks.append(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError as exc:
        raise BodyTimeoutError("the body stopped arriving before it was complete") from exc
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body, None if hasher is None else hasher.digest()


def signed_within(admitted: AdmittedDevice, now_ms: int) -> float:
    """Seconds until the request's timestamp is stale: after that it would be refused anyway."""
    return (admitted.claim.timestamp_ms + MAX_SKEW_MS - now_ms) / 1000


async def read_body(request: Request, limit: int, admission: Admission) -> bytes:
    try:
        body, _ = await stream_body(
            request.receive, limit, admission.body_idle_seconds, MAX_SKEW_MS / 1000
        )
    except ClientGone as exc:
        raise InvalidRequestError("the client left before its body was complete") from exc
    return body


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_json(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequestError(_describe(exc)) from exc
