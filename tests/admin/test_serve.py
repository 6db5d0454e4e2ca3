"""`onnxgate serve --admin-tokens FILE --admin-port N` as a user runs it (real processes): tokens made by `onnxgate
token create`, two workers sharing the admin port (SO_REUSEPORT), the ops API on both ports, a deploy made over it
served by the data plane; and ONNXGATE_ADMIN_TOKENS instead of the flag."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import DEADLINE_S, build_ops_store
from tests.factories import free_port, stop_server, wait_ready

pytestmark = pytest.mark.e2e
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def token(tokens: Path, name: str, role: str) -> str:
    made = subprocess.run([sys.executable, "-m", "onnxgate", "token", "create", name, "--role", role, "--tokens",
                           str(tokens)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0]


def serve(store_root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port),
                                "--store", str(store_root), *args], env={**clean, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


def test_serve_with_an_admin_port_and_two_workers(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    tokens = tmp_path / "tokens.toml"
    deployer, reader = token(tokens, "ci", "deploy"), token(tokens, "dashboard", "read")
    admin_port = free_port()
    process, url = serve(store.root, "--workers", "2", "--admin-tokens", str(tokens), "--admin-port", str(admin_port))
    admin_url = f"http://127.0.0.1:{admin_port}"
    try:
        wait_ready(url, process, timeout_s=90)
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=admin_url, timeout=DEADLINE_S) as anonymous:
            while True:  # both workers' admin servers start with their lifespans: wait for them
                try:
                    if anonymous.get("/admin/v1/status").status_code == 401:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the admin port never answered"
                time.sleep(0.1)
            for _ in range(10):  # fresh connections spread over both workers: each refuses without a token
                with httpx.Client(base_url=admin_url, timeout=DEADLINE_S) as fresh:
                    assert fresh.get("/admin/v1/status").status_code == 401
        with httpx.Client(base_url=admin_url, timeout=DEADLINE_S,
                          headers={"Authorization": f"Bearer {deployer}"}) as client:
            done = client.post("/admin/v1/models/iris/environments/production/deploy",
                               json={"version": "v2.0.0", "reason": "from CI"})
            assert done.status_code == 200, done.text
        with httpx.Client(base_url=url, timeout=DEADLINE_S, headers={"Authorization": f"Bearer {reader}"}) as client:
            assert client.post("/admin/v1/models/iris/environments/production/rollback", json={}).status_code == 403
            [row] = [r for r in client.get("/admin/v1/status").json()["deployments"]
                     if r["environment"] == "production"]
            assert row["version"] == "v2.0.0"
            deadline = time.monotonic() + 60
            while client.post("/predict/iris", json=ROW).headers.get("x-model-version") != "v2.0.0":
                assert time.monotonic() < deadline, "the data plane did not serve the deploy"
                time.sleep(0.05)
    finally:
        stop_server(process)
    entry = store.registry.audit.entries()[-1]
    assert (entry["action"], entry["actor"], entry["reason"]) == ("deploy", "ci", "from CI")


def test_serve_takes_the_tokens_file_from_the_environment(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    tokens = tmp_path / "tokens.json"
    secret = token(tokens, "ops", "admin")
    process, url = serve(store.root, env={"ONNXGATE_ADMIN_TOKENS": str(tokens)})
    try:
        wait_ready(url, process, timeout_s=90)
        with httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
            assert client.get("/admin/v1/status").status_code == 401
            assert client.get("/admin/v1/status", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    finally:
        stop_server(process)
