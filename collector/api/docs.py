"""What ``/openapi.json`` says beyond the routes: error answers, security, read bodies.

FastAPI generates the document from the routes and their response models.
Device and admin bodies are read after the caller is authenticated (see
:mod:`collector.api.bodies`), so they are not FastAPI body parameters: each
route names its request model here (:func:`json_body`, in ``openapi_extra``)
and :func:`openapi_schema` adds those models' JSON Schemas — the very
models the bodies are validated with — and the security schemes. The
sealed batch is declared the same way, with its own media type.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from collector import schemas
from collector.http_errors import JSON
from overt.wire.signature import (
    DEVICE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

logger = logging.getLogger(__name__)


def error_response(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.ErrorOut, "description": description}}


E401 = error_response(401, "authentication failed (one answer for every reason)")
E408 = error_response(408, "body_timeout: the body stopped arriving; the connection is closed")
E413 = error_response(413, "body over the limit; refused before it is read")
E422 = error_response(422, "malformed request")
E429 = error_response(429, "rate_limited: over the device's or the address's rate; see Retry-After")
E503 = error_response(
    503, "overloaded, or the store cannot write now (storage_error); retry after Retry-After"
)
#: What any request may be answered, whatever it is.
BOUNDS = {**E429, **E503}
#: What any request with a body may be answered besides.
BODY = {**E408, **E413, **E422}

#: The device signature headers, as security schemes that hold together
#: (``overt/wire/signature.py``): a device request carries all four.
DEVICE_SCHEMES = {
    "overtDevice": DEVICE_HEADER,
    "overtTimestamp": TIMESTAMP_HEADER,
    "overtNonce": NONCE_HEADER,
    "overtSignature": SIGNATURE_HEADER,
}
DEVICE_SECURITY: dict[str, Any] = {"security": [{scheme: [] for scheme in DEVICE_SCHEMES}]}
ADMIN_SECURITY: dict[str, Any] = {"security": [{"bearer": []}]}


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The request body of an operation: the JSON Schema of the model that validates it."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {JSON: {"schema": ref}}}}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def openapi_schema(app: FastAPI) -> dict[str, Any]:
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
    for scheme, header in DEVICE_SCHEMES.items():
        security[scheme] = {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "device request signature, overt/wire/signature.py (all four together)",
        }
    app.openapi_schema = schema
    return schema
