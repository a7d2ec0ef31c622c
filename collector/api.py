"""The collector's HTTP API (``docs/PROTOCOL.md``, version 1) on FastAPI.

:func:`create_app` builds the whole app in-process from a
:class:`~collector.config.CollectorConfig` (tests hand it an injected clock
and a temporary data directory); ``overt collector serve`` runs the same app
on uvicorn. This module owns only HTTP: who is asked to wait before anything
else (:class:`~collector.admission.AdmissionGate`), authenticating the caller
before a byte of the body is read, reading bodies within their limits (a
declared ``Content-Length`` over the limit is refused unread; a chunked body
is cut off as soon as it passes the limit; a body that stops arriving is a
408), turning JSON into request models, and mapping
:class:`~collector.errors.CollectorError` codes to statuses
(:mod:`collector.http_errors`). Every rule lives in
:class:`~collector.service.CollectorService`, which the app exposes as
``app.state.service`` so that other routers (the admin web pages) can be
added with ``app.include_router`` and call the same service.

A device request is admitted from its headers alone
(:meth:`CollectorService.admit_device`: signature headers well formed, a
fresh timestamp, an enrolled and unrevoked device under its rate); its body
is then streamed (hashed as it arrives for batches) and the signature over
it checked. An admin request's bearer token is checked before its body is
read.

``/openapi.json`` is generated from the routes and from the request models
the bodies are validated with, so that it states every rule the server
enforces; ``tests/collector/test_schemathesis.py`` fuzzes the real process
against it. Statuses: 401 for any authentication failure (one body, whatever
the reason), 404, 405 with every allowed method in ``Allow``, 408 for a
stalled body, 409 for conflicts, 413 for bodies over a limit, 422 for
malformed input, 429 and 503 with ``Retry-After``. No input makes the app
answer 5xx otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, BeforeValidator, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from collector import schemas
from collector.admission import CALLER_SCOPE_KEY, AdmissionGate
from collector.auth import AdminIdentity
from collector.config import Admission, CollectorConfig, Limits, iso
from collector.errors import (
    BodyTimeoutError,
    CollectorError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from collector.http_errors import JSON, error_parts, send_json
from collector.service import AdmittedDevice, CollectorService
from collector.store.protocols import Storage
from collector.store.records import (
    AuditEvent,
    BatchOutcome,
    DeviceRecord,
    ExemptionRecord,
    ExemptionStatus,
    PolicyPutOutcome,
)
from collector.store.sqlite import SQLiteStorage
from overt.wire.sealed import MAX_SEALED_BYTES, MEDIA_TYPE
from overt.wire.signature import (
    DEVICE_HEADER,
    MAX_SKEW_MS,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

logger = logging.getLogger(__name__)

API_VERSION = "1"
BATCHES_PATH = "/v1/batches"
_M = TypeVar("_M", bound=BaseModel)


def _error(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.ErrorOut, "description": description}}


_E401 = _error(401, "authentication failed (one answer for every reason)")
_E408 = _error(408, "body_timeout: the body stopped arriving; the connection is closed")
_E413 = _error(413, "body over the limit; refused before it is read")
_E422 = _error(422, "malformed request")
_E429 = _error(429, "rate_limited: over the device's or the address's rate; see Retry-After")
_E503 = _error(
    503, "overloaded, or the store cannot write now (storage_error); retry after Retry-After"
)
#: What any request may be answered, whatever it is.
_BOUNDS = {**_E429, **_E503}
#: What any request with a body may be answered besides.
_BODY = {**_E408, **_E413, **_E422}

#: The device signature headers, as security schemes that hold together
#: (``overt/wire/signature.py``): a device request carries all four.
_DEVICE_SCHEMES = {
    "overtDevice": DEVICE_HEADER,
    "overtTimestamp": TIMESTAMP_HEADER,
    "overtNonce": NONCE_HEADER,
    "overtSignature": SIGNATURE_HEADER,
}
_DEVICE_SECURITY: dict[str, Any] = {"security": [{scheme: [] for scheme in _DEVICE_SCHEMES}]}
_ADMIN_SECURITY: dict[str, Any] = {"security": [{"bearer": []}]}


def _json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The request body of an operation: the JSON Schema of the model that validates it."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {JSON: {"schema": ref}}}}


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _ok(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json().encode("utf-8"), status_code=status, media_type=JSON)


def _target(request: Request) -> str:
    return _scope_target(request.scope)


def _scope_target(scope: Any) -> str:
    """The request target as the device signed it: raw path, then ``?query`` if any."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


