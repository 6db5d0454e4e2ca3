"""The data plane's own dispatch (gateway/data_plane.py): which requests skip Starlette's router, and that those
answer exactly as the router's routes do, errors included."""
from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.testclient import TestClient

from gateway.data_plane import DataPlane, DataPlaneEndpoint
from gateway.direct_http import MAX_DIRECT_TARGETS, direct_target

GOOD_ROW = [[5.1, 3.5, 1.4, 0.2]]


def never_answers(*_: object) -> None:
    raise AssertionError("not called")


@pytest.fixture
def data_plane() -> DataPlane:
    return DataPlane(predict=DataPlaneEndpoint(never_answers, 1024), v2_infer=DataPlaneEndpoint(never_answers, 1024))


@pytest.mark.parametrize(("method", "path", "endpoint", "params"), [
    ("POST", "/predict/iris", "predict", {"model": "iris"}),
    ("POST", "/v2/models/iris/infer", "v2_infer", {"model": "iris"}),
    ("POST", "/v2/models/iris/versions/v1.0.0/infer", "v2_infer", {"model": "iris", "version": "v1.0.0"}),
    ("GET", "/predict/iris", None, None),
    ("POST", "/predict/iris/", None, None),
    ("POST", "/predict/", None, None),
    ("POST", "/predict/a/b", None, None),
    ("POST", "/v2/models/iris", None, None),
    ("POST", "/v2/models//infer", None, None),
    ("POST", "/v2/models/iris/versions//infer", None, None),
    ("POST", "/v2/models/iris/ready", None, None),
    ("POST", "/health", None, None),
])
def test_match_takes_only_the_data_plane_posts(data_plane: DataPlane, method: str, path: str, endpoint: str | None,
                                               params: dict | None):
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    matched = data_plane.match(scope)
    assert matched is (getattr(data_plane, endpoint) if endpoint else None)
    assert scope.get("path_params") == params


def test_match_strips_the_root_path(data_plane: DataPlane):
    scope = {"type": "http", "method": "POST", "path": "/gw/predict/iris", "root_path": "/gw"}
    assert data_plane.match(scope) is data_plane.predict and scope["path_params"] == {"model": "iris"}


@pytest.mark.parametrize(("url", "root_path", "path", "query", "params"), [
    (b"/predict/iris", "", "/predict/iris", b"", {"model": "iris"}),
    (b"/predict/iris?explain=1&x=%20", "", "/predict/iris", b"explain=1&x=%20", {"model": "iris"}),
    (b"/predict/ir%69s", "", "/predict/iris", b"", {"model": "iris"}),
    (b"/predict/a%2Fb", "", None, None, None),  # an encoded slash is a slash, as Starlette's router sees it
    (b"/v2/models/iris/versions/v1.0.0/infer", "/gw", "/gw/v2/models/iris/versions/v1.0.0/infer", b"",
     {"model": "iris", "version": "v1.0.0"}),
    (b"/health", "", None, None, None),
])
def test_a_direct_target_is_the_scope_uvicorn_would_build_and_the_match_it_would_get(
        data_plane: DataPlane, url: bytes, root_path: str, path: str | None, query: bytes | None, params: dict | None):
    for _ in range(2):  # parsed, then found again
        target = direct_target(data_plane, url, root_path)
        if path is None:
            assert target is None and url not in data_plane.direct_targets
            continue
        assert (target.path, target.query_string, target.path_params) == (path, query, params)
        scope = {"type": "http", "method": "POST", "path": path, "root_path": root_path}
        assert data_plane.match(scope) is target.endpoint and scope["path_params"] == params


def test_direct_targets_stay_bounded_whatever_urls_clients_send(data_plane: DataPlane):
    for index in range(3 * MAX_DIRECT_TARGETS):
        assert direct_target(data_plane, b"/predict/model-%d" % index, "").path_params == {"model": f"model-{index}"}
        assert len(data_plane.direct_targets) <= MAX_DIRECT_TARGETS
    assert direct_target(data_plane, b"/predict/iris", "").path_params == {"model": "iris"}


def test_other_methods_and_shapes_still_get_the_routers_answers(client: TestClient):
    assert client.get("/predict/iris").status_code == 405
    assert client.get("/v2/models/iris/infer").status_code == 405
    assert client.post("/predict/iris/a", json={"inputs": GOOD_ROW}).status_code == 404
    assert client.post("/predict/iris", json={"inputs": GOOD_ROW}).status_code == 200


def test_an_unexpected_failure_is_a_json_500_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture):
    async def broken(*_: object) -> None:
        raise RuntimeError("secret internal detail")

    endpoint = DataPlaneEndpoint(broken, 1024)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict/iris", "headers": [], "path_params": {}}
    with caplog.at_level(logging.ERROR):
        asyncio.run(endpoint(scope, receive, send))
    assert sent[0]["status"] == 500 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"error":"internal server error"}'
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "POST /predict/iris failed" in record.getMessage() and record.exc_info[0] is RuntimeError
