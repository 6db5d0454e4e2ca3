"""Run the comparison: floor vs gateway vs MLServer and the peers, each server alone on core 0, wrk on core 1, repetitions
interleaved, medians printed and the raw runs written to bench/results/<time>.json.

Run (repo root): .venv/bin/python -m bench.run [--duration 10] [--warmup 3] [--repeats 3] [--connections 16]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from bench.answers import Expected, WrongAnswer, bench_row, check_answer, expected_answer
from bench.loadgen import LoadgenError, LoadSpec, require_wrk, run_wrk
from bench.make_models import BenchModels, build, watch_drift
from bench.peer_targets import PEERS, peer_target
from bench.report import Measurement, print_report, ratios, summarize
from bench.servers import (
    MLSERVER_INSTALL_HINT,
    MLSERVER_VENV,
    PREDICT_LUA,
    RunningServer,
    ServerError,
    Target,
    env_pairs,
    floor_target,
    free_port,
    gateway_target,
    mlserver_available,
    mlserver_target,
    running,
)
from bench.train_sklearn import MODEL_KINDS

CORE_TARGETS = ("floor", "floor-asgi", "gateway", "mlserver")  # the default run; the peers are asked for by name
TARGETS = (*CORE_TARGETS, *PEERS)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IDLE_WINDOW_S = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against a bare onnxruntime floor, MLServer and "
                                                 "the peers (LitServe, BentoML, Ray Serve).")
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load before each run")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, interleaved across targets")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (all on core 1)")
    parser.add_argument("--targets", default=",".join(CORE_TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)} (default: {','.join(CORE_TARGETS)})")
    parser.add_argument("--models", default=",".join(MODEL_KINDS), help=f"comma-separated subset of {','.join(MODEL_KINDS)}")
    parser.add_argument("--extra-pythonpath", type=Path, default=None,
                        help="prepended to PYTHONPATH of the floor and the gateway, e.g. a `pip install --target DIR "
                             "uvloop httptools` to see what uvicorn[standard] would change")
    parser.add_argument("--drift", action="store_true", help="publish lr with reference statistics, so that the "
                        "gateway's live drift (on by default) counts every row it serves")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                        help="added to the gateway's environment (repeatable), e.g. ONNXGATE_CAPTURE_RATE=1")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.gateway_env = env_pairs(args.gateway_env)
    args.targets = _subset(parser, args.targets, TARGETS)
    args.models = _subset(parser, args.models, MODEL_KINDS)
    return args


def _subset(parser: argparse.ArgumentParser, text: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown or not chosen:
        parser.error(f"choose from {', '.join(allowed)} (got {text!r})")
    return chosen


def make_target(name: str, models: BenchModels, port: int, workdir: Path, extra_pythonpath: Path | None,
                connections: int = 16, gateway_env: dict[str, str] | None = None) -> Target:
    if name in ("floor", "floor-asgi"):
        return floor_target(models, port, extra_pythonpath, asgi=name == "floor-asgi")
    if name == "gateway":
        target = gateway_target(models, port, extra_pythonpath)
        return replace(target, env={**target.env, **gateway_env}) if gateway_env else target
    if name in PEERS:
        return peer_target(name, models, port, connections)
    return mlserver_target(models, port, workdir)


def measure_target(name: str, repetition: int, models: BenchModels, expected: dict[str, Expected], args: argparse.Namespace,
                   workdir: Path, log: Callable[[str], None]) -> tuple[list[Measurement], dict]:
    """Start one server, check then load each of its endpoints for each model, stop it."""
    port = free_port()
    target = make_target(name, models, port, workdir, args.extra_pythonpath, args.connections, args.gateway_env)
    spec = LoadSpec(args.duration, args.connections, args.threads)
    warmup = LoadSpec(args.warmup, args.connections, args.threads)
    measurements: list[Measurement] = []
    extras: dict = {}
    log_path = args.results_dir / "logs" / f"{name}-{repetition}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with running(target, port, log_path) as server:
        base_url = server.base_url
        extras["startup_s"] = round(time.monotonic() - started, 2)
        extras["idle_cpu_share"] = idle_cpu_share(server, IDLE_WINDOW_S)
        log(f"  rep {repetition + 1} {name}: ready in {extras['startup_s']:.1f} s, then {extras['idle_cpu_share']:.1%} "
            f"of a core busy with no load")
        for model in args.models:
            for endpoint in target.endpoints:
                url = base_url + endpoint.path(model)
                check_answer(url, endpoint, expected[model])
                if args.warmup > 0:
                    run_wrk(url, endpoint.lua_script, warmup)
                cpu_before = server.cpu_seconds()
                result = run_wrk(url, endpoint.lua_script, spec)
                measurement = Measurement(repetition, endpoint.label, model, result, server.cpu_seconds() - cpu_before,
                                          round(os.getloadavg()[0], 2))
                measurements.append(measurement)
                log(f"  rep {repetition + 1} {endpoint.label:<18} {model}: {result.requests_per_s:>9,.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"CPU {measurement.cpu_us_per_request:5.0f} us/req  load {measurement.load_average:.1f}"
                    + ("" if result.clean else f"  ({result.non_2xx} non-2xx, {result.socket_errors} socket errors)"))
        if name == "gateway":
            extras["metrics"] = scrape_metrics(base_url)
    return measurements, extras


def idle_cpu_share(server: RunningServer, seconds: float) -> float:
    """Cores the server keeps busy with no request at all (Ray's daemons do): part of every CPU/req figure, and the
    larger part the fewer requests a second it serves."""
    before, started = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return round((server.cpu_seconds() - before) / (time.monotonic() - started), 4)


def scrape_metrics(base_url: str) -> dict:
    """Proof that the gateway ran with metrics on: the /metrics page after the load, and how many series it has."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {"status": response.status, "samples": len(samples), "bytes": len(text)}


def environment_info(args: argparse.Namespace) -> dict:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "packages": {p: version(p) for p in ("onnxruntime", "numpy", "starlette", "uvicorn", "orjson", "onnxgate")},
        "server_http_stack": http_stack(args.extra_pythonpath),
        "mlserver": _mlserver_versions() if mlserver_available() else None,
        "peers": {name: _peer_versions(name) for name in args.targets if name in PEERS},
        "wrk": shutil.which("wrk"),
    }


