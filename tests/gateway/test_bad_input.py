"""Every kind of bad request: the right status, a clear JSON error naming the input and the signature, nothing logged
as a server error, and the server still answering afterwards."""
from __future__ import annotations

import logging

import orjson
import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import MAX_BATCH_ROWS, MAX_BODY_BYTES

IRIS_SIGNATURE = "inputs: X: float32[batch, 4]"
PAIR_SIGNATURE = "inputs: a: float32[batch, 2]; b: int64[batch, 2]"
GOOD_ROW = [[5.1, 3.5, 1.4, 0.2]]

CASES = [
    # (id, path, body (object -> JSON, bytes -> raw), headers, status, words the error must contain)
    ("unknown-model", "/predict/nosuch", {"inputs": GOOD_ROW}, {}, 404, ["nosuch", "not found"]),
    ("invalid-model-name", "/predict/No%20Such!", {"inputs": GOOD_ROW}, {}, 404, ["No Such!", "not found"]),
    ("unknown-version", "/predict/iris?version=v9.9.9", {"inputs": GOOD_ROW}, {}, 404, ["v9.9.9"]),
    ("invalid-version", "/predict/iris?version=latest-ish", {"inputs": GOOD_ROW}, {}, 404, ["latest-ish"]),
    ("unknown-environment", "/predict/iris", {"inputs": GOOD_ROW}, {"X-Environment": "qa"}, 404, ["qa"]),
    ("not-deployed", "/predict/unused", {"inputs": GOOD_ROW}, {}, 503, ["unused", "production"]),
    ("not-json", "/predict/iris", b"{inputs: [1, 2", {}, 400, ["not valid JSON"]),
    ("nan-literal", "/predict/iris", b'{"inputs": [[NaN, 1, 2, 3]]}', {}, 400, ["not valid JSON"]),
    ("not-an-object", "/predict/iris", [[1, 2, 3, 4]], {}, 400, ['"inputs"', IRIS_SIGNATURE]),
    ("no-inputs-field", "/predict/iris", {"rows": GOOD_ROW}, {}, 400, ['"inputs"', IRIS_SIGNATURE]),
    ("wrong-width", "/predict/iris", {"inputs": [[1, 2, 3]]}, {}, 400, ["'X'", "[1, 3]", IRIS_SIGNATURE]),
    ("wrong-rank", "/predict/iris", {"inputs": [1, 2, 3, 4]}, {}, 400, ["'X'", "2 axes", IRIS_SIGNATURE]),
    ("ragged", "/predict/iris", {"inputs": [[1, 2, 3, 4], [1, 2]]}, {}, 400, ["'X'", "rectangular", IRIS_SIGNATURE]),
    ("strings-for-floats", "/predict/iris", {"inputs": [["a", "b", "c", "d"]]}, {}, 400,
     ["'X'", "strings", IRIS_SIGNATURE]),
    ("numeric-strings-for-floats", "/predict/iris", {"inputs": [["1", "2", "3", "4"]]}, {}, 400, ["'X'", "strings"]),
    ("booleans-for-floats", "/predict/iris", {"inputs": [[True, False, True, False]]}, {}, 400, ["'X'", "booleans"]),
    ("floats-for-ints", "/predict/pair", {"inputs": {"a": [[1, 2]], "b": [[1.5, 2]]}}, {}, 400,
     ["'b'", "integers", PAIR_SIGNATURE]),
    ("int64-overflow", "/predict/pair", b'{"inputs": {"a": [[1, 2]], "b": [[9223372036854775808, 2]]}}', {}, 400,
     ["'b'"]),
    ("huge-float-for-ints", "/predict/pair", b'{"inputs": {"a": [[1, 2]], "b": [[1e300, 2]]}}', {},
     400, ["'b'", "integers"]),
    ("float32-overflow-to-inf", "/predict/iris", {"inputs": [[1e39, 1, 2, 3]]}, {}, 400,
     ["'X'", "infinite", IRIS_SIGNATURE]),
    ("integer-past-float32", "/predict/iris", b'{"inputs": [[1' + b"0" * 40 + b', 1, 2, 3]]}', {}, 400,
     ["'X'", "infinite", IRIS_SIGNATURE]),
    ("a-null-among-floats", "/predict/iris", {"inputs": [[5.1, None, 1.4, 0.2]]}, {}, 400, ["'X'", IRIS_SIGNATURE]),
    ("missing-input", "/predict/pair", {"inputs": {"a": [[1, 2]]}}, {}, 400, ["missing", "'b'", PAIR_SIGNATURE]),
    ("extra-input", "/predict/pair", {"inputs": {"a": [[1, 2]], "b": [[1, 2]], "c": [[1]]}}, {}, 400,
     ["unknown input", "'c'", PAIR_SIGNATURE]),
    ("unnamed-for-two-inputs", "/predict/pair", {"inputs": [[1, 2]]}, {}, 400, ["name them", PAIR_SIGNATURE]),
    ("empty-batch", "/predict/iris", {"inputs": []}, {}, 400, ["'X'", "empty batch", IRIS_SIGNATURE]),
    ("empty-named-batch", "/predict/pair", {"inputs": {"a": [], "b": []}}, {}, 400, ["empty batch"]),
    ("text-not-a-list", "/predict/sentiment", {"text": "great"}, {}, 400, ["list of strings"]),
    ("text-empty", "/predict/sentiment", {"text": []}, {}, 400, ["empty batch"]),
    ("text-to-tabular-model", "/predict/iris", {"text": ["hello"]}, {}, 400, ["no raw text", IRIS_SIGNATURE]),
    ("batch-over-limit", "/predict/iris", {"inputs": [[1, 2, 3, 4]] * (MAX_BATCH_ROWS + 1)}, {}, 413,
     [str(MAX_BATCH_ROWS + 1), "limit"]),
    ("text-batch-over-limit", "/predict/sentiment", {"text": ["good"] * (MAX_BATCH_ROWS + 1)}, {}, 413, ["limit"]),
    ("body-over-limit", "/predict/iris", b'{"inputs": [[' + b"1," * MAX_BODY_BYTES + b'1]]}', {}, 413,
     ["over the limit", str(MAX_BODY_BYTES)]),
    # one JSON boolean among numbers: numpy would read it as 1
    ("a-boolean-among-floats", "/predict/iris", {"inputs": [[5.1, True, 1.4, 0.2]]}, {}, 400,
     ["'X'", "booleans", IRIS_SIGNATURE]),
    ("a-boolean-among-named-ints", "/predict/pair", {"inputs": {"a": [[1, 2]], "b": [[1, False]]}}, {}, 400,
     ["'b'", "booleans", PAIR_SIGNATURE]),
    ("v2-a-boolean-among-floats", "/v2/models/iris/infer",
     {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, False, 0.2]}]}, {}, 400,
     ["'X'", "booleans", IRIS_SIGNATURE]),
    # v2 fields of the wrong JSON type
    ("v2-parameters-not-an-object", "/v2/models/iris/infer",
     {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW[0]}], "parameters": [1]}, {},
     400, ['"parameters" of the request', "object"]),
    ("v2-input-parameters-not-an-object", "/v2/models/iris/infer",
     {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW[0], "parameters": "x"}]}, {},
     400, ['"parameters" of input', "'X'"]),
    ("v2-output-parameters-not-an-object", "/v2/models/iris/infer",
     {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW[0]}],
      "outputs": [{"name": "label", "parameters": 5}]}, {}, 400, ['"parameters" of output', "'label'"]),
    ("v2-id-not-a-string", "/v2/models/iris/infer",
     {"id": {"a": 1}, "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW[0]}]}, {},
     400, ['"id"']),
    # bodies declared as something other than JSON
    ("text-plain", "/predict/iris", {"inputs": GOOD_ROW}, {"Content-Type": "text/plain"}, 415,
     ["text/plain", "application/json"]),
    ("form-urlencoded", "/v2/models/iris/infer", {"inputs": []}, {"Content-Type": "application/x-www-form-urlencoded"},
     415, ["not JSON"]),
    # client-given names are echoed cut to 64 characters
    ("long-environment", "/predict/iris", {"inputs": GOOD_ROW}, {"X-Environment": "e" * 10_000}, 404,
     ["'" + "e" * 64 + "…'"]),
    ("long-model-name", "/predict/" + "m" * 10_000, {"inputs": GOOD_ROW}, {}, 404, ["'" + "m" * 64 + "…'"]),
    ("long-pinned-version", "/predict/iris?version=" + "9" * 10_000, {"inputs": GOOD_ROW}, {}, 404,
     ["'" + "9" * 64 + "…'"]),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_request_is_refused_clearly_and_the_server_keeps_serving(
        client: TestClient, caplog: pytest.LogCaptureFixture, path: str, body: object, headers: dict, status: int,
        words: list[str]):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with caplog.at_level(logging.ERROR):
        response = client.post(path, content=content, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message
    assert len(message) < 2000  # nothing the client sent is echoed at length
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert client.post("/predict/iris", json={"inputs": GOOD_ROW}).status_code == 200


def test_streamed_body_over_limit_without_content_length_is_refused(client: TestClient):
    def chunks():
        yield b'{"inputs": [['
        for _ in range(MAX_BODY_BYTES // 1000 + 1):
            yield b"1," * 500
        yield b"1]]}"

    response = client.post("/predict/iris", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and "over the limit" in response.json()["error"]
    assert client.post("/predict/iris", json={"inputs": GOOD_ROW}).status_code == 200


def test_refused_requests_are_counted_without_url_names_as_labels(client: TestClient):
    client.post("/predict/made-up-model-xyz", json={"inputs": GOOD_ROW})
    client.post("/predict/iris", json={"inputs": GOOD_ROW}, headers={"X-Environment": "made-up-env"})
    metrics = client.get("/metrics").text
    assert "made-up-model-xyz" not in metrics and "made-up-env" not in metrics
    assert 'requests_total{environment="production",model="_unknown",outcome="not_found",version=""}' in metrics


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "Application/JSON",
                                          "application/vnd.api+json"])
def test_a_json_body_is_taken_with_any_json_content_type_or_none(client: TestClient, content_type: str | None):
    """A missing Content-Type is taken as JSON (curl without -H, bench/wrk scripts, older clients send none)."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/predict/iris", content=orjson.dumps({"inputs": GOOD_ROW}), headers=headers)
    assert ("content-type" in response.request.headers) == (content_type is not None)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "status", "words"), [
    ("GET", "/no/such/route", 404, ["no route", "GET", "/no/such/route"]),
    ("GET", "/" + "x" * 10_000, 404, ["no route", "'/" + "x" * 63 + "…'"]),
    ("GET", "/predict/iris", 405, ["GET", "/predict/iris"]),
    ("DELETE", "/v2/models/iris/infer", 405, ["DELETE"]),
    ("POST", "/health", 405, ["POST"]),
])
def test_every_error_answer_outside_the_data_plane_is_json(client: TestClient, method: str, path: str, status: int,
                                                           words: list[str]):
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message
    assert len(message) < 200
    if status == 405:
        assert response.headers["allow"]
