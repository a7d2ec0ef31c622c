"""The admin API: enrollment tokens, policies, exemption decisions, devices, audit.

An admin request's bearer token is checked (and a declared body over the
limit refused) before its body is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from collector import schemas
from collector.admission import CALLER_SCOPE_KEY
from collector.api.bodies import check_declared_length, parse_json, read_body
from collector.api.docs import ADMIN_SECURITY, BODY, BOUNDS, E401, error_response, json_body, merge
from collector.api.outputs import QueryInt, admin_exemption_out, audit_out, ok
from collector.auth import AdminIdentity
from collector.config import Admission, Limits, iso
from collector.http_errors import JSON
from collector.service import CollectorService
from collector.store.records import (
    ExemptionStatus,
    PolicyPutOutcome,
)

logger = logging.getLogger(__name__)


def admin_routes(service: CollectorService, limits: Limits, admission: Admission) -> APIRouter:
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
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=merge(ADMIN_SECURITY, json_body(schemas.EnrollmentTokenIn)),
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
        return ok(
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
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=ADMIN_SECURITY,
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
        return ok(schemas.EnrollmentTokensOut(tokens=tokens))

    @router.put(
        "/policy",
        status_code=201,
        response_model=schemas.PolicyStoredOut,
        summary="store a signed policy (served to devices of its tenant and groups)",
        responses={
            200: {"model": schemas.PolicyStoredOut, "description": "identical policy: unchanged"},
            **E401,
            **error_response(
                409, "policy_version: not above a stored policy for overlapping groups"
            ),
            **BODY,
            **error_response(422, "not_a_policy, not_signed or expired_policy"),
            **BOUNDS,
        },
        openapi_extra=merge(
            ADMIN_SECURITY,
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
        return ok(out, 201 if outcome is PolicyPutOutcome.STORED else 200)

    @router.get(
        "/exemptions",
        response_model=schemas.AdminExemptionsOut,
        summary="exemption requests, newest first",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=ADMIN_SECURITY,
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
        return ok(schemas.AdminExemptionsOut(requests=[admin_exemption_out(r) for r in records]))

    @router.post(
        "/exemptions/{request_id}/approve",
        response_model=schemas.ApproveOut,
        summary="approve: sign a grant with the collector's grant key",
        responses={
            **E401,
            **error_response(404, "no such request"),
            **error_response(
                409,
                "already_decided, no_grant_key, no_policy, or grant_key_not_authorised (the "
                "policy does not list the grant key for this category)",
            ),
            **BODY,
            **BOUNDS,
        },
        openapi_extra=merge(ADMIN_SECURITY, json_body(schemas.ApproveIn, required=False)),
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
        return ok(
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
            **E401,
            **error_response(404, "no such request"),
            **error_response(409, "already_decided"),
            **BODY,
            **BOUNDS,
        },
        openapi_extra=merge(ADMIN_SECURITY, json_body(schemas.DenyIn)),
    )
    async def deny(
        request: Request, request_id: str, admin: AdminIdentity = admin_json
    ) -> Response:
        given = parse_json(schemas.DenyIn, await body_of(request))
        await run_in_threadpool(service.exemptions.deny, request_id, admin.actor, given.reason)
        return ok(schemas.DecisionOut(request_id=request_id, status="denied"))

    @router.get(
        "/devices",
        response_model=schemas.DevicesOut,
        summary="enrolled devices, what they sent and their open requests",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=ADMIN_SECURITY,
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
        return ok(schemas.DevicesOut(devices=out))

    @router.post(
        "/devices/{device_id}/revoke",
        response_model=schemas.RevokedOut,
        summary="revoke a device: its requests are refused from now on",
        responses={**E401, **error_response(404, "no such device"), **BODY, **BOUNDS},
        openapi_extra=ADMIN_SECURITY,
    )
    async def revoke(
        request: Request, device_id: str, admin: AdminIdentity = admin_json
    ) -> Response:
        await body_of(request)
        await run_in_threadpool(service.accounts.revoke_device, device_id, admin.actor)
        return ok(schemas.RevokedOut(device_id=device_id, status="revoked"))

    @router.get(
        "/audit",
        response_model=schemas.AuditOut,
        summary="the audit log, newest first",
        responses={**E401, **BODY, **BOUNDS},
        openapi_extra=ADMIN_SECURITY,
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
        return ok(schemas.AuditOut(events=[audit_out(e) for e in events]))

    return router
