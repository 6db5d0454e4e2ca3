"""Open Inference Protocol (KServe v2) REST: every datatype through the app, and the real tritonclient against a
real server."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.codec import V2_BY_DTYPE_NAME
from modelstore.layout import Store
from tests.factories import IDENTITY_DTYPES, classifier_expected, running_server
from tests.gateway.conftest import gateway_settings

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def echo_values(dtype: str) -> np.ndarray:
    if dtype == "string":
        return np.array([["a", "bé"], ["", "z"]], dtype=object)
    if dtype == "bool":
        return np.array([[True, False], [False, True]])
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    return np.array([[info.min, 0], [1, info.max]], dtype=dtype)


def test_server_metadata_liveness_and_readiness(client: TestClient):
    assert client.get("/v2").json()["name"] == "onnxgate"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/v2.0.0/ready").status_code == 200
    assert client.get("/v2/models/unused/ready").status_code == 503
    assert client.get("/v2/models/nosuch/ready").status_code == 404
    assert client.get("/v2/models/iris/versions/v9.0.0/ready").status_code == 404


def test_model_metadata_uses_v2_datatypes_and_minus_one_for_dynamic_axes(client: TestClient):
    body = client.get("/v2/models/iris").json()
    assert body["name"] == "iris" and body["versions"] == ["v1.0.0"] and body["platform"] == "onnxruntime"
    assert body["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert {"name": "label", "datatype": "INT64", "shape": [-1]} in body["outputs"]
    assert client.get("/v2/models/iris", headers={"X-Environment": "staging"}).json()["versions"] == ["v2.0.0"]
    assert client.get("/v2/models/iris/versions/v2.0.0").json()["versions"] == ["v2.0.0"]


def test_infer_round_trips_every_datatype(client: TestClient):
    values = {dtype: echo_values(dtype) for dtype in IDENTITY_DTYPES}
    inputs = [{"name": f"in_{d}", "shape": list(v.shape), "datatype": V2_BY_DTYPE_NAME[d],
               "data": v.ravel().tolist() if d != "float16" else v.astype(np.float32).ravel().tolist()}
              for d, v in values.items()]
    response = client.post("/v2/models/echo/infer", json={"id": "req-7", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "echo" and body["model_version"] == "v1.0.0"
    outputs = {o["name"]: o for o in body["outputs"]}
    for dtype, value in values.items():
        out = outputs[f"out_{dtype}"]
        assert out["datatype"] == V2_BY_DTYPE_NAME[dtype] and out["shape"] == [2, 2]
        assert out["data"] == value.ravel().tolist()


def test_infer_takes_nested_data_and_a_subset_of_outputs(client: TestClient, served_store: tuple[Store, dict]):
    _, weights = served_store
    response = client.post("/v2/models/iris/versions/v2.0.0/infer", json={
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROWS.tolist()}],
        "outputs": [{"name": "probabilities"}],
    })
    assert response.status_code == 200
    [output] = response.json()["outputs"]
    _, probabilities = classifier_expected(weights["v2.0.0"], ROWS)
    assert output["name"] == "probabilities" and output["shape"] == [2, 3]
    np.testing.assert_allclose(output["data"], probabilities.ravel(), rtol=1e-5)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}, 400, ["FP64", "FP32"]),
    ({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, ["shape [2, 4]"]),
    ({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, ["'X'", "[1, 3]"]),
    ({"inputs": [{"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, ["missing", "'X'"]),
    ({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "outputs": [{"name": "nope"}]}, 400, ["nope"]),
    ({"inputs": [{"name": "X", "shape": [0, 4], "datatype": "FP32", "data": []}]}, 400, ["empty batch"]),
    ({"inputs": "X"}, 400, ['"inputs"']),
])
def test_infer_errors(client: TestClient, body: dict, status: int, words: list[str]):
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == status
    for word in words:
        assert word in response.json()["error"]
    assert client.post("/v2/models/nosuch/infer", json=body).status_code == 404


@pytest.fixture(scope="module")
def server_url(served_store: tuple[Store, dict]) -> Iterator[str]:
    store, _ = served_store
    app = create_app(gateway_settings(store, "production", "staging"), metrics_registry=CollectorRegistry())
    with running_server(app) as url:
        yield url


@pytest.mark.e2e
def test_tritonclient_against_a_real_server(server_url: str, served_store: tuple[Store, dict]):
    _, weights = served_store
    client = triton.InferenceServerClient(url=server_url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris") and client.is_model_ready("iris", "v2.0.0")
        assert not client.is_model_ready("unused")
        metadata = client.get_model_metadata("iris")
        assert metadata["inputs"][0] == {"name": "X", "datatype": "FP32", "shape": [-1, 4]}

        infer_input = triton.InferInput("X", list(ROWS.shape), "FP32")
        infer_input.set_data_from_numpy(ROWS, binary_data=False)
        outputs = [triton.InferRequestedOutput("label", binary_data=False),
                   triton.InferRequestedOutput("probabilities", binary_data=False)]
        result = client.infer("iris", [infer_input], outputs=outputs, request_id="abc")
        labels, probabilities = classifier_expected(weights["v1.0.0"], ROWS)
        np.testing.assert_array_equal(result.as_numpy("label"), labels)
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-5)
        assert result.get_response()["id"] == "abc" and result.get_response()["model_version"] == "v1.0.0"

        pinned = client.infer("iris", [infer_input], model_version="v2.0.0", outputs=outputs[:1],
                              headers={"X-Environment": "staging"})
        np.testing.assert_array_equal(pinned.as_numpy("label"), classifier_expected(weights["v2.0.0"], ROWS)[0])
    finally:
        client.close()
