"""Measure session.run inline on the event loop against a hop to a worker thread, for a tiny and a larger model.

Not a test (pytest does not collect it). Run: `.venv/bin/python -m tests.gateway.measure_dispatch` (needs `wrk`).
Starts the real gateway under uvicorn in a subprocess per setting and drives it with wrk; prints requests/s and
latency per (model, dispatch, rows).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.factories import deploy_version, make_store, publish_classifier, publish_mlp

DURATION_S = 5
CONNECTIONS = 16
MODES = {"inline": "1000000", "thread": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store: Path, inline_max_ms: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ONNXGATE_STORE": str(store), "ONNXGATE_ENVIRONMENTS": '["production"]',
           "ONNXGATE_INLINE_RUN_MAX_MS": inline_max_ms}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:app_from_env", "--port", str(port),
         "--log-level", "warning", "--no-access-log"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/v2/health/ready", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def run_wrk(url: str, body: dict) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency", "-s", script.name, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+(\S+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses")
    return rate, p50


def main() -> None:
    root = Path(tempfile.mkdtemp()) / "models"
    store = make_store(root)
    publish_classifier(store, "iris")
    publish_mlp(store, "mlp", width=1024, layers=4, n_features=64)
    deploy_version(store, "iris", "v1.0.0")
    deploy_version(store, "mlp", "v1.0.0")
    cases = [("iris", 1, 4), ("iris", 64, 4), ("mlp", 1, 64), ("mlp", 16, 64)]
    print(f"wrk -t1 -c{CONNECTIONS} -d{DURATION_S}s, one uvicorn worker, 2 cores shared with wrk")
    for mode, threshold in MODES.items():
        process, url = start_server(root, threshold)
        try:
            for model, rows, features in cases:
                body = {"inputs": [[0.5] * features for _ in range(rows)]}
                rate, p50 = run_wrk(f"{url}/predict/{model}", body)
                print(f"{model:5} rows={rows:3} {mode:6} {rate:9.0f} req/s  p50 {p50}", flush=True)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
