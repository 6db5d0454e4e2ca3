"""The binary tensor data extension over HTTP, against a real uvicorn server: tritonclient.http with its defaults (binary
inputs and outputs) for every datatype, answers equal to the JSON path's; binary and JSON outputs side by side; and
hand-made bodies that lie about their sizes, each a JSON 400 that leaves the server serving."""
from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.codec import V2_BY_DTYPE_NAME
from modelstore.layout import Store
from tests.factories import IDENTITY_DTYPES, classifier_expected, running_server
from tests.gateway.conftest import MAX_BATCH_ROWS, MAX_BODY_BYTES, gateway_settings
from tests.gateway.test_health_metrics import sample
from tests.gateway.test_v2 import ROWS, echo_values

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server_url(served_store: tuple[Store, dict]) -> Iterator[str]:
    store, _ = served_store
    app = create_app(gateway_settings(store, "production", "staging"), metrics_registry=CollectorRegistry())
    with running_server(app) as url:
        yield url


@pytest.fixture
def triton_client(server_url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def triton_inputs(values: dict[str, np.ndarray], binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, value in values.items():
        infer_input = triton.InferInput(name, list(value.shape), V2_BY_DTYPE_NAME[str(value.dtype)]
                                        if value.dtype != np.object_ else "BYTES")
        if binary:
            infer_input.set_data_from_numpy(value)  # tritonclient's default: binary_data=True
        else:
            infer_input.set_data_from_numpy(value, binary_data=False)
        inputs.append(infer_input)
    return inputs


def as_text(array: np.ndarray) -> np.ndarray:
    """BYTES outputs: tritonclient gives bytes from binary data and str from JSON data; compare them as text."""
    return np.vectorize(lambda item: item.decode() if isinstance(item, bytes) else item, otypes=[object])(array)


def test_server_metadata_lists_the_extension(triton_client: triton.InferenceServerClient):
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]


def test_every_datatype_with_tritonclient_defaults_answers_as_the_json_path(triton_client: triton.InferenceServerClient):
    values = {f"in_{dtype}": echo_values(dtype) for dtype in IDENTITY_DTYPES}
    # defaults: binary inputs, no outputs named, so tritonclient asks for every output in binary (binary_data_output)
    binary = triton_client.infer("echo", triton_inputs(values, binary=True), request_id="b-1")
    json_outputs = [triton.InferRequestedOutput(f"out_{dtype}", binary_data=False) for dtype in IDENTITY_DTYPES]
    plain = triton_client.infer("echo", triton_inputs(values, binary=False), outputs=json_outputs)
    response = binary.get_response()
    assert response["id"] == "b-1" and response["model_version"] == "v1.0.0"
    assert all("data" not in o and o["parameters"]["binary_data_size"] >= 0 for o in response["outputs"])
    assert all("data" in o for o in plain.get_response()["outputs"])
    for dtype in IDENTITY_DTYPES:
        sent, from_binary, from_json = values[f"in_{dtype}"], binary.as_numpy(f"out_{dtype}"), plain.as_numpy(f"out_{dtype}")
        if dtype == "string":
            assert as_text(from_binary).tolist() == as_text(from_json).tolist() == sent.tolist()
        else:
            assert from_binary.dtype == from_json.dtype == sent.dtype, dtype
            np.testing.assert_array_equal(from_binary, sent)
            np.testing.assert_array_equal(from_json, sent)


def test_a_real_model_with_binary_inputs_and_mixed_outputs(triton_client: triton.InferenceServerClient,
                                                          served_store: tuple[Store, dict]):
    _, weights = served_store
    labels, probabilities = classifier_expected(weights["v1.0.0"], ROWS)
    mixed = [triton.InferRequestedOutput("label", binary_data=True),
             triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton_client.infer("iris", triton_inputs({"X": ROWS}, binary=True), outputs=mixed)
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "data" not in outputs["label"] and outputs["label"]["parameters"]["binary_data_size"] == 2 * 8
    assert "data" in outputs["probabilities"] and "parameters" not in outputs["probabilities"]
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-5)

    all_json = [triton.InferRequestedOutput(name, binary_data=False) for name in ("label", "probabilities")]
    json_answer = triton_client.infer("iris", triton_inputs({"X": ROWS}, binary=False), outputs=all_json)
    np.testing.assert_array_equal(result.as_numpy("label"), json_answer.as_numpy("label"))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), json_answer.as_numpy("probabilities"))

    pinned = triton_client.infer("iris", triton_inputs({"X": ROWS}, binary=True), model_version="v2.0.0",
                                 outputs=[triton.InferRequestedOutput("probabilities")],
                                 headers={"X-Environment": "staging"})
    np.testing.assert_allclose(pinned.as_numpy("probabilities"), classifier_expected(weights["v2.0.0"], ROWS)[1],
                               rtol=1e-5)


