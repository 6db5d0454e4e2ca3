"""The Open Inference Protocol over gRPC: a real uvicorn with its real gRPC server (same app, same event loop) on
loopback, driven by tritonclient.grpc unchanged and by hand-built messages on the protocol's own stub."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client import CollectorRegistry
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.codec import V2_BY_DTYPE_NAME
from gateway.settings import GatewaySettings
from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.rollout import start_shadow
from onnxgate.__main__ import main
from tests.factories import (
    IDENTITY_DTYPES,
    classifier_expected,
    deploy_version,
    free_port,
    publish_identity,
    running_server,
    stop_server,
    wait_ready,
)
from tests.gateway.conftest import MAX_BATCH_ROWS, MAX_BODY_BYTES, gateway_settings
from tests.gateway.test_health_metrics import sample
from tests.gateway.test_v2 import echo_values
from tests.rollout.gateway_fixtures import OTHER, STABLE, build_rollout_store, wait_until

pytestmark = pytest.mark.e2e

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@dataclass(frozen=True)
class Served:
    http: str  # base URL
    grpc: str  # host:port

    @contextlib.contextmanager
    def triton(self) -> Iterator[triton.InferenceServerClient]:
        client = triton.InferenceServerClient(url=self.grpc)
        try:
            yield client
        finally:
            client.close()

    @contextlib.contextmanager
    def stub(self) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
        with grpc.insecure_channel(self.grpc) as channel:
            yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@contextlib.contextmanager
def serving(settings: GatewaySettings) -> Iterator[Served]:
    """uvicorn on a free port with the app's gRPC server on another (grpc_port 0: the one grpc binds)."""
    app = create_app(settings, metrics_registry=CollectorRegistry())
    with running_server(app) as url:
        yield Served(url, f"127.0.0.1:{app.state.grpc_port}")


TYPED_DTYPES = [dtype for dtype in IDENTITY_DTYPES if dtype != "float16"]  # FP16 has no typed contents field


@pytest.fixture(scope="module")
def served(served_store: tuple[Store, dict]) -> Iterator[Served]:
    """The gateway fixtures' store (tests/gateway/conftest.py), plus an echo model without FP16 for typed contents."""
    store, _ = served_store
    publish_identity(store, "echo_typed", dtypes=TYPED_DTYPES)
    deploy_version(store, "echo_typed", "v1.0.0", "production")
    with serving(gateway_settings(store, "production", "staging", grpc_port=0)) as served:
        yield served


def infer_input(name: str, array: np.ndarray, datatype: str | None = None) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype or V2_BY_DTYPE_NAME[str(array.dtype)])
    tensor.set_data_from_numpy(array)  # raw_input_contents, tritonclient's default
    return tensor


def status_of(call: object) -> str:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status()


# -- health and metadata -------------------------------------------------------------------------------------------

def test_health_and_metadata_through_tritonclient(served: Served):
    with served.triton() as client:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata(as_json=True)["name"] == "onnxgate"
        assert client.is_model_ready("iris") and client.is_model_ready("iris", "v2.0.0")
        assert not client.is_model_ready("unused")
        assert status_of(lambda: client.is_model_ready("nosuch")) == "StatusCode.NOT_FOUND"
        assert status_of(lambda: client.is_model_ready("iris", "v9.0.0")) == "StatusCode.NOT_FOUND"

        metadata = client.get_model_metadata("iris", as_json=True)
        assert metadata["name"] == "iris" and metadata["versions"] == ["v1.0.0"]
        assert metadata["platform"] == "onnxruntime"
        assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "4"]}]  # int64 as JSON strings
        assert {"name": "label", "datatype": "INT64", "shape": ["-1"]} in metadata["outputs"]
        staging = client.get_model_metadata("iris", headers={"x-environment": "staging"}, as_json=True)
        assert staging["versions"] == ["v2.0.0"]
        assert client.get_model_metadata("iris", "v2.0.0", as_json=True)["versions"] == ["v2.0.0"]
        assert status_of(lambda: client.get_model_metadata("nosuch")) == "StatusCode.NOT_FOUND"
        assert status_of(lambda: client.get_model_config("iris")) == "StatusCode.UNIMPLEMENTED"


def test_metadata_agrees_with_http(served: Served):
    with served.triton() as client:
        over_grpc = client.get_model_metadata("echo", as_json=True)
    over_http = httpx.get(served.http + "/v2/models/echo").json()
    for key in ("inputs", "outputs"):
        assert [{**t, "shape": [int(s) for s in t["shape"]]} for t in over_grpc[key]] == over_http[key]