# -------------------------------------------------------------------- bodies


class _ClientGone(Exception):
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
    ``within_seconds``. Raises :class:`_ClientGone` if the client leaves.
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
                    raise _ClientGone
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


def _signed_within(admitted: AdmittedDevice, now_ms: int) -> float:
    """Seconds until the request's timestamp is stale: after that it would be refused anyway."""
    return (admitted.claim.timestamp_ms + MAX_SKEW_MS - now_ms) / 1000


async def read_body(request: Request, limit: int, admission: Admission) -> bytes:
    try:
        body, _ = await stream_body(
            request.receive, limit, admission.body_idle_seconds, MAX_SKEW_MS / 1000
        )
    except _ClientGone as exc:
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


def _query_int(value: Any) -> Any:
    """A query integer as JSON Schema reads one: digits, or digits and a zero fraction."""
    if isinstance(value, str):
        whole, dot, fraction = value.partition(".")
        if (
            whole.isascii()
            and whole.isdigit()
            and (not dot or (fraction.isascii() and fraction.isdigit() and not fraction.strip("0")))
        ):
            return int(whole)
        raise ValueError("must be an integer")
    return value


QueryInt = BeforeValidator(_query_int)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _exemption_out(record: ExemptionRecord) -> schemas.ExemptionOut:
    return schemas.ExemptionOut(
        request_id=record.request_id,
        category=record.category,
        reason=record.reason,
        duration_days=record.duration_days,
        status=record.status.value,
        created_at=iso(record.created_at_ms) or "",
        decided_at=iso(record.decided_at_ms),
        decision_reason=record.decision_reason,
        grant_expires=iso(record.grant_expires_ms),
    )


def _admin_exemption_out(record: ExemptionRecord) -> schemas.AdminExemptionOut:
    return schemas.AdminExemptionOut(
        **_exemption_out(record).model_dump(),
        device_id=record.device_id,
        tenant=record.tenant,
        group=record.group,
        decided_by=record.decided_by,
        grant_id=record.grant_id,
    )


def _audit_out(event: AuditEvent) -> schemas.AuditEventOut:
    return schemas.AuditEventOut(
        id=event.event_id or 0,
        at=iso(event.at_ms) or "",
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        detail=dict(event.detail),
    )


# ------------------------------------------------------------ batch uploads


class BatchUploads:
    """``POST /v1/batches``: admit from the headers, stream the body, verify, store.

    Installed twice: as the documented route, and as an ASGI middleware in
    front of the FastAPI app that answers the same requests without routing
    (the hot path); every other request goes on to the app. Admission comes
    first (413 for a declared ``Content-Length`` over the limit, then 401 or
    429 from the headers alone), then the body is read within the limit and
    hashed as it arrives, and :meth:`CollectorService.ingest` verifies and
    stores it.
    """

    def __init__(self, app: Any, service: CollectorService, limit: int, idle: float) -> None:
        self.app = app
        self.service = service
        self.limit = limit
        self.idle = idle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != BATCHES_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        answer = await self.answer(scope, receive)
        if answer is not None:
            await send_json(send, *answer)

    async def answer(self, scope: Any, receive: Any) -> tuple[int, bytes, dict[str, str]] | None:
        """Status, JSON body and extra headers of the answer; ``None`` if the client left."""
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            check_declared_length(headers.get("content-length"), self.limit)
            service = self.service
            admitted = await service.admit_device(headers)
            try:
                body, digest = await stream_body(
                    receive,
                    self.limit,
                    self.idle,
                    _signed_within(admitted, service.now_ms()),
                    digest=True,
                )
                target = _scope_target(scope)
                try:
                    result = await service.ingest(admitted, headers, target, body, digest)
                except UnauthorizedError:
                    raise
                except CollectorError:
                    scope[CALLER_SCOPE_KEY] = admitted.claim.device_id  # signed: the device's
                    raise
                scope[CALLER_SCOPE_KEY] = admitted.claim.device_id
            finally:
                service.release_device(admitted)
        except _ClientGone:
            return None
        except CollectorError as exc:
            return error_parts(exc, BATCHES_PATH)
        status = 201 if result.outcome is BatchOutcome.STORED else 200
        ack = {"status": result.outcome.value, "seq": result.seq, "batch_id": result.batch_id}
        return status, json.dumps(ack).encode(), {}


