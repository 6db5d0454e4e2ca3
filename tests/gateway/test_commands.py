"""`onnxgate deploy`, `onnxgate status` and `onnxgate serve` through the real CLI entry point."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelstore.audit import AuditLog
from modelstore.layout import Store
from onnxgate.__main__ import main
from tests.factories import free_port, publish_classifier, stop_server, wait_ready

ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture
def two_versions(fresh_store: Store) -> Store:
    publish_classifier(fresh_store, "iris", "v1.0.0", seed=1)
    publish_classifier(fresh_store, "iris", "v2.0.0", seed=2)
    return fresh_store


def test_deploy_records_registry_and_audit(two_versions: Store, capsys: pytest.CaptureFixture):
    root = str(two_versions.root)
    assert main(["deploy", "iris", "v1.0.0", "--env", "staging", "--store", root, "--actor", "ana",
                 "--reason", "first"]) == 0
    assert main(["deploy", "iris", "v2.0.0", "--env", "staging", "--store", root]) == 0
    assert "deployed iris v2.0.0 to staging (was v1.0.0)" in capsys.readouterr().out
    assert two_versions.registry.read().state.deployments["iris"]["staging"].version == "v2.0.0"
    deploys = [e for e in AuditLog(two_versions.audit_path).entries() if e["action"] == "deploy"]
    assert deploys[0]["actor"] == "ana" and deploys[0]["reason"] == "first" and deploys[1]["before"] == "v1.0.0"


def test_deploy_refuses_a_tampered_or_unknown_version(two_versions: Store, capsys: pytest.CaptureFixture):
    root = str(two_versions.root)
    path = two_versions.model_path("iris", "v2.0.0")
    path.write_bytes(path.read_bytes() + b"\0")
    assert main(["deploy", "iris", "v2.0.0", "--env", "production", "--store", root]) == 6
    assert main(["deploy", "iris", "v9.0.0", "--env", "production", "--store", root]) == 3
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "sha256 mismatch" in errors[0] and "Traceback" not in errors[0]
    assert "iris" not in two_versions.registry.read().state.deployments


def test_status_table_and_json(two_versions: Store, capsys: pytest.CaptureFixture):
    root = str(two_versions.root)
    assert main(["status", "--store", root]) == 0
    assert "nothing deployed" in capsys.readouterr().out
    main(["deploy", "iris", "v1.0.0", "--env", "production", "--store", root])
    main(["deploy", "iris", "v2.0.0", "--env", "staging", "--store", root])
    capsys.readouterr()
    assert main(["status", "--store", root]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "environment", "version", "deployed_at", "status"]
    assert table[2].split()[:3] == ["iris", "production", "v1.0.0"] and table[3].split()[:3] == ["iris", "staging",
                                                                                                  "v2.0.0"]
    assert main(["status", "--store", root, "--env", "staging", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["version"] == "v2.0.0" and row["environment"] == "staging" and row["status"] == "active"


@pytest.mark.e2e
def test_serve_with_two_workers_converges_on_a_redeploy(two_versions: Store, tmp_path: Path):
    root = str(two_versions.root)
    main(["deploy", "iris", "v1.0.0", "--env", "production", "--store", root])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--env", "staging", "--port", str(port),
         "--workers", "2", "--store", root], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        with httpx.Client(base_url=url) as client:
            assert client.post("/predict/iris", json={"inputs": ROW}).json()["version"] == "v1.0.0"
            assert client.post("/predict/iris", json={"inputs": ROW},
                               headers={"X-Environment": "staging"}).status_code == 503
            main(["deploy", "iris", "v2.0.0", "--env", "production", "--store", root])
            # New connections spread over both workers. Converged = 20 fresh connections in a row answer v2; the
            # deadline is generous because CI shares two cores between the test, both workers and the reloads.
            deadline = time.monotonic() + 10.0
            in_a_row = 0
            while in_a_row < 20:
                assert time.monotonic() < deadline, "the two workers did not converge on v2.0.0 within 10 s"
                with httpx.Client(base_url=url) as fresh:
                    answer = fresh.post("/predict/iris", json={"inputs": ROW})
                assert answer.status_code == 200, answer.text
                in_a_row = in_a_row + 1 if answer.json()["version"] == "v2.0.0" else 0
                if in_a_row == 0:
                    time.sleep(0.05)
    finally:
        stop_server(process)
