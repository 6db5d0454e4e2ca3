"""hypothesis-generated bodies for /predict and v2 infer, against a live gateway: JSON-ish values of every kind, raw
bytes, truncated JSON, wrong types, huge shapes and batches, valid bodies with one field mutated, and binary tensor
data bodies whose header, raw tensors and Inference-Header-Content-Length are mutated apart. Every answer is a 4xx
with a JSON {"error": str} body or a 200 of the right shape (each of the model's outputs, one row per input row; binary
outputs of the size their shape takes), never a 5xx; the server is alive afterwards."""
from __future__ import annotations

import json
import math
import struct

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.conftest import LiveGateway, count_answer, count_cases
from tests.factories import IDENTITY_DTYPES

pytestmark = pytest.mark.e2e

EXAMPLES = 100
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))

OUTPUTS = {"iris": {"label", "probabilities"}, "pair": {"sum"}, "sentiment": {"label", "probabilities"},
           "echo": {f"out_{dtype}" for dtype in IDENTITY_DTYPES}}
ECHO_VALUES = {"bool": [[True, False]], "string": [["a", "b"]], "float16": [[1.5, 2.5]], "float32": [[1.5, 2.5]],
               "float64": [[1.5, 2.5]]}
V2_TYPES = {"bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8",
            "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64", "float16": "FP16", "float32": "FP32",
            "float64": "FP64", "string": "BYTES"}


def echo_value(dtype: str) -> list:
    return ECHO_VALUES.get(dtype, [[1, 2]])


VALID_PREDICT = {
    "iris": {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.2, 4.0, 1.0]]},
    "pair": {"inputs": {"a": [[1.0, 2.0]], "b": [[3, 4]]}},
    "sentiment": {"text": ["the movie was good", "awful"]},
    "echo": {"inputs": {f"in_{dtype}": echo_value(dtype) for dtype in IDENTITY_DTYPES}},
}
VALID_V2 = {
    "iris": {"id": "r1", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
                                     "data": [5.1, 3.5, 1.4, 0.2, 6.0, 2.2, 4.0, 1.0]}],
             "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": False}}]},
    "echo": {"inputs": [{"name": f"in_{dtype}", "shape": [1, 2], "datatype": V2_TYPES[dtype],
                         "data": echo_value(dtype)[0]} for dtype in IDENTITY_DTYPES]},
}

# -- strategies -----------------------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=6)
                           | st.dictionaries(st.text(max_size=8), children, max_size=5), max_leaves=30)


def places(value: object, path: tuple = ()) -> list[tuple]:
    """Every position in a JSON value, as a path of keys and indices."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += places(item, (*path, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: dict) -> object:
    """`valid` with one position replaced by another JSON value, removed, or (in a list) doubled."""
    body = json.loads(json.dumps(valid))
    path = draw(st.sampled_from(places(body)))
    if not path:
        return draw(json_values)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "remove", "repeat"]))
    if action == "replace":
        parent[last] = draw(json_values | st.sampled_from([[], {}, "", 0, -1, 2**64, 1e308, True, None, [[]]]))
    elif action == "remove":
        del parent[last]
    elif isinstance(parent, list):
        parent.insert(last, parent[last])
    else:
        parent[last] = [parent[last], parent[last]]
    return body


def huge_v2(model: str) -> st.SearchStrategy[dict]:
    """Shapes with huge or many axes, and data that does or does not fill them."""
    def build(shape: list[int], data_size: int) -> dict:
        body = json.loads(json.dumps(VALID_V2[model]))
        body["inputs"][0]["shape"] = shape
        body["inputs"][0]["data"] = [1.0] * data_size
        return body
    return st.builds(build, st.lists(st.integers(0, 2**63) | st.sampled_from([0, 1, 4, 101, 2**31, 2**62]), max_size=8),
                     st.integers(0, 1000))


def many_rows() -> st.SearchStrategy[dict]:
    """Batches from empty to over the gateway's limit, with rows of wrong and right width."""
    return st.builds(lambda rows, width: {"inputs": [[1.0] * width] * rows}, st.integers(0, 130),
                     st.sampled_from([4, 4, 4, 3, 5, 0]))


def encoded(value: object) -> bytes:
    return json.dumps(value).encode()


def bodies(valid: dict, extra: st.SearchStrategy[dict] | None = None) -> st.SearchStrategy[bytes]:
    valid_bytes = encoded(valid)
    strategies = [
        json_values.map(encoded),
        mutated(valid).map(encoded),
        st.binary(max_size=200),
        st.integers(0, len(valid_bytes) - 1).map(lambda cut: valid_bytes[:cut]),
        st.sampled_from([b"NaN", b'{"inputs": [[NaN, 1, 2, 3]]}', b'{"inputs": [[Infinity, 1, 2, 3]]}',
                         b'{"inputs": [[1e400, 1, 2, 3]]}', b'{"inputs": [[' + b"9" * 400 + b', 1, 2, 3]]}',
                         b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"\xff\xfe{}", b'{"inputs": [[1, 2, 3, 4]]'])]
    if extra is not None:
        strategies.append(extra.map(encoded))
    return st.one_of(strategies)