def test_json_stays_the_default_answer_and_two_inputs_mix_binary_and_json(server_url: str):
    a = np.array([[1.5, -2.0]], dtype=np.float32)
    header = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                         {"name": "b", "shape": [1, 2], "datatype": "INT64", "data": [3, 4]}]}
    response = post_binary(server_url, "pair", header, a.tobytes())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json" and "inference-header-content-length" not in response.headers
    [output] = response.json()["outputs"]
    assert output["data"] == [4.5, 2.0]


def test_an_outputs_own_flag_overrides_the_requests_binary_data_output(server_url: str,
                                                                       served_store: tuple[Store, dict]):
    _, weights = served_store
    header = {**x_input(shape=(2, 4), size=32), "parameters": {"binary_data_output": True},
              "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}]}
    response = post_binary(server_url, "iris", header, ROWS.tobytes())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    label, probabilities = answer["outputs"]
    labels, expected = classifier_expected(weights["v1.0.0"], ROWS)
    assert label["data"] == labels.tolist() and "parameters" not in label
    assert probabilities["parameters"] == {"binary_data_size": 2 * 3 * 4} and "data" not in probabilities
    assert len(response.content) == length + 24 and response.headers["x-model-version"] == "v1.0.0"
    np.testing.assert_allclose(np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 3), expected, rtol=1e-5)