# -- infer ---------------------------------------------------------------------------------------------------------

def test_infer_with_raw_inputs_answers_as_http_does(served: Served, served_store: tuple[Store, dict]):
    _, weights = served_store
    with served.triton() as client:
        result = client.infer("iris", [infer_input("X", ROWS)], request_id="req-1")
    labels, probabilities = classifier_expected(weights["v1.0.0"], ROWS)
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-5)
    response = result.get_response(as_json=True)
    assert response["id"] == "req-1" and response["model_name"] == "iris" and response["model_version"] == "v1.0.0"
    assert response["parameters"]["environment"]["string_param"] == "production"

    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROWS.ravel().tolist()}]}
    over_http = {o["name"]: o for o in httpx.post(served.http + "/v2/models/iris/infer", json=body).json()["outputs"]}
    for name, output in over_http.items():
        np.testing.assert_array_equal(result.as_numpy(name).ravel(), np.array(output["data"], dtype=result.as_numpy(
            name).dtype))
        assert result.get_output(name).datatype == output["datatype"] and list(result.get_output(name).shape) == \
            output["shape"]


def test_infer_a_pinned_version_in_an_environment_and_a_subset_of_outputs(served: Served,
                                                                          served_store: tuple[Store, dict]):
    _, weights = served_store
    with served.triton() as client:
        result = client.infer("iris", [infer_input("X", ROWS)], model_version="v2.0.0",
                              outputs=[triton.InferRequestedOutput("label")])
        staging = client.infer("iris", [infer_input("X", ROWS)], headers={"x-environment": "staging"})
    assert [o.name for o in result.get_response().outputs] == ["label"]
    np.testing.assert_array_equal(result.as_numpy("label"), classifier_expected(weights["v2.0.0"], ROWS)[0])
    assert staging.get_response().model_version == "v2.0.0"
    assert staging.get_response().parameters["environment"].string_param == "staging"


def test_raw_contents_round_trip_every_datatype(served: Served):
    values = {dtype: echo_values(dtype) for dtype in IDENTITY_DTYPES}
    inputs = [infer_input(f"in_{dtype}", value, V2_BY_DTYPE_NAME[dtype]) for dtype, value in values.items()]
    with served.triton() as client:
        result = client.infer("echo", inputs)
    for dtype, value in values.items():
        out = result.as_numpy(f"out_{dtype}")
        assert result.get_output(f"out_{dtype}").datatype == V2_BY_DTYPE_NAME[dtype]
        if dtype == "string":
            assert [item.decode() for item in out.ravel()] == list(value.ravel())
        else:
            assert out.dtype == value.dtype
            np.testing.assert_array_equal(out, value)


FIELD_BY_DATATYPE = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                     "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                     "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                     "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def typed_request(model: str, values: dict[str, np.ndarray]) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest with each input in its typed contents field, as a hand-written client sends it."""
    request = service_pb2.ModelInferRequest(model_name=model, id="typed")
    for name, value in values.items():
        datatype = V2_BY_DTYPE_NAME["string" if value.dtype == object else str(value.dtype)]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=value.shape)
        flat = value.ravel().tolist()
        getattr(tensor.contents, FIELD_BY_DATATYPE[datatype]).extend(
            [item.encode() for item in flat] if datatype == "BYTES" else flat)
    return request


def raw_outputs(response: service_pb2.ModelInferResponse) -> dict[str, bytes]:
    return {output.name: raw for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)}


def test_typed_contents_answer_as_raw_contents_do(served: Served):
    values = {f"in_{dtype}": echo_values(dtype) for dtype in TYPED_DTYPES}
    with served.stub() as stub:
        typed = stub.ModelInfer(typed_request("echo_typed", values))
    with served.triton() as client:
        raw = client.infer("echo_typed", [infer_input(name, value, V2_BY_DTYPE_NAME[name.removeprefix("in_")])
                                          for name, value in values.items()])
    assert typed.id == "typed" and typed.model_name == "echo_typed" and typed.model_version == "v1.0.0"
    assert raw_outputs(typed) == raw_outputs(raw.get_response())
    np.testing.assert_array_equal(raw.as_numpy("out_int8"), values["in_int8"])  # extremes of the narrow types
    np.testing.assert_array_equal(raw.as_numpy("out_uint64"), values["in_uint64"])