# -- what an answer must be ----------------------------------------------------------------------------------------


def request_rows(body: object) -> set[int]:
    """The batch sizes a request carries (the first axis of each input), as far as it can be read."""
    if not isinstance(body, dict):
        return set()
    if isinstance(body.get("text"), list):
        return {len(body["text"])}
    inputs = body.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(i, dict) for i in inputs):  # v2
        return {i["shape"][0] for i in inputs if isinstance(i.get("shape"), list) and i["shape"]}
    if isinstance(inputs, dict):
        return {len(v) if isinstance(v, list) else 1 for v in inputs.values()}
    return {len(inputs) if isinstance(inputs, list) else 1}


def binary_answer(response: httpx.Response) -> dict:
    """A binary tensor data answer's JSON header, once its outputs' binary_data_size are checked to add up to the rest
    of the body, each the size its shape and datatype take."""
    assert response.status_code == 200, response.status_code
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    tail = response.content[length:]
    for output in answer["outputs"]:
        if "data" in output:
            continue
        size = output["parameters"]["binary_data_size"]
        raw, tail = tail[:size], tail[size:]
        assert len(raw) == size, output
        count = math.prod(output["shape"])
        if output["datatype"] == "BYTES":
            offset = 0
            for _ in range(count):
                offset += 4 + struct.unpack_from("<I", raw, offset)[0]
            assert offset == size, output
        else:
            itemsize = 1 if output["datatype"] == "BOOL" else int(output["datatype"].lstrip("FPUINT")) // 8
            assert size == count * itemsize, output
        output["data"] = [None] * count
    assert tail == b"", f"{len(tail)} bytes past the outputs"
    return answer


def check_answer(response: httpx.Response, sent: bytes, model: str, *, v2: bool) -> None:
    status = response.status_code
    assert status < 500, f"{status} for {sent[:300]!r}: {response.text[:300]}"
    if v2 and response.headers["content-type"] == "application/octet-stream":
        answer = binary_answer(response)
    else:
        assert response.headers["content-type"].startswith("application/json"), (status, sent[:300])
        answer = response.json()
    if status != 200:
        assert 400 <= status < 500, (status, sent[:300])
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"], answer
        return
    body = json.loads(sent)
    rows = request_rows(body)
    if v2:
        assert answer["model_name"] == model
        requested = {o["name"] for o in body.get("outputs") or []}
        assert {o["name"] for o in answer["outputs"]} == (requested or OUTPUTS[model])
        for output in answer["outputs"]:
            assert len(output["data"]) == math.prod(output["shape"]), output
            assert output["shape"][0] in rows, (output, rows)
    else:
        assert answer["model"] == model
        assert set(answer["outputs"]) == OUTPUTS[model]
        for name, values in answer["outputs"].items():
            assert len(values) in rows, (name, len(values), rows)


def post_and_check(client: httpx.Client, path: str, sent: bytes, model: str, *, v2: bool) -> None:
    count_cases(f"bodies POST {path}")
    response = client.post(path, content=sent, headers={"content-type": "application/json"})
    count_answer(f"{response.status_code} (bodies)")
    check_answer(response, sent, model, v2=v2)


@pytest.fixture(scope="module")
def client(live_gateway: LiveGateway):
    with live_gateway.client() as http:
        yield http
        assert http.get("/health").status_code == 200, "the gateway did not survive the generated bodies"


@pytest.mark.parametrize("model", sorted(VALID_PREDICT))
def test_predict_bodies(client: httpx.Client, model: str) -> None:
    extra = many_rows() if model == "iris" else None

    @SETTINGS
    @given(sent=bodies(VALID_PREDICT[model], extra))
    def run(sent: bytes) -> None:
        post_and_check(client, f"/predict/{model}", sent, model, v2=False)

    run()
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("model", sorted(VALID_V2))
def test_v2_infer_bodies(client: httpx.Client, model: str) -> None:
    @SETTINGS
    @given(sent=bodies(VALID_V2[model], huge_v2(model)))
    def run(sent: bytes) -> None:
        post_and_check(client, f"/v2/models/{model}/infer", sent, model, v2=True)

    run()
    assert client.get("/health").status_code == 200


def binary_form(body: dict) -> tuple[dict, bytes]:
    """A valid v2 body with every input's data as raw bytes (tritonclient's layout), and every output asked binary."""
    header = json.loads(json.dumps(body))
    tail = b""
    for item in header["inputs"]:
        data = item.pop("data")
        if item["datatype"] == "BYTES":
            raw = b"".join(struct.pack("<I", len(text.encode())) + text.encode() for text in data)
        else:
            dtype = {v2: dtype for dtype, v2 in V2_TYPES.items()}[item["datatype"]]
            raw = np.array(data, dtype=dtype).tobytes()
        item["parameters"] = {"binary_data_size": len(raw)}
        tail += raw
    header["parameters"] = {"binary_data_output": True}
    header.pop("outputs", None)
    return header, tail


