"""The benchmark harness itself: models it builds, the floor it serves, how it reads wrk and sums up.

Run: .venv/bin/python -m pytest bench -q   (not under tests/: the suite does not need to build the bench models)
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from bench.answers import WrongAnswer, bench_row, check_answer, contains_run, expected_answer, lua_body
from bench.async_loadgen import load_grpc, load_http
from bench.floor_app import create_app, create_asgi_app
from bench.grpc_floor import running_floor
from bench.grpc_vs_http import check_grpc_answer, infer_request
from bench.grpc_vs_http import summarize as summarize_grpc
from bench.loadgen import LoadSpec, WrkResult, parse_wrk_output, run_wrk
from bench.make_models import CANARY_VERSION, ENVIRONMENT, VERSION, BenchModels, build, canary_of, watch_drift
from bench.report import Measurement, ratios, summarize
from bench.servers import PREDICT_LUA, V2_INFER_LUA, Endpoint, env_pairs, floor_target, free_port, running
from bench.train_sklearn import MODEL_KINDS, train
from modelstore.layout import Store
from monitoring.capture import read_captures

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1234/predict/lr
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  210.00us   7.10ms   80.00%
    Req/Sec    12.5k     1.00k   14.00k    70.00%
  Latency Distribution
     50%  990.00us
     75%    1.10ms
     90%    1.30ms
     99%    2.50s
  25000 requests in 2.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  12500.50
Transfer/sec:      2.00MB
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> BenchModels:
    return build(tmp_path_factory.mktemp("bench"), None)


def test_models_are_published_and_deployed_to_the_bench_environment(models: BenchModels) -> None:
    store = Store(models.store_root)
    data = store.registry.read().state
    for kind in MODEL_KINDS:
        assert data.deployment(kind, ENVIRONMENT).version == VERSION
        metadata = store.verify_version(kind, VERSION)
        assert metadata.parity.passed
        assert models.onnx_paths[kind].read_bytes() == store.model_path(kind, VERSION).read_bytes()


@pytest.mark.parametrize("create", [create_app, create_asgi_app], ids=["starlette", "asgi"])
def test_floor_answers_what_scikit_learn_predicts(models: BenchModels, create: Callable) -> None:
    rows = load_breast_cancer().data[:5]
    client = TestClient(create(models.onnx_paths))  # no lifespan: neither floor has start-up work
    for kind in MODEL_KINDS:
        response = client.post(f"/predict/{kind}", json={"inputs": rows.tolist()})
        assert response.status_code == 200
        outputs = response.json()["outputs"]
        estimator = train(kind)
        assert outputs["label"] == estimator.predict(rows).tolist()
        np.testing.assert_allclose(outputs["probabilities"], estimator.predict_proba(rows), atol=1e-4)
    assert client.post("/predict/nope", json={"inputs": rows.tolist()}).status_code == 404
    assert client.get("/v2/health/ready").status_code == 200


def test_wrk_bodies_carry_the_same_row() -> None:
    import json

    v2_body = json.loads(lua_body(V2_INFER_LUA))["inputs"][0]
    row = bench_row(PREDICT_LUA)
    assert row.shape == (1, 30)
    assert v2_body["shape"] == [1, 30] and v2_body["datatype"] == "FP32"
    np.testing.assert_array_equal(np.asarray(v2_body["data"], dtype=np.float32), row[0])


def test_parse_wrk_output_reads_rate_percentiles_in_any_unit_and_errors() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests_per_s == 12500.5
    assert result.p50_ms == pytest.approx(0.99)
    assert result.p99_ms == pytest.approx(2500.0)
    assert result.requests == 25000
    assert result.non_2xx == 7 and result.socket_errors == 3
    assert not result.clean


def test_contains_run_finds_probabilities_anywhere_in_the_answer() -> None:
    assert contains_run([0.0, 1.0, 0.25, 0.75], [0.25, 0.75])
    assert not contains_run([0.25, 0.0, 0.75], [0.25, 0.75])


def _measurement(endpoint: str, rate: float, cpu_s: float, repetition: int = 0) -> Measurement:
    result = WrkResult(requests_per_s=rate, p50_ms=1000 / rate, p99_ms=3000 / rate, requests=int(rate), non_2xx=0,
                       socket_errors=0)
    return Measurement(repetition, endpoint, "lr", result, cpu_s, 0.0)


def test_summary_takes_medians_and_ratios_compare_the_gateway() -> None:
    runs = [_measurement("floor /predict", rate, rate * 100e-6, i) for i, rate in enumerate([9000, 10000, 20000])]
    runs += [_measurement("gateway /predict", rate, rate * 125e-6, i) for i, rate in enumerate([8000, 8500, 1000])]
    runs += [_measurement("mlserver v2 infer", 1000, 1000 * 1e-3)]
    runs += [_measurement("floor-asgi /predict", 16000, 16000 * 60e-6)]
    summaries = {s.endpoint: s for s in summarize(runs)}
    assert summaries["floor /predict"].requests_per_s == 10000
    assert summaries["gateway /predict"].requests_per_s == 8000
    assert summaries["floor /predict"].cpu_us_per_request == pytest.approx(100)
    (ratio,) = ratios(list(summaries.values()))
    assert ratio.of_floor == pytest.approx(0.8)
    assert ratio.over_mlserver == pytest.approx(8.0)
    assert ratio.of_floor_cpu == pytest.approx(0.8)
    assert ratio.of_asgi_floor == pytest.approx(0.5)
    assert ratio.as_dict()["meets_floor_goal"] is False


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("taskset") is None, reason="needs wrk and taskset")
@pytest.mark.parametrize("asgi", [False, True], ids=["starlette", "asgi"])
def test_harness_starts_checks_and_loads_the_floor(models: BenchModels, tmp_path: Path, asgi: bool) -> None:
    port = free_port()
    target = floor_target(models, port, asgi=asgi)
    expected = expected_answer(models.onnx_paths["lr"], bench_row(PREDICT_LUA))
    with running(target, port, tmp_path / "floor.log") as server:
        (endpoint,) = target.endpoints
        url = server.base_url + endpoint.path("lr")
        check_answer(url, endpoint, expected)
        wrong = Endpoint(endpoint.label, endpoint.path_template, endpoint.lua_script, "label")
        with pytest.raises(WrongAnswer):
            check_answer(url, wrong, expected)
        cpu_before = server.cpu_seconds()
        result = run_wrk(url, PREDICT_LUA, LoadSpec(duration_s=1, connections=4))
        assert result.clean and result.requests > 0
        assert server.cpu_seconds() > cpu_before


def test_asgi_overhead_measures_both_apps_on_both_endpoints(capsys: pytest.CaptureFixture):
    from bench import asgi_overhead

    asgi_overhead.main(["--requests", "20", "--rounds", "1", "--models", "lr"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" median")[0].split(maxsplit=1)[1].strip() for line in lines] == [
        "floor /predict", "floor-asgi /predict", "gateway /predict", "gateway v2 infer"]
    assert all("µs/request" in line for line in lines) and "floor/gateway throughput" in lines[2]


@pytest.mark.e2e
def traced(opcodes_output: str, top: int) -> tuple[int, list[str], int, list[str]]:
    """bench.opcodes' report: the request's total and top lines, then the settle's opcodes per answer and top lines
    (at most `top` each)."""
    first, *rest = opcodes_output.splitlines()
    assert first.startswith("HTTP/1.1 200 OK: "), first
    at = next(index for index, line in enumerate(rest) if line.startswith("the answer ledger's settle: "))
    request, settle_line, settle = rest[:at], rest[at], rest[at + 1:]
    assert 0 < len(request) <= top and 0 < len(settle) <= top, opcodes_output
    return int(first.split(": ")[1].split()[0]), request, int(settle_line.split(", ")[1].split()[0]), settle


def test_opcodes_counts_one_answered_request_and_its_share_of_the_ledger_settle(capsys: pytest.CaptureFixture):
    """Per function: the request, then the settle that counts its metrics, live drift and rollout recording. Drift
    and a canary add to the settle; the request only writes the answer down."""
    from bench import opcodes

    settles = {}
    for drift in (False, True):
        opcodes.main(["--top", "40", *(["--drift"] if drift else [])])
        total, request, settles[drift], settle = traced(capsys.readouterr().out, 40)
        assert sum(int(line.split()[0]) for line in request) <= total and total > 500
        assert any("Service.answer" in line for line in request)
        assert not any("DriftWindow.add" in line or "record_answers" in line for line in request)
        assert any("ModelMetrics.record_answers" in line for line in settle)
        assert any("DriftWindow.add" in line for line in settle) == drift
    assert settles[True] > settles[False] > 0
    opcodes.main(["--top", "40", "--canary", "50"])  # a split route: every answer is recorded for the rollout judge
    _, request, _, settle = traced(capsys.readouterr().out, 40)
    # held per arm until 64, so the settle of 63 answers may or may not reach the windows themselves
    assert any("RolloutState.record_many" in line for line in settle), settle
    assert not any("RolloutState" in line or "SlidingWindow" in line for line in request), request


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("taskset") is None, reason="needs wrk and taskset")
def test_paired_runs_two_servers_at_once_and_prints_their_cpu_ratio(capsys: pytest.CaptureFixture):
    from bench import paired

    assert paired.main(["floor /predict", "floor-asgi /predict", "--repeats", "1", "--duration", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    figures = re.match(r"rep 1: floor /predict +([\d.]+) µs/req, floor-asgi /predict +([\d.]+) µs/req, ratio ([\d.]+)",
                       lines[0])
    assert figures and float(figures[1]) > 0 and float(figures[2]) > 0
    assert float(figures[3]) == pytest.approx(float(figures[2]) / float(figures[1]), abs=3e-3)
    assert "median of 1 paired runs" in lines[-1]


def test_paired_refuses_an_unknown_endpoint(models: BenchModels, tmp_path: Path):
    from bench import paired

    with pytest.raises(SystemExit, match="unknown endpoint 'gateway /nope'"):
        paired.side("gateway /nope", models, tmp_path)


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_a_paired_side_with_an_environment_runs_its_server_with_it(models: BenchModels, tmp_path: Path):
    """--env-b ONNXGATE_CAPTURE_RATE=1: that side's server has the variable, and captures what it answers."""
    from bench import paired

    plain = paired.side("gateway /predict", models, tmp_path)
    switched = paired.side("gateway /predict", models, tmp_path, {"ONNXGATE_CAPTURE_RATE": "1"})
    assert plain.label == "gateway /predict"
    assert switched.label == "gateway /predict [ONNXGATE_CAPTURE_RATE=1]"
    expected = expected_answer(models.onnx_paths["lr"], bench_row(PREDICT_LUA))
    with running(switched.target, switched.port, tmp_path / "switched.log") as server:
        environ = Path(f"/proc/{server.process_group}/environ").read_bytes().split(b"\0")
        assert b"ONNXGATE_CAPTURE_RATE=1" in environ
        answer = check_answer(server.base_url + switched.endpoint.path("lr"), switched.endpoint, expected)
        deadline = time.monotonic() + 60
        while not any(record["id"] == answer["id"] for record in read_captures(models.store_root, "lr", ENVIRONMENT)):
            assert time.monotonic() < deadline, "the answer was never captured"
            time.sleep(0.2)