def rpc_code(stub_call: object, request: service_pb2.ModelInferRequest, **kwargs: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        stub_call(request, **kwargs)
    assert "Traceback" not in refused.value.details()
    return refused.value.code()


def test_typed_contents_are_checked(served: Served):
    with served.stub() as stub:
        wrong_field = typed_request("iris", {"X": ROWS.astype(np.float64)})
        wrong_field.inputs[0].datatype = "FP32"  # FP32 declared, values in fp64_contents
        assert rpc_code(stub.ModelInfer, wrong_field) == grpc.StatusCode.INVALID_ARGUMENT
        short = typed_request("iris", {"X": ROWS})
        del short.inputs[0].contents.fp32_contents[-1]
        assert rpc_code(stub.ModelInfer, short) == grpc.StatusCode.INVALID_ARGUMENT
        nan = typed_request("iris", {"X": np.full((1, 4), np.nan, dtype=np.float32)})
        assert rpc_code(stub.ModelInfer, nan) == grpc.StatusCode.INVALID_ARGUMENT
        too_big = typed_request("echo_typed", {f"in_{d}": echo_values(d) for d in TYPED_DTYPES})
        too_big.inputs[TYPED_DTYPES.index("int8")].contents.int_contents[0] = 300  # past int8
        assert rpc_code(stub.ModelInfer, too_big) == grpc.StatusCode.INVALID_ARGUMENT
        mixed = typed_request("iris", {"X": ROWS})
        mixed.raw_input_contents.append(ROWS.tobytes())  # typed and raw at once
        assert rpc_code(stub.ModelInfer, mixed) == grpc.StatusCode.INVALID_ARGUMENT
        half = typed_request("echo", {f"in_{d}": echo_values(d) for d in TYPED_DTYPES})
        half.inputs.add(name="in_float16", datatype="FP16", shape=[2, 2]).contents.fp32_contents.extend([0, 1, 2, 3])
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(half)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "FP16 has no typed contents field" in refused.value.details()


# -- errors and limits ---------------------------------------------------------------------------------------------

def test_errors_map_to_grpc_status_codes_and_the_server_keeps_serving(served: Served):
    with served.triton() as client:
        def infer(model: str = "iris", rows: np.ndarray = ROWS, **kwargs: object) -> object:
            return lambda: client.infer(model, [infer_input("X", rows, kwargs.pop("datatype", None))], **kwargs)

        assert status_of(infer("nosuch")) == "StatusCode.NOT_FOUND"
        assert status_of(infer(headers={"x-environment": "nowhere"})) == "StatusCode.NOT_FOUND"
        assert status_of(infer(model_version="v9.0.0")) == "StatusCode.NOT_FOUND"
        assert status_of(infer(rows=ROWS[:, :3])) == "StatusCode.INVALID_ARGUMENT"  # 3 features, not 4
        assert status_of(infer(rows=ROWS.astype(np.float64))) == "StatusCode.INVALID_ARGUMENT"  # FP64, not FP32
        assert status_of(infer(rows=np.tile(ROWS, (MAX_BATCH_ROWS, 1)))) == "StatusCode.RESOURCE_EXHAUSTED"
        wrong_output = lambda: client.infer("iris", [infer_input("X", ROWS)],  # noqa: E731
                                            outputs=[triton.InferRequestedOutput("nope")])
        assert status_of(wrong_output) == "StatusCode.INVALID_ARGUMENT"
        with served.stub() as stub:  # FP32 declared, FP64's bytes sent: twice the bytes the shape takes
            request = service_pb2.ModelInferRequest(model_name="iris", raw_input_contents=[ROWS.astype(float).tobytes()])
            request.inputs.add(name="X", datatype="FP32", shape=[2, 4])
            assert rpc_code(stub.ModelInfer, request) == grpc.StatusCode.INVALID_ARGUMENT
        assert client.infer("iris", [infer_input("X", ROWS)]).as_numpy("label").shape == (2,)


def test_messages_over_max_body_bytes_are_refused(served: Served):
    # one row of MAX_BODY_BYTES / 4 + 1 features: refused for its size before anything could refuse its shape
    row = np.ones((1, MAX_BODY_BYTES // 4 + 1), dtype=np.float32)
    with served.triton() as client:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("iris", [infer_input("X", row)])
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", refused.value.message()
        assert str(MAX_BODY_BYTES) in refused.value.message()
        assert client.is_server_ready()


def test_a_grpc_request_counts_in_metrics_as_an_http_one_does(served: Served):
    labels = {"model": "iris", "version": "v1.0.0", "environment": "production"}
    before = httpx.get(served.http + "/metrics").text
    with served.triton() as client:
        client.infer("iris", [infer_input("X", ROWS)])
        status_of(lambda: client.infer("iris", [infer_input("X", ROWS[:, :3])]))
    httpx.post(served.http + "/v2/models/iris/infer", json={
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROWS.ravel().tolist()}]})
    after = httpx.get(served.http + "/metrics").text
    assert sample(after, "requests_total", outcome="ok", **labels) == sample(before, "requests_total", outcome="ok",
                                                                             **labels) + 2
    assert sample(after, "requests_total", outcome="invalid_input", **labels) == sample(
        before, "requests_total", outcome="invalid_input", **labels) + 1


# -- canary split --------------------------------------------------------------------------------------------------

def test_the_trusted_routing_key_in_metadata_keeps_a_key_on_one_version(tmp_path: Path):
    rollout = build_rollout_store(tmp_path / "models")
    rollout.canary(OTHER, 50)
    settings = gateway_settings(rollout.store, grpc_port=0, routing_header="X-User")
    rows = ROWS[:1]
    with serving(settings) as served, served.triton() as client:
        seen: dict[str, set[str]] = {}
        for attempt in range(3):
            for user in range(30):
                result = client.infer("iris", [infer_input("X", rows)], headers={"x-user": f"user-{user}"})
                response = result.get_response()
                seen.setdefault(f"user-{user}", set()).add(response.model_version)
                expected = rollout.expected_labels(response.model_version, rows)
                np.testing.assert_array_equal(result.as_numpy("label"), expected)
                arm = response.parameters["arm"].string_param
                assert arm == ("canary" if response.model_version == OTHER else "stable"), attempt
        too_long = status_of(lambda: client.infer("iris", [infer_input("X", rows)],
                                                   headers={"x-user": "x" * (settings.max_routing_key_bytes + 1)}))
        with served.stub() as stub:
            twice = rpc_code(stub.ModelInfer, typed_request("iris", {"X": rows}),
                             metadata=[("x-user", "user-1"), ("x-user", "user-2")])
    assert too_long == "StatusCode.INVALID_ARGUMENT" and twice == grpc.StatusCode.INVALID_ARGUMENT
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert set().union(*seen.values()) == {STABLE, OTHER}  # 30 keys at 50%: both arms, but each key on one


def test_a_shadow_mirrors_grpc_requests_after_answering_them(tmp_path: Path):
    rollout = build_rollout_store(tmp_path / "models")
    start_shadow(rollout.store, "iris", OTHER, "production", 100, Change(actor="tests", reason="shadow over gRPC"))
    labels = {"model": "iris", "environment": "production", "version": OTHER}
    with serving(gateway_settings(rollout.store, grpc_port=0)) as served, served.triton() as client:
        for _ in range(5):
            result = client.infer("iris", [infer_input("X", ROWS)])
            assert result.get_response().model_version == STABLE  # the shadow never answers
        wait_until(lambda: sample(httpx.get(served.http + "/metrics").text, "shadow_requests_total", **labels,
                                  outcome="ok") == 5, 30, "five mirrored requests")


# -- onnxgate serve --grpc-port ------------------------------------------------------------------------------------

def test_serve_with_two_workers_shares_the_grpc_port(served_store: tuple[Store, dict]):
    store, _ = served_store
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port), "--grpc-port",
         str(grpc_port), "--workers", "2", "--store", str(store.root)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, timeout_s=90)
        for _ in range(6):  # fresh connections, spread by the kernel over both workers' listeners
            with Served("", f"127.0.0.1:{grpc_port}").triton() as client:
                assert client.is_server_ready()
                assert client.infer("iris", [infer_input("X", ROWS)]).get_response().model_version == "v1.0.0"
    finally:
        stop_server(process)


def test_serve_grpc_port_without_the_extra_is_a_usage_error(served_store: tuple[Store, dict],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture):
    store, _ = served_store
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    monkeypatch.delitem(sys.modules, "gateway.grpc_service", raising=False)
    for name in [k for k in os.environ if k.startswith("ONNXGATE_")]:
        monkeypatch.delenv(name)
    # refused before anything starts or changes (port -1: a server that started anyway would fail, not block)
    assert main(["serve", "--env", "production", "--port", "-1", "--grpc-port", "1", "--store", str(store.root)]) == 2
    assert not [name for name in os.environ if name.startswith("ONNXGATE_")]
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "pip install 'onnxgate[grpc]'" in error, error
