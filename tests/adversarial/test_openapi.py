"""The OpenAPI document: valid, served at /openapi.json, and covering every route the gateway serves."""
from __future__ import annotations

import re

from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from gateway.app import create_app
from gateway.openapi import openapi_document
from tests.adversarial.conftest import LiveGateway
from tests.factories import make_store
from tests.gateway.conftest import gateway_settings


def served_operations(tmp_path) -> set[tuple[str, str]]:
    app = create_app(gateway_settings(make_store(tmp_path / "models")), metrics_registry=CollectorRegistry())
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route
                operations.add((route.path, method.lower()))
    return operations


def documented_operations() -> set[tuple[str, str]]:
    return {(path, method) for path, item in openapi_document()["paths"].items() for method in item}


def test_the_document_is_valid_openapi() -> None:
    validate(openapi_document())


def test_every_route_is_documented_and_nothing_else(tmp_path) -> None:
    served = served_operations(tmp_path)
    assert ("/predict/{model}", "post") in served and ("/openapi.json", "get") in served
    assert served - documented_operations() == set(), "routes missing from the OpenAPI document"
    assert documented_operations() - served == set(), "the OpenAPI document lists operations nobody serves"


def test_path_parameters_are_declared() -> None:
    for path, item in openapi_document()["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_served_at_openapi_json(live_gateway: LiveGateway) -> None:
    with live_gateway.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == openapi_document()
