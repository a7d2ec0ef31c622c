"""The collector's HTTP API (``docs/PROTOCOL.md``, version 1) on FastAPI.

:func:`create_app` builds the whole app in-process from a
:class:`~collector.config.CollectorConfig` (tests hand it an injected clock
and a temporary data directory); ``overt collector serve`` runs the same app
on uvicorn. This package owns only HTTP: who is asked to wait before anything
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

Modules: :mod:`~collector.api.device_routes` (batch uploads and the other
device requests), :mod:`~collector.api.admin_routes`,
:mod:`~collector.api.bodies` (reading bodies within their bounds),
:mod:`~collector.api.outputs` (records to response models),
:mod:`~collector.api.docs` (what the OpenAPI document adds to the routes);
this one builds the app and maps errors to answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from collector.admission import AdmissionGate
from collector.api.admin_routes import admin_routes
from collector.api.device_routes import BatchUploads, batch_route, device_routes
from collector.api.docs import openapi_schema
from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.http_errors import JSON, error_parts
from collector.service import CollectorService
from collector.store.protocols import Storage
from collector.store.sqlite import SQLiteStorage

logger = logging.getLogger(__name__)

API_VERSION = "1"


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(app: Any, scope: Any) -> list[str]:
    """Every method some route of ``app`` serves at the request's path."""
    allowed = []
    for method in _METHODS:
        probe = {**scope, "type": "http", "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def install_error_handlers(app: FastAPI) -> None:
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
    app.include_router(batch_route(uploads))
    app.include_router(device_routes(service, config.limits, config.admission))
    app.include_router(admin_routes(service, config.limits, config.admission))
    install_error_handlers(app)
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
    openapi: Callable[[], dict[str, Any]] = lambda: openapi_schema(app)  # noqa: E731
    app.openapi = openapi  # type: ignore[method-assign]
    return app
