"""The peers as harness targets: their shared model code, pins, commands, ratios, and the processes counted as theirs.

Run: .venv/bin/python -m pytest bench -q   (the e2e test of each peer runs only where its venv is installed)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.answers import bench_row, check_answer, expected_answer
from bench.loadgen import WrkResult
from bench.make_models import BenchModels, build
from bench.peer_targets import MODELS_ENV, PEERS, Peer, peer_command, peer_target
from bench.peers.onnx_model import OnnxModel, model_paths, session_options
from bench.report import Measurement, ratios, summarize
from bench.run import parse_args
from bench.servers import PREDICT_LUA, ServerError, free_port, running, server_processes, stop
from gateway.loader import session_options as gateway_session_options


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> BenchModels:
    return build(tmp_path_factory.mktemp("peers"), None)


def test_peers_use_the_gateways_session_options() -> None:
    ours, gateway = session_options(), gateway_session_options()
    for attribute in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level",
                      "log_severity_level"):
        assert getattr(ours, attribute) == getattr(gateway, attribute), attribute
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert ours.get_session_config_entry(key) == gateway.get_session_config_entry(key) == "0"


def test_peer_model_answers_what_the_harness_expects(models: BenchModels) -> None:
    environ = {MODELS_ENV: json.dumps({kind: str(path) for kind, path in models.onnx_paths.items()})}
    assert model_paths(environ) == models.onnx_paths
    row = bench_row(PREDICT_LUA)
    for kind, path in models.onnx_paths.items():
        answer = OnnxModel(path).predict(row.tolist())
        expected = expected_answer(path, row)
        assert answer["outputs"]["label"] == [expected.label]
        assert answer["outputs"]["probabilities"][0] == pytest.approx(expected.probabilities, abs=1e-6), kind


def test_model_paths_says_what_is_missing() -> None:
    with pytest.raises(SystemExit, match=MODELS_ENV):
        model_paths({})


@pytest.mark.parametrize("name", sorted(PEERS))
def test_each_peer_pins_exact_versions(name: str) -> None:
    pins = PEERS[name].pins()
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.+]*", pin) for pin in pins), pins
    assert any(pin.startswith("onnxruntime==") for pin in pins)


def test_a_missing_venv_is_skipped_with_how_to_install_it(models: BenchModels) -> None:
    peer = Peer("nowhere", "nowhere", "/ready")
    assert not peer.available()
    assert peer.install_hint() == ("nowhere is not installed: python3 -m venv bench/.nowhere-venv && "
                                   "bench/.nowhere-venv/bin/pip install -r bench/peers/nowhere.txt")
    missing = [name for name, peer in PEERS.items() if not peer.available()]
    for name in missing:
        with pytest.raises(ServerError, match="pip install -r bench/peers/"):
            peer_target(name, models, free_port(), 16)


def test_peers_keep_their_defaults_unless_tuned_as_their_docs_advise_for_throughput() -> None:
    assert "--max-ongoing-requests" not in peer_command(PEERS["rayserve"], 8000, 16)
    tuned = peer_command(PEERS["rayserve-tuned"], 8000, 64)
    assert tuned[tuned.index("--max-ongoing-requests") + 1] == "64"
    assert "--fast-queue" not in peer_command(PEERS["litserve"], 8000, 16)
    assert "--fast-queue" in peer_command(PEERS["litserve-fast"], 8000, 16)
    assert peer_command(PEERS["bentoml"], 8000, 16)[1:3] == ["serve", "bentoml_service:OnnxClassifier"]


def test_run_accepts_the_peers_as_targets() -> None:
    names = ["gateway", "litserve", "litserve-fast", "bentoml", "rayserve", "rayserve-tuned"]
    assert parse_args(["--targets", ",".join(names)]).targets == names


def _measurement(endpoint: str, rate: float, cpu_us: float) -> Measurement:
    result = WrkResult(requests_per_s=rate, p50_ms=1.0, p99_ms=2.0, requests=int(rate), non_2xx=0, socket_errors=0)
    return Measurement(0, endpoint, "lr", result, rate * cpu_us * 1e-6, 0.0)


def test_ratios_compare_the_gateway_with_each_peer_by_rate_and_by_cpu() -> None:
    summaries = summarize([_measurement("gateway /predict", 8000, 100), _measurement("litserve /predict", 1000, 1500),
                           _measurement("rayserve /predict", 80, 20000)])
    (ratio,) = ratios(summaries)
    assert ratio.over_peers["litserve"] == pytest.approx({"rate": 8.0, "cpu": 15.0})
    assert ratio.over_peers["rayserve"] == pytest.approx({"rate": 100.0, "cpu": 200.0})
    assert "bentoml" not in ratio.over_peers
    assert ratio.as_dict()["over_peers"]["litserve"]["rate"] == pytest.approx(8.0)


def test_server_processes_include_a_child_in_a_session_of_its_own(tmp_path: Path) -> None:
    """BentoML's arbiter starts its worker with setsid: its CPU time is the server's too, and stop() ends it."""
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "time.sleep(60)\n")
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started its own session"
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        assert {leader.pid, grandchild} <= {p.pid for p in server_processes(leader.pid)}
    finally:
        stop(leader)
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
@pytest.mark.parametrize("name", ["litserve", "bentoml", "rayserve"])
def test_peer_starts_and_answers_with_the_models_outputs(models: BenchModels, tmp_path: Path, name: str) -> None:
    if not PEERS[name].available():
        pytest.skip(PEERS[name].install_hint())
    port = free_port()
    target = peer_target(name, models, port, 16)
    with running(target, port, tmp_path / f"{name}.log") as server:
        (endpoint,) = target.endpoints
        for kind, path in models.onnx_paths.items():
            check_answer(server.base_url + endpoint.path(kind), endpoint, expected_answer(path, bench_row(PREDICT_LUA)))
        assert len(server_processes(server.process_group)) >= 1


def test_idle_cpu_share_is_cpu_seconds_over_wall_seconds() -> None:
    from bench.run import idle_cpu_share

    class Busy:
        """Half a core: every call to cpu_seconds reports 0.5 s of CPU per second of wall time since it was made."""

        def __init__(self) -> None:
            self.started = time.monotonic()

        def cpu_seconds(self) -> float:
            return 0.5 * (time.monotonic() - self.started)

    assert idle_cpu_share(Busy(), 0.2) == pytest.approx(0.5, abs=0.05)


def test_the_default_run_keeps_its_four_targets_and_paired_needs_no_peer_venv() -> None:
    from bench.paired import PAIRABLE

    assert parse_args([]).targets == ["floor", "floor-asgi", "gateway", "mlserver"]
    assert not set(PAIRABLE) & set(PEERS)


def test_paired_finds_an_installed_peers_endpoint(models: BenchModels, tmp_path: Path) -> None:
    from bench.paired import side

    if not PEERS["litserve"].available():
        pytest.skip(PEERS["litserve"].install_hint())
    found = side("litserve /predict", models, tmp_path)
    assert found.target.name == "litserve" and found.endpoint.path("lr") == "/predict/lr"
