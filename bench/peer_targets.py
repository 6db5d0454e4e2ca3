"""The peers a Python team might pick instead of the gateway (LitServe, BentoML, Ray Serve), as harness targets.

Each runs its server file from bench/peers/ in its own virtualenv, bench/.<peer>-venv, installed from the exact pins
in bench/peers/<peer>.txt; a missing venv makes run.py skip the peer and print how to install it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.make_models import BenchModels
from bench.peers.onnx_model import MODELS_ENV, READY_PATH
from bench.servers import BENCH_DIR, HOST, PREDICT_LUA, REPO_ROOT, Endpoint, ServerError, Target

PEERS_DIR = BENCH_DIR / "peers"
NO_TELEMETRY = {"RAY_USAGE_STATS_ENABLED": "0", "BENTOML_DO_NOT_TRACK": "true"}  # loopback only, nothing sent out


@dataclass(frozen=True)
class Peer:
    name: str
    venv_name: str  # the venv and pins file are shared by the targets of one framework
    ready_path: str
    startup_timeout_s: float = 120.0

    @property
    def venv(self) -> Path:
        return BENCH_DIR / f".{self.venv_name}-venv"

    @property
    def requirements(self) -> Path:
        return PEERS_DIR / f"{self.venv_name}.txt"

    def available(self) -> bool:
        return (self.venv / "bin" / "python").exists()

    def install_hint(self) -> str:
        venv, requirements = self.venv.relative_to(REPO_ROOT), self.requirements.relative_to(REPO_ROOT)
        return f"{self.name} is not installed: python3 -m venv {venv} && {venv}/bin/pip install -r {requirements}"

    def pins(self) -> list[str]:
        """The exact `name==version` lines of the peer's requirements file."""
        return [line.strip() for line in self.requirements.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


PEERS = {
    "litserve": Peer("litserve", "litserve", READY_PATH),
    "litserve-fast": Peer("litserve-fast", "litserve", READY_PATH),  # fast_queue=True, as its docs advise >100 req/s
    "bentoml": Peer("bentoml", "bentoml", "/readyz"),
    # Ray's default max_ongoing_requests (5 in flight per replica), and raised to the run's connection count.
    "rayserve": Peer("rayserve", "rayserve", READY_PATH, startup_timeout_s=180.0),
    "rayserve-tuned": Peer("rayserve-tuned", "rayserve", READY_PATH, startup_timeout_s=180.0),
}


def peer_command(peer: Peer, port: int, connections: int) -> list[str]:
    python = str(peer.venv / "bin" / "python")
    if peer.venv_name == "bentoml":
        return [str(peer.venv / "bin" / "bentoml"), "serve", "bentoml_service:OnnxClassifier",
                "--working-dir", str(PEERS_DIR), "--host", HOST, "--port", str(port)]
    script = str(PEERS_DIR / f"{peer.venv_name}_app.py")
    command = [python, script, "--host", HOST, "--port", str(port)]
    if peer.name == "rayserve-tuned":
        command += ["--max-ongoing-requests", str(connections)]
    if peer.name == "litserve-fast":
        command += ["--fast-queue"]
    return command


def peer_target(name: str, models: BenchModels, port: int, connections: int) -> Target:
    peer = PEERS[name]
    if not peer.available():
        raise ServerError(peer.install_hint())
    env = {MODELS_ENV: json.dumps({kind: str(path) for kind, path in models.onnx_paths.items()}), **NO_TELEMETRY}
    endpoint = Endpoint(f"{name} /predict", "/predict/{model}", PREDICT_LUA, "probabilities")
    return Target(name, peer_command(peer, port, connections), [endpoint], env=env,
                  startup_timeout_s=peer.startup_timeout_s, ready_path=peer.ready_path)