@st.composite
def binary_bodies(draw: st.DrawFn, valid: dict) -> tuple[bytes, str]:
    """(body, Inference-Header-Content-Length): the valid binary form, or its header mutated, its raw tensors cut,
    extended or replaced, its header length off or not a number."""
    header, tail = binary_form(valid)
    head = draw(st.just(header) | mutated(header)) if draw(st.booleans()) else header
    head_bytes = encoded(head)
    tail = draw(st.sampled_from(["keep", "keep", "cut", "extend", "replace"]).flatmap(lambda how: {
        "keep": st.just(tail), "cut": st.integers(0, max(len(tail) - 1, 0)).map(lambda cut: tail[:cut]),
        "extend": st.binary(min_size=1, max_size=16).map(lambda extra: tail + extra),
        "replace": st.binary(max_size=len(tail) + 8)}[how]))
    length = draw(st.just(str(len(head_bytes)))
                  | st.integers(-3, len(head_bytes) + len(tail) + 3).map(str)
                  | st.text(alphabet="0123456789-+x.", max_size=6))
    return head_bytes + tail, length


@pytest.mark.parametrize("model", sorted(VALID_V2))
def test_v2_binary_bodies(client: httpx.Client, model: str) -> None:
    @SETTINGS
    @given(sent=binary_bodies(VALID_V2[model]))
    def run(sent: tuple[bytes, str]) -> None:
        body, length = sent
        count_cases(f"bodies POST /v2/models/{model}/infer (binary)")
        response = client.post(f"/v2/models/{model}/infer", content=body, headers={
            "content-type": "application/octet-stream", "inference-header-content-length": length})
        count_answer(f"{response.status_code} (bodies)")
        check_answer(response, body[:int(length)] if response.status_code == 200 else body, model, v2=True)

    run()
    assert client.get("/health").status_code == 200


def test_valid_bodies_answer_200(client: httpx.Client) -> None:
    """The bodies everything above mutates are valid: the generated runs start from real answers."""
    for model, body in VALID_PREDICT.items():
        sent = encoded(body)
        response = client.post(f"/predict/{model}", content=sent, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        check_answer(response, sent, model, v2=False)
    for model, body in VALID_V2.items():
        sent = encoded(body)
        response = client.post(f"/v2/models/{model}/infer", content=sent, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        check_answer(response, sent, model, v2=True)
        header, tail = binary_form(body)
        head = encoded(header)
        response = client.post(f"/v2/models/{model}/infer", content=head + tail, headers={
            "content-type": "application/octet-stream", "inference-header-content-length": str(len(head))})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        check_answer(response, head, model, v2=True)


@pytest.mark.parametrize("shape", [[0, 2**63], [0, 2**62, 2**62]], ids=str)
def test_v2_shape_past_numpys_limits_is_400(client: httpx.Client, shape: list[int]) -> None:
    """Found by this suite: an empty tensor whose shape numpy cannot make (ValueError in reshape) answered 500."""
    body = {"inputs": [{**VALID_V2["iris"]["inputs"][0], "shape": shape, "data": []}]}
    response = client.post("/v2/models/iris/infer", content=encoded(body), headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "shape" in response.json()["error"]


# -- found by this suite (and fixed): each stays a case of its own ----------------------------------------------

IRIS_V2_INPUT = {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}
FOUND_BY_THIS_SUITE = [
    pytest.param("POST", "/v2/models/iris/infer", {"inputs": [{**IRIS_V2_INPUT, "parameters": "x"}]}, None, 400,
                 id="v2-input-parameters-string"),
    pytest.param("POST", "/v2/models/iris/infer",
                 {"inputs": [IRIS_V2_INPUT], "outputs": [{"name": "label", "parameters": 1}]}, None, 400,
                 id="v2-output-parameters-int"),
    pytest.param("POST", "/predict/iris", {"inputs": [[True, 1.0, 2.0, 3.0]]}, None, 400,
                 id="predict-boolean-for-number"),
    pytest.param("POST", "/v2/models/iris/infer", {"inputs": [{**IRIS_V2_INPUT, "data": [True, 2.0, 3.0, 4.0]}]}, None,
                 400, id="v2-boolean-for-number"),
    pytest.param("POST", "/predict/iris", {"inputs": [[1.0, 2.0, 3.0, 4.0]]}, "text/plain", 415,
                 id="predict-text-plain"),
    pytest.param("GET", "/predict/iris", None, None, 405,
                 id="get-predict-405"),
    pytest.param("GET", "/no/such/path", None, None, 404,
                 id="unknown-path-404"),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status"), FOUND_BY_THIS_SUITE)
def test_found_by_this_suite(client: httpx.Client, method: str, path: str, body: object, content_type: str | None,
                         status: int) -> None:
    headers = {"content-type": content_type or "application/json"}
    response = client.request(method, path, content=None if body is None else encoded(body), headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)


def test_null_parameters_read_as_absent(client: httpx.Client) -> None:
    """Found by this suite: `"parameters": null` on a requested output answered 500; null now reads as no parameters."""
    body = {"inputs": [IRIS_V2_INPUT], "outputs": [{"name": "label", "parameters": None}]}
    response = client.post("/v2/models/iris/infer", content=encoded(body), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["label"]
