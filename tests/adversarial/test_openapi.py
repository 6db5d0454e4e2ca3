"""The OpenAPI document: valid, served at /openapi.json, and covering every route the gateway serves."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from gateway.app import create_app
from gateway.openapi import openapi_document
from tests.adversarial.conftest import LiveGateway
from tests.factories import make_store
from tests.gateway.conftest import gateway_settings


def served_operations(tmp_path, admin: bool = False) -> set[tuple[str, str]]:
    """What the application routes: with `admin`, configured with a tokens file (the ops API mounted)."""
    overrides = {}
    if admin:
        tokens = tmp_path / "tokens.json"
        tokens.write_text('{"tokens": []}')
        overrides["admin_tokens"] = tokens
    app = create_app(gateway_settings(make_store(tmp_path / "models"), **overrides),
                     metrics_registry=CollectorRegistry())
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        if not route.include_in_schema:  # the dashboard's HTML pages (/ui): not API, documented in the README
            assert route.path.startswith("/ui"), route.path
            continue
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route
                operations.add((route.path, method.lower()))
    return operations


def documented_operations(admin: bool = False) -> set[tuple[str, str]]:
    return {(path, method) for path, item in openapi_document(admin=admin)["paths"].items() for method in item}


@pytest.mark.parametrize("admin", [False, True])
def test_the_document_is_valid_openapi(admin: bool) -> None:
    validate(openapi_document(admin=admin))


@pytest.mark.parametrize("admin", [False, True])
def test_every_route_is_documented_and_nothing_else(tmp_path, admin: bool) -> None:
    served = served_operations(tmp_path, admin)
    assert ("/predict/{model}", "post") in served and ("/openapi.json", "get") in served
    assert (("/admin/v1/status", "get") in served) is admin
    assert served - documented_operations(admin) == set(), "routes missing from the OpenAPI document"
    assert documented_operations(admin) - served == set(), "the OpenAPI document lists operations nobody serves"


def test_every_admin_operation_needs_the_bearer_scheme() -> None:
    document = openapi_document(admin=True)
    assert document["components"]["securitySchemes"]["bearer"] == {**document["components"]["securitySchemes"][
        "bearer"], "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for operation in item.values():
            assert (operation.get("security") == [{"bearer": []}]) is path.startswith("/admin/"), path
            if path.startswith("/admin/"):
                assert {"401", "405"} <= operation["responses"].keys(), path


@pytest.mark.parametrize("admin", [False, True])
def test_path_parameters_are_declared(admin: bool) -> None:
    for path, item in openapi_document(admin=admin)["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_served_at_openapi_json(live_gateway: LiveGateway) -> None:
    with live_gateway.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == openapi_document()
