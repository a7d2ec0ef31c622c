"""The collector's HTTP API (``docs/PROTOCOL.md``, version 1) on FastAPI.

:func:`create_app` builds the whole app in-process from a
:class:`~collector.config.CollectorConfig` (tests hand it an injected clock
and a temporary data directory); ``overt collector serve`` runs the same app
on uvicorn. This module owns only HTTP: reading bodies within their limits
(a declared ``Content-Length`` over the limit is refused before a byte of
the body is read; a chunked body is cut off as soon as it passes the limit),
turning JSON into request models, authenticating the caller first, and
mapping :class:`~collector.errors.CollectorError` codes to statuses. Every
rule lives in :class:`~collector.service.CollectorService`, which the app
exposes as ``app.state.service`` so that other routers (the admin web pages)
can be added with ``app.include_router`` and call the same service.

Statuses: 401 for any authentication failure (one body, whatever the
reason), 404, 409 for conflicts, 413 for bodies over a limit, 422 for
malformed input, 503 with ``Retry-After`` when the store cannot write.
No input makes the app answer 5xx otherwise; ``tests/collector`` fuzzes that.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector import schemas
from collector.auth import AdminIdentity
from collector.config import CollectorConfig, Limits, iso
from collector.errors import (
    CollectorError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    UnauthorizedError,
)
from collector.service import CollectorService
from collector.sqlite_store import SQLiteStorage
from collector.storage import (
    AuditEvent,
    BatchOutcome,
    DeviceRecord,
    ExemptionRecord,
    ExemptionStatus,
    PolicyPutOutcome,
    Storage,
)
from policies.sealed import MAX_SEALED_BYTES, MEDIA_TYPE

logger = logging.getLogger(__name__)

API_VERSION = "1"
JSON = "application/json"
_M = TypeVar("_M", bound=BaseModel)

_STATUS: tuple[tuple[type[CollectorError], int], ...] = (
    (UnauthorizedError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidRequestError, 422),
    (StorageError, 503),
)


def _error(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.ErrorOut, "description": description}}


_E401 = _error(401, "authentication failed (one answer for every reason)")
_E413 = _error(413, "body over the limit; refused before it is read")
_E422 = _error(422, "malformed request")
_E503 = _error(503, "the store cannot write now; retry after Retry-After seconds")


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref}}}}


def _query(*params: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema, "description": d}
            for name, schema, d in params
        ]
    }


def _device_headers() -> dict[str, Any]:
    names = ("Overt-Device", "Overt-Timestamp", "Overt-Nonce", "Overt-Signature")
    return {
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "device request signature (policies/device_auth.py)",
            }
            for name in names
        ]
    }


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "parameters":
                merged.setdefault("parameters", []).extend(value)
            else:
                merged[key] = value
    return merged


def _ok(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json().encode("utf-8"), status_code=status, media_type=JSON)


def _target(request: Request) -> str:
    return _scope_target(request.scope)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to be over ``limit``.

    A declared ``Content-Length`` over the limit is refused before anything
    is read; a chunked body is read only until it passes the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequestError("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"the body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"the body is over the {limit}-byte limit")
        if chunk:
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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


# ------------------------------------------------------------------ devices


def _device_routes(service: CollectorService, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["device"])

    async def device_call(request: Request, limit: int) -> tuple[DeviceRecord, bytes]:
        body = await read_body(request, limit)
        device = await run_in_threadpool(
            service.authenticate_device, request.headers, request.method, _target(request), body
        )
        return device, body

    @router.post(
        "/enroll",
        status_code=201,
        response_model=schemas.EnrollOut,
        summary="register a device's key with a single-use enrollment token",
        responses={
            **_error(401, "unknown, used or expired enrollment token"),
            **_error(409, "the device id is already enrolled"),
            **_E413,
            **_E422,
            **_E503,
        },
        openapi_extra=_json_body(schemas.EnrollIn),
    )
    async def enroll(request: Request) -> Response:
        body = await read_body(request, limits.json_bytes)
        given = parse_json(schemas.EnrollIn, body)
        device = await run_in_threadpool(
            service.enroll, given.token, given.device_id, given.public_key, given.hostname
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
        },
        openapi_extra=_device_headers(),
    )
    async def get_policy(request: Request) -> Response:
        device, _ = await device_call(request, limits.json_bytes)
        record = await run_in_threadpool(service.policy_for, device)
        etag = f'"{record.sha256}"'
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(record.envelope, media_type=JSON, headers={"ETag": etag})

    @router.get(
        "/grants",
        response_model=schemas.GrantsOut,
        summary="the device's unexpired exemption grants",
        responses={304: {"description": "If-None-Match matched the ETag"}, **_E401},
        openapi_extra=_device_headers(),
    )
    async def get_grants(request: Request) -> Response:
        device, _ = await device_call(request, limits.json_bytes)
        grants, digest = await run_in_threadpool(service.grants_for, device)
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
        responses={**_E401, **_E413, **_E422, **_E503},
        openapi_extra=_merge(_device_headers(), _json_body(schemas.ExemptionIn)),
    )
    async def request_exemption(request: Request) -> Response:
        device, body = await device_call(request, limits.json_bytes)
        given = parse_json(schemas.ExemptionIn, body)
        record = await run_in_threadpool(
            service.request_exemption, device, given.category, given.reason, given.duration_days
        )
        return _ok(schemas.ExemptionCreatedOut(request_id=record.request_id, status="pending"), 201)

    @router.get(
        "/exemptions",
        response_model=schemas.ExemptionsOut,
        summary="the device's exemption requests and their decisions",
        responses={**_E401},
        openapi_extra=_device_headers(),
    )
    async def list_exemptions(request: Request) -> Response:
        device, _ = await device_call(request, limits.json_bytes)
        records = await run_in_threadpool(service.device_exemptions, device)
        return _ok(schemas.ExemptionsOut(requests=[_exemption_out(r) for r in records]))

    @router.post(
        "/erasure",
        response_model=schemas.ErasureOut,
        summary="delete the device's stored batches overlapping a time range",
        responses={**_E401, **_E413, **_E422, **_E503},
        openapi_extra=_merge(_device_headers(), _json_body(schemas.ErasureIn)),
    )
    async def erasure(request: Request) -> Response:
        device, body = await device_call(request, limits.json_bytes)
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
        responses={**_E401, **_E413, **_E422, **_E503},
        openapi_extra=_merge(_device_headers(), _json_body(schemas.ConsentIn)),
    )
    async def consent(request: Request) -> Response:
        device, body = await device_call(request, limits.json_bytes)
        given = parse_json(schemas.ConsentIn, body)
        await run_in_threadpool(
            service.record_consent, device, given.policy_version, given.decision, given.at_ms
        )
        return _ok(schemas.RecordedOut(status="recorded"), 201)

    return router


# -------------------------------------------------------------------- admin


def _admin_routes(service: CollectorService, limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"])
    bearer: dict[str, Any] = {"security": [{"bearer": []}]}

    async def admin_call(request: Request, limit: int) -> tuple[AdminIdentity, bytes]:
        body = await read_body(request, limit)
        admin = await run_in_threadpool(
            service.authenticate_admin, request.headers.get("authorization")
        )
        return admin, body

    @router.post(
        "/enrollment-tokens",
        status_code=201,
        response_model=schemas.EnrollmentTokenOut,
        summary="create a single-use enrollment token (shown once)",
        responses={**_E401, **_E413, **_E422, **_E503},
        openapi_extra=_merge(bearer, _json_body(schemas.EnrollmentTokenIn)),
    )
    async def create_enrollment_token(request: Request) -> Response:
        admin, body = await admin_call(request, limits.json_bytes)
        given = parse_json(schemas.EnrollmentTokenIn, body)
        new = await run_in_threadpool(
            service.create_enrollment_token,
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
        responses={**_E401},
        openapi_extra=bearer,
    )
    async def list_enrollment_tokens(request: Request) -> Response:
        await admin_call(request, limits.json_bytes)
        records = await run_in_threadpool(service.list_enrollment_tokens)
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
            **_E413,
            **_error(422, "not_a_policy, not_signed or expired_policy"),
            **_E503,
        },
        openapi_extra=_merge(
            bearer,
            {
                "requestBody": {
                    "required": True,
                    "description": "a signed policy envelope (overt policy sign)",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
    )
    async def put_policy(request: Request) -> Response:
        admin, body = await admin_call(request, limits.policy_bytes)
        record, outcome = await run_in_threadpool(service.put_policy, body, admin.actor)
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
        responses={**_E401, **_E422},
        openapi_extra=_merge(
            bearer,
            _query(
                (
                    "status",
                    {"type": "string", "enum": [s.value for s in ExemptionStatus]},
                    "only requests with this status",
                )
            ),
        ),
    )
    async def admin_list_exemptions(request: Request) -> Response:
        await admin_call(request, limits.json_bytes)
        status_text = request.query_params.get("status")
        status = None
        if status_text:
            try:
                status = ExemptionStatus(status_text)
            except ValueError as exc:
                raise InvalidRequestError("status must be pending, approved or denied") from exc
        records = await run_in_threadpool(service.list_exemptions, status)
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
            **_E413,
            **_E422,
            **_E503,
        },
        openapi_extra=_merge(bearer, _json_body(schemas.ApproveIn)),
    )
    async def approve(request: Request, request_id: str) -> Response:
        admin, body = await admin_call(request, limits.json_bytes)
        given = parse_json(schemas.ApproveIn, body or b"{}")
        grant = await run_in_threadpool(
            lambda: service.approve(
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
            **_E413,
            **_E422,
            **_E503,
        },
        openapi_extra=_merge(bearer, _json_body(schemas.DenyIn)),
    )
    async def deny(request: Request, request_id: str) -> Response:
        admin, body = await admin_call(request, limits.json_bytes)
        given = parse_json(schemas.DenyIn, body)
        await run_in_threadpool(service.deny, request_id, admin.actor, given.reason)
        return _ok(schemas.DecisionOut(request_id=request_id, status="denied"))

    @router.get(
        "/devices",
        response_model=schemas.DevicesOut,
        summary="enrolled devices, what they sent and their open requests",
        responses={**_E401},
        openapi_extra=bearer,
    )
    async def devices(request: Request) -> Response:
        await admin_call(request, limits.json_bytes)
        views = await run_in_threadpool(service.list_devices)
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
        responses={**_E401, **_error(404, "no such device"), **_E503},
        openapi_extra=bearer,
    )
    async def revoke(request: Request, device_id: str) -> Response:
        admin, _ = await admin_call(request, limits.json_bytes)
        await run_in_threadpool(service.revoke_device, device_id, admin.actor)
        return _ok(schemas.RevokedOut(device_id=device_id, status="revoked"))

    @router.get(
        "/audit",
        response_model=schemas.AuditOut,
        summary="the audit log, newest first",
        responses={**_E401, **_E422},
        openapi_extra=_merge(
            bearer,
            _query(
                ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
                ("before", {"type": "integer"}, "only events with a smaller id (paging)"),
            ),
        ),
    )
    async def audit(request: Request) -> Response:
        await admin_call(request, limits.json_bytes)
        limit = _int_param(request, "limit", 100, 1, 1000)
        before = _int_param(request, "before", None, 1, schemas.INT64_MAX)
        events = await run_in_threadpool(service.audit, limit, before)
        return _ok(schemas.AuditOut(events=[_audit_out(e) for e in events]))

    return router


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> Any:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise InvalidRequestError(f"{name} must be an integer from {low} to {high}")
    return int(text)


# ----------------------------------------------------------- errors, schema


def error_parts(exc: CollectorError, path: str) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers of the answer to ``exc`` on ``path``."""
    status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
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
    elif status == 413:
        headers["Connection"] = "close"
    elif status == 503:
        headers["Retry-After"] = "5"
        logger.error("store unavailable: %s", exc)
    elif status == 500:
        logger.error("internal error %s: %s", exc.code, exc)
    return status, json.dumps({"error": exc.code, "detail": detail}).encode(), headers


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
        return Response(
            json.dumps(body).encode(),
            status_code=exc.status_code,
            media_type=JSON,
            headers=getattr(exc, "headers", None),
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
    for model in schemas.REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        models.update(model_schema.pop("$defs", {}))
        models[model.__name__] = model_schema
    for model in (schemas.BatchAckOut, schemas.ErrorOut):
        models[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    schema["paths"][BATCHES_PATH] = BATCHES_OPENAPI
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an admin token from `overt collector admin-token`",
    }
    app.openapi_schema = schema
    return schema


# ------------------------------------------------------------ batch uploads

BATCHES_PATH = "/v1/batches"


class _ClientGone(Exception):
    """The client disconnected before its body was complete."""


class BatchUploads:
    """``POST /v1/batches``, answered here without routing: the hot path.

    An ASGI middleware in front of the FastAPI app: every other request goes
    on to the app. It reads the body within ``limit`` (413 before reading a
    declared ``Content-Length`` over it; a chunked body is cut off at the
    limit), hands headers and bytes to :meth:`CollectorService.ingest`, and
    answers with the same JSON as the rest of the API. Its OpenAPI entry is
    :data:`BATCHES_OPENAPI`.
    """

    def __init__(self, app: Any, service: CollectorService, limit: int) -> None:
        self.app = app
        self.service = service
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != BATCHES_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        extra: dict[str, str] = {}
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            body = await self._body(headers, receive)
            result = await self.service.ingest(headers, "POST", _scope_target(scope), body)
            status = 201 if result.outcome is BatchOutcome.STORED else 200
            ack = {"status": result.outcome.value, "seq": result.seq, "batch_id": result.batch_id}
            payload = json.dumps(ack).encode()
        except _ClientGone:
            return
        except CollectorError as exc:
            status, payload, extra = error_parts(exc, BATCHES_PATH)
        response_headers = [
            (b"content-type", JSON.encode()),
            (b"content-length", str(len(payload)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in extra.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, headers: dict[str, str], receive: Any) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            if not (declared.isascii() and declared.isdigit()):
                raise InvalidRequestError("Content-Length is not a number")
            if int(declared) > self.limit:
                raise PayloadTooLargeError(f"the body is over the {self.limit}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                raise PayloadTooLargeError(f"the body is over the {self.limit}-byte limit")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _scope_target(scope: Any) -> str:
    """The request target as the device signed it: raw path, then ``?query`` if any."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


#: The OpenAPI operation of ``POST /v1/batches`` (served by :class:`BatchUploads`).
BATCHES_OPENAPI: dict[str, Any] = {
    "post": {
        "tags": ["device"],
        "summary": "upload one sealed batch; acknowledged once it is durable",
        "operationId": "upload_batch_v1_batches_post",
        **_device_headers(),
        "requestBody": {
            "required": True,
            "description": "a sealed batch, policies/sealed.py format 1",
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        "responses": {
            "201": {
                "description": "stored and durable",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/BatchAckOut"}}},
            },
            "200": {
                "description": "an identical resend of a stored (device, seq): duplicate",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/BatchAckOut"}}},
            },
            "401": _error_response("authentication failed (one answer for every reason)"),
            "409": _error_response(
                "sequence_conflict: this (device, seq) is stored with other bytes"
            ),
            "413": _error_response(
                f"over MAX_SEALED_BYTES ({MAX_SEALED_BYTES}); refused before the body is read"
            ),
            "422": _error_response(
                "malformed_batch, wrong_device (the header names another device) or "
                "bad_batch_signature"
            ),
            "503": _error_response("the store cannot write now; retry after Retry-After"),
        },
    }
}


# ------------------------------------------------------------------- the app


def create_app(config: CollectorConfig, storage: Storage | None = None) -> FastAPI:
    """The collector app. Opens the store now (unless one is given) and closes it at shutdown.

    ``app.state.service`` is the :class:`CollectorService` behind every
    route; add more routers with ``app.include_router``. The admin web pages
    (``collector.web``) are mounted when ``config.admin_pages`` is set.
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
    app.include_router(_device_routes(service, config.limits))
    app.include_router(_admin_routes(service, config.limits))
    _install_error_handlers(app)
    app.add_middleware(BatchUploads, service=service, limit=config.limits.sealed_batch_bytes)
    if config.admin_pages is not None:
        from collector.web import install_admin_pages

        install_admin_pages(app, service, config.admin_pages)
    openapi: Callable[[], dict[str, Any]] = lambda: _openapi(app)  # noqa: E731
    app.openapi = openapi  # type: ignore[method-assign]
    return app
