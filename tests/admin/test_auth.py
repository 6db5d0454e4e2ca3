"""Authentication and roles, against a real gateway: every admin route (walked from the application's own routes, so
a route added later is covered) refuses a request without a token or with a wrong one (401, WWW-Authenticate:
Bearer), and each role gets exactly the routes its permission allows, on the data port and on the admin port alike;
without a tokens file the routes do not exist."""
from __future__ import annotations

import re

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from gateway.admin.tokens import secret_digest
from gateway.app import create_app
from tests.admin.conftest import DEADLINE_S, OpsGateway, build_ops_store
from tests.factories import make_store, running_server
from tests.gateway.conftest import gateway_settings

PATH_VALUES = {"model": "iris", "environment": "production", "version": "v2.0.0", "snapshot_id": "1",
               "file": "model.onnx", "job": "iris-20261202-120000-abcdef"}
# What each role may do, written out as the README's table says it (independently of gateway/admin/auth.py).
ALLOWED = {"read": {"read"}, "deploy": {"read", "deploy"}, "approve": {"read", "approve"},
           "admin": {"read", "deploy", "approve"}}


def admin_operations(tmp_path) -> list[tuple[str, str]]:
    """(method, concrete path) of every admin route the application serves."""
    store = make_store(tmp_path / "walk")
    tokens = tmp_path / "walk-tokens.json"
    tokens.write_text('{"tokens": []}')
    app = create_app(gateway_settings(store, admin_tokens=tokens), metrics_registry=CollectorRegistry())
    operations = []
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path.startswith("/admin/"):
            path = re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], route.path)
            operations += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return operations


def permission_of(method: str, path: str) -> str:
    if method == "GET" or path.endswith("/retrain/check"):
        return "read"
    return "approve" if path.endswith("/approvals") else "deploy"


# A body that changes nothing when the role is allowed (dry runs), so that the matrix leaves the store as it was.
SAFE_BODY = {"dry_run": True, "version": "v2.0.0", "weight": 10}


def call(client: httpx.Client, method: str, path: str, **headers: str) -> httpx.Response:
    if method == "GET":
        return client.get(path, headers=headers)
    body = {"environment": "production"} if path.endswith("/approvals") else dict(SAFE_BODY)
    if path.endswith(("/promote", "/rollback", "/restore")):
        body = {"dry_run": True}
    if path.endswith("/snapshots"):
        body = {"name": "matrix"}
    if "/retrain/" in path:
        body = {}  # the store has no retrain.toml: a run is a 404, nothing starts
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.e2e
def test_every_admin_route_needs_a_valid_token(ops: OpsGateway, tmp_path) -> None:
    operations = admin_operations(tmp_path)
    assert len(operations) == 22, operations
    before = ops.store.registry.read().revision
    for admin_port in (False, True):
        with ops.client(admin_port=admin_port) as client:
            for method, path in operations:
                for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"},
                                {"Authorization": f"Bearer {secret_digest(ops.secrets['admin']).hex()}"},
                                {"Authorization": "Bearer"}):
                    response = call(client, method, path, **headers)
                    assert response.status_code == 401, (method, path, headers, response.text)
                    assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
                    assert "error" in response.json()
    assert ops.store.registry.read().revision == before, "a refused request changed the registry"


@pytest.mark.e2e
@pytest.mark.parametrize("role", ["read", "deploy", "approve", "admin"])
def test_each_role_against_each_kind_of_route(ops: OpsGateway, tmp_path, role: str) -> None:
    for admin_port in (False, True):
        with ops.client(role, admin_port=admin_port) as client:
            for method, path in admin_operations(tmp_path):
                response = call(client, method, path)
                permission = permission_of(method, path)
                if permission in ALLOWED[role]:
                    assert response.status_code not in (401, 403), (role, method, path, response.text)
                    assert response.status_code < 500, (role, method, path, response.text)
                else:
                    assert response.status_code == 403, (role, method, path, response.text)
                    assert f"{role}-bot" in response.json()["error"]


@pytest.mark.e2e
def test_read_token_changes_nothing(ops: OpsGateway, tmp_path) -> None:
    before = ops.store.registry.read().revision
    with ops.client("read") as client:
        for method, path in admin_operations(tmp_path):
            if method == "POST" and permission_of(method, path) != "read":
                assert client.post(path, json={"version": "v2.0.0", "weight": 50, "environment": "production"}
                                   ).status_code == 403
    assert ops.store.registry.read().revision == before


@pytest.mark.e2e
def test_without_a_tokens_file_there_is_no_ops_api(tmp_path) -> None:
    store = build_ops_store(tmp_path / "models")
    app = create_app(gateway_settings(store, "production"), metrics_registry=CollectorRegistry())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        for method, path in admin_operations(tmp_path):
            response = client.request(method, path, headers={"Authorization": "Bearer anything"})
            assert response.status_code == 404, (method, path)
            assert "error" in response.json()
        assert "/admin/v1/status" not in client.get("/openapi.json").json()["paths"]
        assert client.post("/predict/iris", json={"inputs": [[1, 2, 3, 4]]}).status_code == 200


@pytest.mark.e2e
def test_the_admin_port_serves_the_ops_api_only(ops: OpsGateway) -> None:
    with ops.client("read", admin_port=True) as client:
        assert client.get("/admin/v1/status").status_code == 200
        assert client.post("/predict/iris", json={"inputs": [[1, 2, 3, 4]]}).status_code == 404
        assert client.get("/metrics").status_code == 404
    with ops.client("read") as client:  # and the data port still serves both
        assert client.get("/admin/v1/status").status_code == 200
        assert client.post("/predict/iris", json={"inputs": [[1, 2, 3, 4]]}).status_code == 200