def test_a_second_header_length_is_refused(server_url: str):
    head = json.dumps(x_input()).encode()
    response = httpx.post(f"{server_url}/v2/models/iris/infer", content=head + FOUR, timeout=60, headers=[
        ("Inference-Header-Content-Length", str(len(head))), ("Inference-Header-Content-Length", str(len(head)))])
    assert response.status_code == 400 and "more than once" in response.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_aio_client_sends_octet_stream_and_is_answered(server_url: str, binary: bool):
    """aiohttp labels every bytes body application/octet-stream, the all-JSON ones too."""
    async def infer() -> np.ndarray:
        client = triton_aio.InferenceServerClient(url=server_url.removeprefix("http://"))
        try:
            infer_input = triton_aio.InferInput("X", list(ROWS.shape), "FP32")
            infer_input.set_data_from_numpy(ROWS, binary_data=binary)
            outputs = [triton_aio.InferRequestedOutput("probabilities", binary_data=binary)]
            result = await client.infer("iris", [infer_input], outputs=outputs)
            return result.as_numpy("probabilities")
        finally:
            await client.close()

    with httpx.Client(base_url=server_url) as client:
        expected = client.post("/v2/models/iris/infer", json={"inputs": [
            {"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROWS.ravel().tolist()}]}).json()
    probabilities = {o["name"]: o for o in expected["outputs"]}["probabilities"]["data"]
    np.testing.assert_array_equal(asyncio.run(infer()).ravel(), np.array(probabilities, dtype=np.float32))


def post_binary(url: str, model: str, header: dict | bytes, tail: bytes, *, length: str | None = None,
                content_type: str | None = "application/octet-stream") -> httpx.Response:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)) if length is None else length}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{url}/v2/models/{model}/infer", content=head + tail, headers=headers, timeout=60)


def x_input(shape: object = (1, 4), size: object = 16, datatype: str = "FP32", **fields: object) -> dict:
    return {"inputs": [{"name": "X", "shape": list(shape) if isinstance(shape, tuple) else shape, "datatype": datatype,
                        "parameters": {"binary_data_size": size}, **fields}]}


def text_input(size: int) -> dict:
    values = {f"in_{d}": echo_values(d)[:1] for d in IDENTITY_DTYPES if d != "string"}
    inputs = [{"name": n, "shape": [1, 2], "datatype": V2_BY_DTYPE_NAME[str(v.dtype)],
               "data": v.ravel().astype(object if v.dtype.kind != "f" else v.dtype).tolist()} for n, v in values.items()]
    inputs.append({"name": "in_string", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": size}})
    return {"inputs": inputs}


FOUR = np.ones(4, dtype=np.float32).tobytes()
MALFORMED = {
    "a size past the body": ("iris", x_input(size=32), FOUR, {}, ["'X'", "binary_data_size 32 is past the end"]),
    "a size that lies short": ("iris", x_input(size=12), FOUR, {}, ["4 bytes after the inputs' binary data"]),
    "a shape the size does not fit": ("iris", x_input(shape=(2, 4)), FOUR, {}, ["'X'", "takes 32 bytes, got 16"]),
    "a negative size": ("iris", x_input(size=-16), FOUR, {}, ["'X'", "non-negative integer, got -16"]),
    "a size that is not an integer": ("iris", x_input(size="16"), FOUR, {}, ["'X'", "non-negative integer"]),
    "a negative axis": ("iris", x_input(shape=[-1, 4]), FOUR, {}, ["'X'", "negative"]),
    "an overflowing shape": ("iris", x_input(shape=[2**62, 2**62]), FOUR, {}, ["'X'", "got 16"]),
    "trailing bytes": ("iris", x_input(), FOUR + b"junk", {}, ["4 bytes after the inputs' binary data"]),
    "data and a size": ("iris", x_input(data=[1, 2, 3, 4]), FOUR, {}, ["'X'", "both"]),
    "a header length past the body": ("iris", x_input(), FOUR, {"length": "9999"}, ["past the end of the", "-byte body"]),
    "a header length that is not a number": ("iris", x_input(), FOUR, {"length": "12a"},
                                             ["Inference-Header-Content-Length", "non-negative integer"]),
    "a negative header length": ("iris", x_input(), FOUR, {"length": "-5"}, ["non-negative integer"]),
    "a header that is not JSON": ("iris", b"{not json", FOUR, {}, ["inference header", "not valid JSON"]),
    "a header cut short": ("iris", x_input(), FOUR, {"length": "10"}, ["inference header", "not valid JSON"]),
    "NaN in a float input": ("iris", x_input(), np.array([1, np.nan, 2, 3], np.float32).tobytes(), {}, ["'X'", "NaN"]),
    "the wrong datatype": ("iris", x_input(datatype="FP64", size=32), bytes(32), {}, ["'X'", "FP64", "FP32"]),
    "a BYTES element past the end": ("echo", text_input(14), struct.pack("<I", 1) + b"a" + struct.pack("<I", 50) + b"xyzab",
                                     {}, ["'in_string'", "element 1 of 50 bytes runs past the end"]),
    "an input sent twice": ("iris", {"inputs": [*x_input()["inputs"], *x_input()["inputs"]]}, FOUR + FOUR, {},
                            ["'X'", "more than once"]),
    "a binary output flag that is not a boolean": (
        "iris", {**x_input(), "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}, FOUR, {},
        ["binary_data", "true or false"]),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_binary_bodies_are_json_400s_and_the_server_keeps_serving(server_url: str, case: str):
    model, header, tail, options, words = MALFORMED[case]
    response = post_binary(server_url, model, header, tail, **options)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    good = post_binary(server_url, "iris", x_input(), FOUR)
    assert good.status_code == 200 and len(good.json()["outputs"]) == 2


def test_binary_requests_go_through_the_same_limits_and_metrics(server_url: str):
    rows = MAX_BATCH_ROWS + 1
    too_many = post_binary(server_url, "iris", x_input(shape=(rows, 4), size=rows * 16), bytes(rows * 16))
    assert too_many.status_code == 413 and "rows" in too_many.json()["error"]
    too_big = post_binary(server_url, "iris", x_input(), bytes(MAX_BODY_BYTES))
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]

    labels = {"model": "iris", "version": "v1.0.0", "environment": "production"}
    before = httpx.get(f"{server_url}/metrics").text
    assert post_binary(server_url, "iris", x_input(), FOUR).status_code == 200
    assert post_binary(server_url, "iris", x_input(shape=(1, 3), size=12), FOUR[:12]).status_code == 400
    after = httpx.get(f"{server_url}/metrics").text
    for outcome in ("ok", "invalid_input"):
        assert sample(after, "requests_total", outcome=outcome, **labels) == sample(
            before, "requests_total", outcome=outcome, **labels) + 1


@pytest.mark.parametrize(("content_type", "status"), [(None, 200), ("application/octet-stream", 200),
                                                      ("application/json", 200), ("text/plain", 415)])
def test_content_types_an_infer_request_may_carry(server_url: str, content_type: str | None, status: int):
    response = post_binary(server_url, "iris", x_input(), FOUR, content_type=content_type)
    assert response.status_code == status, response.text
    if status != 200:
        assert "application/octet-stream" in response.json()["error"]
    as_json = httpx.post(f"{server_url}/v2/models/iris/infer", timeout=60, content=json.dumps(
        {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        headers={} if content_type is None else {"Content-Type": content_type})
    assert as_json.status_code == status, as_json.text
    predict = httpx.post(f"{server_url}/predict/iris", content=json.dumps({"inputs": [[1, 2, 3, 4]]}), timeout=60,
                         headers={} if content_type is None else {"Content-Type": content_type})
    assert predict.status_code == (415 if content_type in ("text/plain", "application/octet-stream") else 200)
