"""The device API: batch uploads (the hot path), enrollment, policy, grants, requests.

Every device request is admitted from its headers alone
(:meth:`CollectorService.admit_device`) before its body is read; the body
is then streamed within its limit and the signature over it checked.
:class:`BatchUploads` answers ``POST /v1/batches`` as an ASGI middleware,
without routing, and the documented route calls the same code.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from collector import schemas
from collector.admission import CALLER_SCOPE_KEY
from collector.api.bodies import (
    ClientGone,
    check_declared_length,
    parse_json,
    read_body,
    request_target,
    scope_target,
    signed_within,
    stream_body,
)
from collector.api.docs import BODY, BOUNDS, DEVICE_SECURITY, E401, error_response, json_body, merge
from collector.api.outputs import etag_matches, exemption_out, ok
from collector.config import Admission, Limits
from collector.errors import (
    CollectorError,
    InvalidRequestError,
    UnauthorizedError,
)
from collector.http_errors import JSON, error_parts, send_json
from collector.service import AdmittedDevice, CollectorService
from collector.store.records import (
    BatchOutcome,
    DeviceRecord,
)
from overt.wire.sealed import MAX_SEALED_BYTES, MEDIA_TYPE

logger = logging.getLogger(__name__)


BATCHES_PATH = "/v1/batches"


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
                    signed_within(admitted, service.now_ms()),
                    digest=True,
                )
                target = scope_target(scope)
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
        except ClientGone:
            return None
        except CollectorError as exc:
            return error_parts(exc, BATCHES_PATH)
        status = 201 if result.outcome is BatchOutcome.STORED else 200
        ack = {"status": result.outcome.value, "seq": result.seq, "batch_id": result.batch_id}
        return status, json.dumps(ack).encode(), {}


def batch_route(uploads: BatchUploads) -> APIRouter:
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
            **E401,
            **error_response(
                409, "sequence_conflict: this (device, seq) is stored with other bytes"
            ),
            **BODY,
            **error_response(
                413,
                f"over MAX_SEALED_BYTES ({MAX_SEALED_BYTES}); refused before the body is read",
            ),
            **error_response(
                422,
                "malformed_batch, wrong_device (the header names another device) or "
                "bad_batch_signature",
            ),
            **BOUNDS,
        },
        openapi_extra=merge(
            DEVICE_SECURITY,
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


def device_routes(service: CollectorService, limits: Limits, admission: Admission) -> APIRouter:
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
                signed_within(admitted, service.now_ms()),
            )
        except ClientGone as exc:
            raise InvalidRequestError("the client left before its body was complete") from exc
        device = await run_in_threadpool(
            service.verify_device,
            admitted,
            request.headers,
            request.method,
            request_target(request),
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
            **error_response(401, "unknown, used or expired enrollment token"),
            **error_response(409, "the device id is already enrolled"),
            **BODY,
            **BOUNDS,
        },
        openapi_extra=json_body(schemas.EnrollIn),
    )
    async def enroll(request: Request) -> Response:
        check_declared_length(request.headers.get("content-length"), limits.json_bytes)
        body = await read_body(request, limits.json_bytes, admission)
        given = parse_json(schemas.EnrollIn, body)
        device = await run_in_threadpool(
            service.accounts.enroll, given.token, given.device_id, given.public_key, given.hostname
        )
        return ok(
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
            **E401,
            **error_response(404, "no_policy: nothing stored for this tenant and group"),
            **BODY,
            **BOUNDS,
        },
        openapi_extra=DEVICE_SECURITY,
    )
    async def get_policy(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, _ = await device_body(request, admitted)
        record = await run_in_threadpool(service.policies.policy_for, device)
        etag = f'"{record.sha256}"'
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(record.envelope, media_type=JSON, headers={"ETag": etag})

    @router.get(
        "/grants",
        response_model=schemas.GrantsOut,
        summary="the device's unexpired exemption grants",
        responses={
            304: {"description": "If-None-Match matched the ETag"},
            **E401,
            **BODY,
            **BOUNDS,
        },
        openapi_extra=DEVICE_SECURITY,
    )
    async def get_grants(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, _ = await device_body(request, admitted)
        grants, digest = await run_in_threadpool(service.exemptions.grants_for, device)
        etag = f'"{digest}"'
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag})
        out = schemas.GrantsOut(grants=[base64.b64encode(g.envelope).decode() for g in grants])
        response = ok(out)
        response.headers["ETag"] = etag
        return response

    @router.post(
        "/exemptions",
        status_code=201,
        response_model=schemas.ExemptionCreatedOut,
        summary="ask for an exemption",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=merge(DEVICE_SECURITY, json_body(schemas.ExemptionIn)),
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
        return ok(schemas.ExemptionCreatedOut(request_id=record.request_id, status="pending"), 201)

    @router.get(
        "/exemptions",
        response_model=schemas.ExemptionsOut,
        summary="the device's exemption requests and their decisions",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=DEVICE_SECURITY,
    )
    async def list_exemptions(
        request: Request, admitted: AdmittedDevice = admitted_json
    ) -> Response:
        device, _ = await device_body(request, admitted)
        records = await run_in_threadpool(service.exemptions.device_exemptions, device)
        return ok(schemas.ExemptionsOut(requests=[exemption_out(r) for r in records]))

    @router.post(
        "/erasure",
        response_model=schemas.ErasureOut,
        summary="delete the device's stored batches overlapping a time range",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=merge(DEVICE_SECURITY, json_body(schemas.ErasureIn)),
    )
    async def erasure(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, body = await device_body(request, admitted)
        given = parse_json(schemas.ErasureIn, body)
        deleted = await run_in_threadpool(
            service.erase, device, given.start_ms, given.end_ms, given.reason
        )
        return ok(schemas.ErasureOut(deleted=deleted))

    @router.post(
        "/consent",
        status_code=201,
        response_model=schemas.RecordedOut,
        summary="record the employee's answer to the capture notice",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=merge(DEVICE_SECURITY, json_body(schemas.ConsentIn)),
    )
    async def consent(request: Request, admitted: AdmittedDevice = admitted_json) -> Response:
        device, body = await device_body(request, admitted)
        given = parse_json(schemas.ConsentIn, body)
        await run_in_threadpool(
            service.record_consent, device, given.policy_version, given.decision, given.at_ms
        )
        return ok(schemas.RecordedOut(status="recorded"), 201)

    return router