def _batch_route(uploads: BatchUploads) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["device"])

    @router.post(
        "/batches",
        status_code=201,
        response_model=schemas.BatchAckOut,
        summary="upload one sealed batch; acknowledged once it is durable",
        responses={
            200: {
                "model": schemas.BatchAckOut,
                "description": "an identical resend of a stored (device, seq): duplicate",
            },
            **_E401,
            **_error(409, "sequence_conflict: this (device, seq) is stored with other bytes"),
            **_BODY,
            **_error(
                413,
                f"over MAX_SEALED_BYTES ({MAX_SEALED_BYTES}); refused before the body is read",
            ),
            **_error(
                422,
                "malformed_batch, wrong_device (the header names another device) or "
                "bad_batch_signature",
            ),
            **_BOUNDS,
        },
        openapi_extra=_merge(
            _DEVICE_SECURITY,
            {
                "requestBody": {
                    "required": True,
                    "description": "a sealed batch, overt/wire/sealed.py format 1",
                    "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                }
            },
        ),
    )
    async def upload_batch(request: Request) -> Response:
        # Reached only without the BatchUploads middleware in front (it answers first).
        answer = await uploads.answer(request.scope, request.receive)
        if answer is None:
            return Response(status_code=400)
        status, payload, extra = answer
        return Response(payload, status_code=status, media_type=JSON, headers=extra)

    return router


# ------------------------------------------------------------------ devices


def _device_routes(service: CollectorService, limits: Limits, admission: Admission) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["device"])

    def device_request(limit: int) -> Callable[..., Any]:
        async def admitted(request: Request) -> AsyncIterator[AdmittedDevice]:
            check_declared_length(request.headers.get("content-length"), limit)
            device = await service.admit_device(request.headers)
            try:
                yield device
            finally:
                service.release_device(device)

        return admitted

    #: A device request with a JSON body (or none) of at most ``limits.json_bytes``.
    #: (A default, not an ``Annotated`` alias: this module's annotations are strings.)
    admitted_json = Depends(device_request(limits.json_bytes))

    async def device_body(request: Request, admitted: AdmittedDevice) -> tuple[DeviceRecord, bytes]:
        try:
            body, _ = await stream_body(
                request.receive,
                limits.json_bytes,
                admission.body_idle_seconds,
                _signed_within(admitted, service.now_ms()),
            )
        except _ClientGone as exc:
            raise InvalidRequestError("the client left before its body was complete") from exc
        device = await run_in_threadpool(
            service.verify_device,
            admitted,
            request.headers,
            request.method,
            _target(request),
            body,
        )
        request.scope[CALLER_SCOPE_KEY] = device.device_id
        return device, body

    @router.post(
        "/enroll",
        status_code=201,
        response_model=schemas.EnrollOut,
        summary="register a device's key with a single-use enrollment token",
        responses={
            **_error(401, "unknown, used or expired enrollment token"),
            **_error(409, "the device id is already enrolled"),
            **_BODY,
            **_BOUNDS,
        },
        openapi_extra=_json_body(schemas.EnrollIn),
    )
    async def enroll(request: Request) -> Response:
        check_declared_length(request.headers.get("content-length"), limits.json_bytes)
        body = await read_body(request, limits.json_bytes, admission)
        given = parse_json(schemas.EnrollIn, body)
        device = await run_in_threadpool(
            service.accounts.enroll, given.token, given.device_id, given.public_key, given.hostname
        )
        return _ok(
            schemas.EnrollOut(device_id=device.device_id, tenant=device.tenant, group=device.group),
            201,
        )

    @router.get(
        "/policy",
        summary="the signed policy for the device's tenant and group",
        responses={
            200: {
                "description": "the signed policy envelope, byte for byte",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            304: {"description": "If-None-Match matched the ETag"},
            **_E401,
            **_error(404, "no_policy: nothing stored for this tenant and group"),
            **_BODY,
            **_BOUNDS,
        },
        openapi_extra=_DEVICE_SECURITY,
    )
    async def get_policy(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, _ = await device_body(request, admitted)
        record = await run_in_threadpool(service.policies.policy_for, device)
        etag = f'"{record.sha256}"'
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(record.envelope, media_type=JSON, headers={"ETag": etag})

    @router.get(
        "/grants",
        response_model=schemas.GrantsOut,
        summary="the device's unexpired exemption grants",
        responses={
            304: {"description": "If-None-Match matched the ETag"},
            **_E401,
            **_BODY,
            **_BOUNDS,
        },
        openapi_extra=_DEVICE_SECURITY,
    )
    async def get_grants(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, _ = await device_body(request, admitted)
        grants, digest = await run_in_threadpool(service.exemptions.grants_for, device)
        etag = f'"{digest}"'
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag})
        out = schemas.GrantsOut(grants=[base64.b64encode(g.envelope).decode() for g in grants])
        response = _ok(out)
        response.headers["ETag"] = etag
        return response

    @router.post(
        "/exemptions",
        status_code=201,
        response_model=schemas.ExemptionCreatedOut,
        summary="ask for an exemption",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_merge(_DEVICE_SECURITY, _json_body(schemas.ExemptionIn)),
    )
    async def request_exemption(
        request: Request, admitted: AdmittedDevice = admitted_json
    ) -> Response:
        device, body = await device_body(request, admitted)
        given = parse_json(schemas.ExemptionIn, body)
        record = await run_in_threadpool(
            service.exemptions.request_exemption,
            device,
            given.category,
            given.reason,
            given.duration_days,
        )
        return _ok(schemas.ExemptionCreatedOut(request_id=record.request_id, status="pending"), 201)

    @router.get(
        "/exemptions",
        response_model=schemas.ExemptionsOut,
        summary="the device's exemption requests and their decisions",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_DEVICE_SECURITY,
    )
    async def list_exemptions(
        request: Request, admitted: AdmittedDevice = admitted_json
    ) -> Response:
        device, _ = await device_body(request, admitted)
        records = await run_in_threadpool(service.exemptions.device_exemptions, device)
        return _ok(schemas.ExemptionsOut(requests=[_exemption_out(r) for r in records]))

    @router.post(
        "/erasure",
        response_model=schemas.ErasureOut,
        summary="delete the device's stored batches overlapping a time range",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_merge(_DEVICE_SECURITY, _json_body(schemas.ErasureIn)),
    )
    async def erasure(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, body = await device_body(request, admitted)
        given = parse_json(schemas.ErasureIn, body)
        deleted = await run_in_threadpool(
            service.erase, device, given.start_ms, given.end_ms, given.reason
        )
        return _ok(schemas.ErasureOut(deleted=deleted))

    @router.post(
        "/consent",
        status_code=201,
        response_model=schemas.RecordedOut,
        summary="record the employee's answer to the capture notice",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_merge(_DEVICE_SECURITY, _json_body(schemas.ConsentIn)),
    )
    async def consent(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, body = await device_body(request, admitted)
        given = parse_json(schemas.ConsentIn, body)
        await run_in_threadpool(
            service.record_consent, device, given.policy_version, given.decision, given.at_ms
        )
        return _ok(schemas.RecordedOut(status="recorded"), 201)

    return router


# -------------------------------------------------------------------- admin


def _admin_routes(service: CollectorService, limits: Limits, admission: Admission) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"])

    def admin_request(limit: int) -> Callable[..., Any]:
        async def admin(request: Request) -> AdminIdentity:
            check_declared_length(request.headers.get("content-length"), limit)
            admin: AdminIdentity = await run_in_threadpool(
                service.authenticate_admin, request.headers.get("authorization")
            )
            request.scope[CALLER_SCOPE_KEY] = admin.actor
            return admin

        return admin

    #: An admin request with a JSON body (or none) of at most ``limits.json_bytes``.
    admin_json = Depends(admin_request(limits.json_bytes))
    admin_policy = Depends(admin_request(limits.policy_bytes))

    async def body_of(request: Request, limit: int = limits.json_bytes) -> bytes:
        return await read_body(request, limit, admission)

    @router.post(
        "/enrollment-tokens",
        status_code=201,
        response_model=schemas.EnrollmentTokenOut,
        summary="create a single-use enrollment token (shown once)",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_merge(_ADMIN_SECURITY, _json_body(schemas.EnrollmentTokenIn)),
    )
    async def create_enrollment_token(
        request: Request, admin: AdminIdentity = admin_json
    ) -> Response:
        given = parse_json(schemas.EnrollmentTokenIn, await body_of(request))
        new = await run_in_threadpool(
            service.accounts.create_enrollment_token,
            given.tenant,
            given.group,
            given.expires_minutes,
            admin.actor,
        )
        record = new.record
        return _ok(
            schemas.EnrollmentTokenOut(
                token=new.token,
                token_id=record.token_id,
                tenant=record.tenant,
                group=record.group,
                expires_at=iso(record.expires_at_ms) or "",
            ),
            201,
        )

    @router.get(
        "/enrollment-tokens",
        response_model=schemas.EnrollmentTokensOut,
        summary="every enrollment token and whether it was used",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_ADMIN_SECURITY,
    )
    async def list_enrollment_tokens(
        request: Request, admin: AdminIdentity = admin_json
    ) -> Response:
        await body_of(request)
        records = await run_in_threadpool(service.accounts.list_enrollment_tokens)
        tokens = [
            schemas.EnrollmentTokenInfo(
                token_id=r.token_id,
                tenant=r.tenant,
                group=r.group,
                created_at=iso(r.created_at_ms) or "",
                created_by=r.created_by,
                expires_at=iso(r.expires_at_ms) or "",
                used_at=iso(r.used_at_ms),
                device_id=r.device_id,
            )
            for r in records
        ]
        return _ok(schemas.EnrollmentTokensOut(tokens=tokens))

    @router.put(
        "/policy",
        status_code=201,
        response_model=schemas.PolicyStoredOut,
        summary="store a signed policy (served to devices of its tenant and groups)",
        responses={
            200: {"model": schemas.PolicyStoredOut, "description": "identical policy: unchanged"},
            **_E401,
            **_error(409, "policy_version: not above a stored policy for overlapping groups"),
            **_BODY,
            **_error(422, "not_a_policy, not_signed or expired_policy"),
            **_BOUNDS,
        },
        openapi_extra=_merge(
            _ADMIN_SECURITY,
            {
                "requestBody": {
                    "required": True,
                    "description": "a signed policy envelope (overt policy sign); its payload "
                    "must be a valid, unexpired policy, which JSON Schema cannot say",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
    )
    async def put_policy(request: Request, admin: AdminIdentity = admin_policy) -> Response:
        body = await body_of(request, limits.policy_bytes)
        record, outcome = await run_in_threadpool(service.policies.put_policy, body, admin.actor)
        out = schemas.PolicyStoredOut(
            status=outcome.value,
            version=record.version,
            tenant=record.tenant,
            groups=list(record.groups),
        )
        return _ok(out, 201 if outcome is PolicyPutOutcome.STORED else 200)

    @router.get(
        "/exemptions",
        response_model=schemas.AdminExemptionsOut,
        summary="exemption requests, newest first",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_ADMIN_SECURITY,
    )
    async def admin_list_exemptions(
        request: Request,
        admin: AdminIdentity = admin_json,
        status: Annotated[
            ExemptionStatus | None, Query(description="only requests with this status")
        ] = None,
    ) -> Response:
        await body_of(request)
        records = await run_in_threadpool(service.exemptions.list_exemptions, status)
        return _ok(schemas.AdminExemptionsOut(requests=[_admin_exemption_out(r) for r in records]))

    @router.post(
        "/exemptions/{request_id}/approve",
        response_model=schemas.ApproveOut,
        summary="approve: sign a grant with the collector's grant key",
        responses={
            **_E401,
            **_error(404, "no such request"),
            **_error(
                409,
                "already_decided, no_grant_key, no_policy, or grant_key_not_authorised (the "
                "policy does not list the grant key for this category)",
            ),
            **_BODY,
            **_BOUNDS,
        },
        openapi_extra=_merge(_ADMIN_SECURITY, _json_body(schemas.ApproveIn, required=False)),
    )
    async def approve(
        request: Request, request_id: str, admin: AdminIdentity = admin_json
    ) -> Response:
        body = await body_of(request)
        given = parse_json(schemas.ApproveIn, body or b"{}")
        grant = await run_in_threadpool(
            lambda: service.exemptions.approve(
                request_id,
                admin.actor,
                expires_at=given.expires_at,
                duration_days=given.duration_days,
            )
        )
        return _ok(
            schemas.ApproveOut(
                request_id=request_id,
                grant_id=grant.grant_id,
                expires=iso(grant.expires_ms) or "",
            )
        )

    @router.post(
        "/exemptions/{request_id}/deny",
        response_model=schemas.DecisionOut,
        summary="deny, with a reason the employee sees",
        responses={
            **_E401,
            **_error(404, "no such request"),
            **_error(409, "already_decided"),
            **_BODY,
            **_BOUNDS,
        },
        openapi_extra=_merge(_ADMIN_SECURITY, _json_body(schemas.DenyIn)),
    )
    async def deny(
        request: Request, request_id: str, admin: AdminIdentity = admin_json
    ) -> Response:
        given = parse_json(schemas.DenyIn, await body_of(request))
        await run_in_threadpool(service.exemptions.deny, request_id, admin.actor, given.reason)
        return _ok(schemas.DecisionOut(request_id=request_id, status="denied"))

    @router.get(
        "/devices",
        response_model=schemas.DevicesOut,
        summary="enrolled devices, what they sent and their open requests",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_ADMIN_SECURITY,
    )
    async def devices(request: Request, admin: AdminIdentity = admin_json) -> Response:
        await body_of(request)
        views = await run_in_threadpool(service.accounts.list_devices)
        out = [
            schemas.DeviceOut(
                device_id=v.record.device_id,
                tenant=v.record.tenant,
                group=v.record.group,
                hostname=v.record.hostname,
                enrolled_at=iso(v.record.enrolled_at_ms) or "",
                revoked_at=iso(v.record.revoked_at_ms),
                last_seen=iso(v.record.last_seen_ms),
                policy_version=v.record.policy_version,
                bytes=v.record.bytes,
                batches=v.record.batches,
                open_requests=v.open_requests,
            )
            for v in views
        ]
        return _ok(schemas.DevicesOut(devices=out))

    @router.post(
        "/devices/{device_id}/revoke",
        response_model=schemas.RevokedOut,
        summary="revoke a device: its requests are refused from now on",
        responses={**_E401, **_error(404, "no such device"), **_BODY, **_BOUNDS},
        openapi_extra=_ADMIN_SECURITY,
    )
    async def revoke(
        request: Request, device_id: str, admin: AdminIdentity = admin_json
    ) -> Response:
        await body_of(request)
        await run_in_threadpool(service.accounts.revoke_device, device_id, admin.actor)
        return _ok(schemas.RevokedOut(device_id=device_id, status="revoked"))

    @router.get(
        "/audit",
        response_model=schemas.AuditOut,
        summary="the audit log, newest first",
        responses={**_E401, **_BODY, **_BOUNDS},
        openapi_extra=_ADMIN_SECURITY,
    )
    async def audit(
        request: Request,
        admin: AdminIdentity = admin_json,
        limit: Annotated[
            int, Query(ge=1, le=1000, description="at most this many events"), QueryInt
        ] = 100,
        before: Annotated[
            int | None,
            Query(ge=1, le=schemas.INT64_MAX, description="only events with a smaller id (paging)"),
            QueryInt,
        ] = None,
    ) -> Response:
        await body_of(request)
        events = await run_in_threadpool(service.audit, limit, before)
        return _ok(schemas.AuditOut(events=[_audit_out(e) for e in events]))

    return router


# ----------------------------------------------------------- errors, schema


#: The methods a 405's ``Allow`` may name (every one some route here could serve).
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(app: Any, scope: Any) -> list[str]:
    """Every method some route of ``app`` serves at the request's path."""
    allowed = []
    for method in _METHODS:
        probe = {**scope, "type": "http", "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def _install_error_handlers(app: FastAPI) -> None:
    async def collector_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CollectorError)
        status, body, headers = error_parts(exc, request.url.path)
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
        body = {
            "error": "invalid_request",
            "detail": f"{where}: {errors[0]['msg'] if errors else ''}",
        }
        return Response(json.dumps(body).encode(), status_code=422, media_type=JSON)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        body = {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only.
            headers["Allow"] = ", ".join(_allowed_methods(request.app, request.scope))
        return Response(
            json.dumps(body).encode(),
            status_code=exc.status_code,
            media_type=JSON,
            headers=headers,
        )

    app.add_exception_handler(CollectorError, collector_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    # The JSON bodies are read after authentication, so their routes name the
    # models in openapi_extra; their schemas are the ones they validate with.
    for model in schemas.REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        models.update(model_schema.pop("$defs", {}))
        models[model.__name__] = model_schema
    security = components.setdefault("securitySchemes", {})
    security["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an admin token from `overt collector admin-token`",
    }
    for scheme, header in _DEVICE_SCHEMES.items():
        security[scheme] = {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "device request signature, overt/wire/signature.py (all four together)",
        }
    app.openapi_schema = schema
    return schema


# ------------------------------------------------------------------- the app


def create_app(config: CollectorConfig, storage: Storage | None = None) -> FastAPI:
    """The collector app. Opens the store now (unless one is given) and closes it at shutdown.

    ``app.state.service`` is the :class:`CollectorService` behind every
    route; add more routers with ``app.include_router``. The admin web pages
    (``collector.web``) are mounted when ``config.admin_pages`` is set.
    ``app.state.admission`` is the :class:`AdmissionGate` in front of it all.
    """
    store: Storage = storage if storage is not None else SQLiteStorage(config.storage)
    service = CollectorService(store, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    app = FastAPI(
        title="Overt collector",
        version=API_VERSION,
        description="Agent ↔ collector protocol version 1 (docs/PROTOCOL.md).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    uploads = BatchUploads(
        None, service, config.limits.sealed_batch_bytes, config.admission.body_idle_seconds
    )
    app.include_router(_batch_route(uploads))
    app.include_router(_device_routes(service, config.limits, config.admission))
    app.include_router(_admin_routes(service, config.limits, config.admission))
    _install_error_handlers(app)
    app.add_middleware(
        BatchUploads,
        service=service,
        limit=config.limits.sealed_batch_bytes,
        idle=config.admission.body_idle_seconds,
    )
    # Added last, so outermost: it sees every request before anything else does.
    app.add_middleware(AdmissionGate, admission=config.admission, clock=config.clock)
    if config.admin_pages is not None:
        from collector.web import install_admin_pages

        install_admin_pages(app, service, config.admin_pages)
    openapi: Callable[[], dict[str, Any]] = lambda: _openapi(app)  # noqa: E731
    app.openapi = openapi  # type: ignore[method-assign]
    return app
