"""`make retrain-demo`: the retraining loop end to end on the breast cancer data, in a store of its own.

1. a first job trains last year's recipe (mean texture only) and deploys it to production (no champion yet);
2. the gateway serves it with every answer captured; drifted traffic arrives;
3. `onnxgate retrain check` sees the drift in what was captured;
4. `onnxgate retrain watch --once` trains on the data window with every feature, exports, challenges: it wins and
   starts a canary at 50%, with a step to 100% after each healthy 2 s;
5. traffic keeps coming and the gateway's own judge promotes the canary.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_breast_cancer

SCRIPT = Path(__file__).with_name("retrain_tabular.py")
NAMES = ["malignant", "benign"]
DEADLINE_S = 180.0


def write_window(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"f{index}" for index in range(x.shape[1])), "diagnosis"])
        writer.writerows([*(repr(float(v)) for v in row), NAMES[label]] for row, label in zip(x, y, strict=True))


def config(out: Path, recipe: str, triggers: str = "") -> str:
    return f"""[models.cancer]
command = "{{python}} {SCRIPT} --data {{data}} --label diagnosis --out {{output}} {recipe}"
artifact = "model.joblib"
workdir = "{out}"
data = "window.csv"
timeout = "10m"
cooldown = "1s"
holdout = {{ data = "holdout.csv", label = "diagnosis" }}

[models.cancer.export]
sample = "{{output}}/sample.npy"
reference_data = "{{output}}/reference.csv"
labels_file = "{{output}}/labels.txt"
metrics = "{{output}}/metrics.json"

[models.cancer.challenge]
environment = "production"
metric = "f1"
min_improvement = 0.05
weight = 50
steps = [50, 100]
interval = "2s"
{triggers}"""


def onnxgate(store: Path, *args: str, quiet: bool = False) -> subprocess.CompletedProcess:
    if not quiet:
        print(f"\n$ onnxgate {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "onnxgate", *args, "--store", str(store)], text=True,
                            capture_output=True)
    if not quiet:
        print(result.stdout + result.stderr, end="", flush=True)
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stable_version(store: Path) -> str:
    registry = json.loads((store / "registry.json").read_text())
    return registry["deployments"]["cancer"]["production"]["version"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the demo's directory (replaced)")
    out = parser.parse_args().out.absolute()
    shutil.rmtree(out, ignore_errors=True)
    store = out / "store"
    store.mkdir(parents=True)
    x, y = load_breast_cancer(return_X_y=True)
    write_window(out / "window.csv", x[::2], y[::2])
    write_window(out / "holdout.csv", x[1::2], y[1::2])

    (store / "retrain.toml").write_text(config(out, "--keep f1"))
    if onnxgate(store, "retrain", "run", "cancer").returncode != 0:
        raise SystemExit("the first job failed")
    (store / "retrain.toml").write_text(config(out, "", "\n[models.cancer.triggers]\n"
                                                         "drift = { share = 0.3, min_rows = 200, window = \"1h\" }\n"))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"\n$ onnxgate serve --env production --port {port}   (ONNXGATE_CAPTURE_RATE=1)", flush=True)
    server = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port),
                               "--store", str(store)], env={**os.environ, "ONNXGATE_CAPTURE_RATE": "1"})
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.2)
            rows = x[1::2]
            drifted = rows * 1.8 + rows.std(axis=0)
            for start in range(0, len(drifted), 10):
                client.post("/predict/cancer", json={"inputs": drifted[start:start + 10].tolist()}).raise_for_status()
            print(f"\nsent {len(drifted)} drifted rows to {url}/predict/cancer", flush=True)
            deadline = time.monotonic() + DEADLINE_S
            while '"fires": "drift"' not in onnxgate(store, "retrain", "check", "cancer", "--json", quiet=True).stdout:
                if time.monotonic() > deadline:
                    raise SystemExit("the drift trigger did not fire")
                time.sleep(1)
            onnxgate(store, "retrain", "check", "cancer")
            onnxgate(store, "retrain", "watch", "--once")
            onnxgate(store, "status")
            seen: dict[tuple[str, str], int] = {}
            deadline = time.monotonic() + DEADLINE_S
            while stable_version(store) == "v1.0.0":
                if time.monotonic() > deadline:
                    raise SystemExit("the canary was not promoted")
                answer = client.post("/predict/cancer", json={"inputs": rows[:5].tolist()}).json()
                seen[(answer["version"], answer["arm"])] = seen.get((answer["version"], answer["arm"]), 0) + 1
                time.sleep(0.02)
            print(f"\nanswers while the canary climbed: {seen}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    onnxgate(store, "status")
    onnxgate(store, "retrain", "jobs")


if __name__ == "__main__":
    main()
