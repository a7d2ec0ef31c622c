"""``GET /openapi.json`` describes what the collector does, refusals included."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.routing import Route
from starlette.testclient import TestClient

from collector import schemas
from overt.wire.sealed import MEDIA_TYPE


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    return doc


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_batch_upload_is_a_binary_body_with_every_refusal(document: dict[str, Any]) -> None:
    upload = document["paths"]["/v1/batches"]["post"]
    schema = upload["requestBody"]["content"][MEDIA_TYPE]["schema"]
    assert schema == {"type": "string", "format": "binary"}
    assert {"200", "201", "401", "409", "413", "422", "429", "503"} <= set(upload["responses"])
    [requirement] = upload["security"]
    schemes = document["components"]["securitySchemes"]
    headers = {schemes[name]["name"] for name in requirement}
    assert headers == {"Overt-Device", "Overt-Timestamp", "Overt-Nonce", "Overt-Signature"}
    for name in requirement:
        assert (schemes[name]["type"], schemes[name]["in"]) == ("apiKey", "header")


def test_every_route_of_the_app_is_documented(app: FastAPI, document: dict[str, Any]) -> None:
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    for route in app.routes:
        if not isinstance(route, Route) or route.path == "/openapi.json":
            continue
        for method in route.methods or ():
            if method != "HEAD":
                assert (route.path, method) in documented


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


@pytest.mark.parametrize(
    ("path", "method", "model"),
    [
        ("/v1/enroll", "post", "EnrollIn"),
        ("/v1/exemptions", "post", "ExemptionIn"),
        ("/v1/erasure", "post", "ErasureIn"),
        ("/v1/consent", "post", "ConsentIn"),
        ("/v1/admin/enrollment-tokens", "post", "EnrollmentTokenIn"),
        ("/v1/admin/exemptions/{request_id}/approve", "post", "ApproveIn"),
        ("/v1/admin/exemptions/{request_id}/deny", "post", "DenyIn"),
    ],
)
def test_json_bodies_name_their_schema(
    document: dict[str, Any], path: str, method: str, model: str
) -> None:
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}


def test_admin_endpoints_need_the_bearer_token(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        if path.startswith("/v1/admin/"):
            for operation in operations.values():
                assert operation["security"] == [{"bearer": []}]
                assert "401" in operation["responses"]


def test_conflicts_and_limits_are_described(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert "409" in paths["/v1/enroll"]["post"]["responses"]
    assert "409" in paths["/v1/admin/policy"]["put"]["responses"]
    assert "422" in paths["/v1/admin/policy"]["put"]["responses"]
    assert "409" in paths["/v1/admin/exemptions/{request_id}/approve"]["post"]["responses"]
    for path in ("/v1/enroll", "/v1/exemptions", "/v1/erasure", "/v1/consent"):
        assert "413" in paths[path]["post"]["responses"]


def test_documented_bodies_are_the_models_the_server_validates_with(
    document: dict[str, Any],
) -> None:
    documented = document["components"]["schemas"]
    for model in schemas.REQUEST_MODELS:
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in expected.pop("$defs", {}).items():
            assert documented[name] == definition
        assert documented[model.__name__] == expected