def http_stack(extra_pythonpath: Path | None) -> dict[str, bool]:
    """What uvicorn's 'auto' loop and http will pick in the floor's and the gateway's environment."""
    probe = ("import importlib.util as u, json; "
             "print(json.dumps({m: u.find_spec(m) is not None for m in ('uvloop', 'httptools')}))")
    env = dict(os.environ)
    if extra_pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_pythonpath), env.get("PYTHONPATH")]))
    return json.loads(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout)


def _mlserver_versions() -> dict:
    packages = ("mlserver", "mlserver-sklearn", "scikit-learn", "uvicorn", "uvloop")
    probe = f"import importlib.metadata as m, json; print(json.dumps({{p: m.version(p) for p in {packages!r}}}))"
    completed = subprocess.run([str(MLSERVER_VENV / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False)
    return json.loads(completed.stdout) if completed.returncode == 0 else {"error": completed.stderr.strip()[-300:]}


def _peer_versions(name: str) -> dict:
    """What the peer's venv holds of its pins and of the HTTP stack under it."""
    peer = PEERS[name]
    packages = tuple(dict.fromkeys([pin.split("==")[0].split("[")[0] for pin in peer.pins()]
                                   + ["numpy", "uvicorn", "uvloop", "httptools", "starlette", "fastapi"]))
    probe = ("import importlib.metadata as m, json\n"
             "def v(p):\n    try:\n        return m.version(p)\n    except m.PackageNotFoundError:\n        return None\n"
             f"print(json.dumps({{p: v(p) for p in {packages!r}}}))")
    completed = subprocess.run([str(peer.venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False)
    return json.loads(completed.stdout) if completed.returncode == 0 else {"error": completed.stderr.strip()[-300:]}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_wrk()
    except LoadgenError as exc:
        print(exc, file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs: the server runs on core 0 and wrk on core 1", file=sys.stderr)
        return 2
    if "mlserver" in args.targets and not mlserver_available():
        print(f"skipping MLServer. {MLSERVER_INSTALL_HINT}", file=sys.stderr)
        args.targets = [t for t in args.targets if t != "mlserver"]
    for name in [t for t in args.targets if t in PEERS and not PEERS[t].available()]:
        print(f"skipping {name}. {PEERS[name].install_hint()}", file=sys.stderr)
        args.targets.remove(name)
    if not args.targets:
        print("no target left to run", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, flush=True)

    runs_per_rep = sum(2 if t == "gateway" else 1 for t in args.targets) * len(args.models)
    log(f"{args.repeats} x {runs_per_rep} runs of {args.warmup}+{args.duration} s, {args.connections} connections: "
        f"about {args.repeats * runs_per_rep * (args.warmup + args.duration) / 60:.1f} min of load plus server start-ups")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    measurements: list[Measurement] = []
    failures: list[dict] = []
    extras: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="onnxgate-bench-") as tmp:
        workdir = Path(tmp)
        models = build(workdir, MLSERVER_VENV / "bin" / "python" if "mlserver" in args.targets else None)
        if args.drift:
            watch_drift(models.store_root, models.onnx_paths["lr"])
        row = bench_row(PREDICT_LUA)
        expected = {model: expected_answer(models.onnx_paths[model], row) for model in args.models}
        for repetition in range(args.repeats):
            # Rotate the order each repetition so no target always runs first (or last) on a warming machine.
            order = args.targets[repetition % len(args.targets):] + args.targets[:repetition % len(args.targets)]
            for name in order:
                try:
                    found, extra = measure_target(name, repetition, models, expected, args, workdir, log)
                except (ServerError, WrongAnswer, LoadgenError, OSError) as exc:
                    log(f"  rep {repetition + 1} {name}: FAILED: {str(exc).splitlines()[0]}")
                    failures.append({"repetition": repetition, "target": name, "error": str(exc)})
                    continue
                measurements.extend(found)
                extras.setdefault(name, []).append(extra)
    summaries = summarize(measurements)
    found_ratios = ratios(summaries)
    print()
    print_report(summaries, found_ratios)
    print("\nidle CPU (share of a core, median over repetitions): " + ", ".join(
        f"{name} {statistics.median(e['idle_cpu_share'] for e in runs):.1%}" for name, runs in extras.items()))
    results_path = args.results_dir / f"{stamp}.json"
    results_path.write_text(json.dumps({
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment_info(args),
        "expected": {model: asdict(value) for model, value in expected.items()},
        "summary": [s.as_dict() for s in summaries],
        "ratios": [r.as_dict() for r in found_ratios],
        "runs": [m.as_dict() for m in measurements],
        "servers": extras,
        "failures": failures,
    }, indent=2) + "\n")
    print(f"\nresults: {results_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
