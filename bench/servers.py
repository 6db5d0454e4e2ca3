"""The servers under test, and running one of them pinned to its own core on a free loopback port."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.make_models import BenchModels

SERVER_CPU = "0"
HOST = "127.0.0.1"
READY_PATH = "/v2/health/ready"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PREDICT_LUA = BENCH_DIR / "wrk" / "predict.lua"
V2_INFER_LUA = BENCH_DIR / "wrk" / "v2_infer.lua"
MLSERVER_VENV = BENCH_DIR / ".mlserver-venv"
MLSERVER_INSTALL_HINT = (
    f"MLServer is not installed: python3 -m venv {MLSERVER_VENV.relative_to(REPO_ROOT)} && "
    f"{MLSERVER_VENV.relative_to(REPO_ROOT)}/bin/pip install mlserver==1.7.1 mlserver-sklearn==1.7.1"
)


class ServerError(RuntimeError):
    """A server under test did not start, or died."""


@dataclass(frozen=True)
class Endpoint:
    """One way to ask a target for a prediction: a URL path per model and the wrk script that posts the body."""

    label: str
    path_template: str
    lua_script: Path
    answers: str  # "probabilities" (the ONNX outputs) or "label" (MLServer's sklearn runtime returns predict())

    def path(self, model: str) -> str:
        return self.path_template.format(model=model)


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]
    endpoints: list[Endpoint]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    startup_timeout_s: float = 60.0
    ready_path: str = READY_PATH  # answers 200 once the target can serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_env(extra_pythonpath: Path | None) -> dict[str, str]:
    """Our venv's servers get the same environment; `extra_pythonpath` lets a run try e.g. uvloop + httptools."""
    if extra_pythonpath is None:
        return {}
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{extra_pythonpath}{os.pathsep}{existing}" if existing else str(extra_pythonpath)}


def env_pairs(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict."""
    env = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not key or not equals:
            raise SystemExit(f"expected KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def floor_target(models: BenchModels, port: int, extra_pythonpath: Path | None = None, *, asgi: bool = False) -> Target:
    """The floor as a bare Starlette endpoint, or with `asgi` the same code as one plain ASGI callable."""
    name = "floor-asgi" if asgi else "floor"
    command = [sys.executable, "-m", "bench.floor_app", "--host", HOST, "--port", str(port), *(["--asgi"] if asgi else [])]
    for kind, path in models.onnx_paths.items():
        command += ["--model", f"{kind}={path}"]
    endpoint = Endpoint(f"{name} /predict", "/predict/{model}", PREDICT_LUA, "probabilities")
    return Target(name, command, [endpoint], env=server_env(extra_pythonpath))


def gateway_target(models: BenchModels, port: int, extra_pythonpath: Path | None = None) -> Target:
    """`onnxgate serve` with its defaults (metrics on), serving the bench environment of the bench store."""
    onnxgate = Path(sys.executable).with_name("onnxgate")
    command = [str(onnxgate), "serve", "--store", str(models.store_root), "--env", models.environment,
               "--host", HOST, "--port", str(port)]
    endpoints = [
        Endpoint("gateway /predict", "/predict/{model}", PREDICT_LUA, "probabilities"),
        Endpoint("gateway v2 infer", "/v2/models/{model}/infer", V2_INFER_LUA, "probabilities"),
    ]
    return Target("gateway", command, endpoints, env=server_env(extra_pythonpath))


def mlserver_available() -> bool:
    return (MLSERVER_VENV / "bin" / "mlserver").exists()


def mlserver_target(models: BenchModels, port: int, workdir: Path) -> Target:
    """MLServer 1.7.1, sklearn runtime, one process (parallel_workers 0), its other ports on free ports too."""
    if not mlserver_available():
        raise ServerError(MLSERVER_INSTALL_HINT)
    settings = {"debug": False, "parallel_workers": 0, "host": HOST, "http_port": port, "grpc_port": free_port(),
                "metrics_port": free_port()}
    (models.mlserver_repository / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    command = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(models.mlserver_repository)]
    endpoint = Endpoint("mlserver v2 infer", "/v2/models/{model}/infer", V2_INFER_LUA, "label")
    # Its working directory collects .metrics/.envs folders; keep them out of the repository.
    return Target("mlserver", command, [endpoint], cwd=workdir, startup_timeout_s=120.0)


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    process_group: int  # the leader's pid: servers start in a new session and process group of their own

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by every process of the server (threads included): see server_processes.

        Unlike requests/s, CPU time per request barely moves when something else shares the machine."""
        return sum(p.cpu_ticks for p in server_processes(self.process_group)) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    ppid: int
    session: int
    state: str
    start_time: int  # clock ticks after boot: tells a process from a later one that reuses its pid
    cpu_ticks: int  # utime + stime


def process_stats() -> list[ProcessStat]:
    found = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces; fields after its closing ')' are plain.
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found.append(ProcessStat(int(stat_path.parent.name), int(fields[1]), int(fields[3]), fields[0], int(fields[19]),
                                 int(fields[11]) + int(fields[12])))
    return found


def server_processes(leader: int) -> list[ProcessStat]:
    """The leader's session and every descendant of the leader: Ray starts its actors in process groups of their own
    (same session), BentoML its worker in a session of its own (a child of its arbiter)."""
    stats = process_stats()
    children: dict[int, list[ProcessStat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    found = {stat.pid: stat for stat in stats if stat.session == leader}
    stack, seen = [leader], {leader}
    while stack:
        for child in children.get(stack.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                found[child.pid] = child
                stack.append(child.pid)
    return list(found.values())


@contextlib.contextmanager
def running(target: Target, port: int, log_path: Path) -> Iterator[RunningServer]:
    """Start the target on core 0, wait until its ready path answers 200, yield it, stop it (and its children)."""
    base_url = f"http://{HOST}:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *target.command], cwd=target.cwd, env={**os.environ, **target.env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_ready(process, base_url + target.ready_path, target.startup_timeout_s, log_path)
            yield RunningServer(base_url, process.pid)
        finally:
            stop(process)


def wait_ready(process: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"server exited with {process.returncode} before it was ready; log:\n{tail(log_path)}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError), \
                urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise ServerError(f"server not ready at {url} after {timeout_s:.0f} s; log:\n{tail(log_path)}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL if it lingers; then, after
    up to 10 s for their own shutdown, SIGKILL to the server's other processes still there (see server_processes)."""
    others = [p for p in server_processes(process.pid) if p.pid != process.pid]
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    deadline = time.monotonic() + 10
    while (left := _still_running(others)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _still_running(processes: list[ProcessStat]) -> list[int]:
    now = {(p.pid, p.start_time) for p in process_stats() if p.state != "Z"}
    return [p.pid for p in processes if (p.pid, p.start_time) in now]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