def test_paired_refuses_one_endpoint_against_itself_unchanged_and_a_malformed_environment():
    from bench import paired

    with pytest.raises(SystemExit):
        paired.main(["gateway /predict", "gateway /predict", "--env-a", "X=1", "--env-b", "X=1"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        env_pairs(["ONNXGATE_CAPTURE_RATE"])
    assert env_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_a_canary_splits_the_gateways_requests_between_two_versions_with_the_same_answers(tmp_path: Path):
    """`paired.py --canary 50`: the bench's lr again as a canary, so the gateway splits requests (at random: no
    routing key) between two versions that answer alike, and the canary stays deployed under that traffic."""
    from bench import paired

    models = build(tmp_path, None)
    canary_of(models.store_root, "lr", 50)
    assert paired.canary_running(models, "lr")
    gateway = paired.side("gateway /predict", models, tmp_path)
    expected = expected_answer(models.onnx_paths["lr"], bench_row(PREDICT_LUA))
    with running(gateway.target, gateway.port, tmp_path / "gateway.log") as server:
        url = server.base_url + gateway.endpoint.path("lr")
        check_answer(url, gateway.endpoint, expected)
        versions = set()
        with httpx.Client(timeout=30) as client:
            for _ in range(60):
                answer = client.post(url, content=lua_body(PREDICT_LUA), headers={"content-type": "application/json"})
                assert answer.status_code == 200
                assert json.loads(answer.content)["outputs"]["probabilities"][0] == pytest.approx(
                    expected.probabilities, abs=1e-6)
                versions.add(answer.headers["x-model-version"])
    assert versions == {VERSION, CANARY_VERSION}  # 60 requests at 50%: both, but for a 2**-59 chance
    assert paired.canary_running(models, "lr")


def test_run_with_drift_and_a_gateway_environment_serves_a_watched_lr_with_that_environment(tmp_path: Path):
    """`run.py --drift --gateway-env ONNXGATE_CAPTURE_RATE=1`: lr carries reference statistics (so live drift counts
    its rows), and only the gateway's server gets the variable."""
    from bench.run import make_target, parse_args

    models = build(tmp_path, None)
    watch_drift(models.store_root, models.onnx_paths["lr"])
    assert Store(models.store_root).read_metadata("lr", VERSION).reference_stats.available
    args = parse_args(["--drift", "--gateway-env", "ONNXGATE_CAPTURE_RATE=1", "--targets", "gateway,floor-asgi"])
    assert args.drift and args.gateway_env == {"ONNXGATE_CAPTURE_RATE": "1"}
    gateway = make_target("gateway", models, free_port(), tmp_path, None, gateway_env=args.gateway_env)
    floor = make_target("floor-asgi", models, free_port(), tmp_path, None, gateway_env=args.gateway_env)
    assert gateway.env["ONNXGATE_CAPTURE_RATE"] == "1" and "ONNXGATE_CAPTURE_RATE" not in floor.env


def test_async_load_generators_count_answers_and_failures(models: BenchModels, tmp_path: Path) -> None:
    row = bench_row(PREDICT_LUA)
    expected = expected_answer(models.onnx_paths["lr"], row)
    port = free_port()
    with running_floor({"lr": models.onnx_paths["lr"]}, port, tmp_path / "floor.log"):
        check_grpc_answer(f"127.0.0.1:{port}", infer_request("lr", row), expected.probabilities)
        good = asyncio.run(load_grpc("127.0.0.1", port, infer_request("lr", row), 4, 1.0, rate=200))
        bad = asyncio.run(load_grpc("127.0.0.1", port, infer_request("nosuch", row), 2, 0.5))
    assert good.clean and 50 < good.requests <= 205 and good.p50_ms <= good.p99_ms  # paced at 200/s for 1 s
    assert bad.requests == 0 and bad.errors > 0 and "UNKNOWN" in bad.first_error
    port = free_port()
    with running(floor_target(models, port), port, tmp_path / "http.log"):
        answered = asyncio.run(load_http("127.0.0.1", port, "/predict/lr", lua_body(PREDICT_LUA), 2, 0.5))
        missing = asyncio.run(load_http("127.0.0.1", port, "/predict/nosuch", lua_body(PREDICT_LUA), 1, 0.3))
    assert answered.clean and answered.requests > 10
    assert missing.requests == 0 and missing.first_error == "HTTP/1.1 404 Not Found"


def test_grpc_summary_takes_ratios_within_each_repetition() -> None:
    def run(repetition: int, protocol: str, rate: float, cpu: float) -> dict:
        return {"repetition": repetition, "protocol": protocol, "requests_per_s": rate, "p50_ms": 1.0, "p99_ms": 2.0,
                "cpu_us_per_request": cpu}

    runs = [run(0, "http", 1000, 100), run(0, "grpc", 500, 300), run(0, "grpc-floor", 600, 200),
            run(1, "http", 2000, 100), run(1, "grpc", 1000, 200), run(1, "grpc-floor", 1000, 200)]
    summary = summarize_grpc(runs, 2)
    assert summary["grpc_over_http"] == {"requests_per_s": 0.5, "cpu_us_per_request": 2.5}
    assert summary["grpc_over_floor_cpu"] == 1.25 and summary["http"]["requests_per_s"] == 1500
