"""`onnxgate deploy`, `onnxgate status` and `onnxgate serve` through the real CLI entry point, over the file store and
the shared backends (the registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelstore.layout import Store
from onnxgate.__main__ import main
from tests.factories import BACKENDS, backend_store, free_port, publish_classifier, stop_server, store_flags, wait_ready

ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture(params=BACKENDS)
def two_versions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with backend_store(request.param, tmp_path / "models", request) as store:
        publish_classifier(store, "iris", "v1.0.0", seed=1)
        publish_classifier(store, "iris", "v2.0.0", seed=2)
        yield store


def test_deploy_records_registry_and_audit(two_versions: Store, capsys: pytest.CaptureFixture):
    flags = store_flags(two_versions)
    assert main(["deploy", "iris", "v1.0.0", "--env", "staging", *flags, "--actor", "ana",
                 "--reason", "first"]) == 0
    assert main(["deploy", "iris", "v2.0.0", "--env", "staging", *flags]) == 0
    assert "deployed iris v2.0.0 to staging (was v1.0.0)" in capsys.readouterr().out
    assert two_versions.registry.read().state.deployments["iris"]["staging"].version == "v2.0.0"
    deploys = [e for e in two_versions.registry.audit.entries() if e["action"] == "deploy"]
    assert deploys[0]["actor"] == "ana" and deploys[0]["reason"] == "first" and deploys[1]["before"] == "v1.0.0"


def test_deploy_refuses_a_tampered_or_unknown_version(two_versions: Store, capsys: pytest.CaptureFixture):
    if two_versions.registry_backend is not None:
        pytest.skip("tampers the version's file by hand: the file store only")
    flags = store_flags(two_versions)
    path = two_versions.model_path("iris", "v2.0.0")
    path.write_bytes(path.read_bytes() + b"\0")
    assert main(["deploy", "iris", "v2.0.0", "--env", "production", *flags]) == 6
    assert main(["deploy", "iris", "v9.0.0", "--env", "production", *flags]) == 3
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "sha256 mismatch" in errors[0] and "Traceback" not in errors[0]
    assert "iris" not in two_versions.registry.read().state.deployments


def test_status_table_and_json(two_versions: Store, capsys: pytest.CaptureFixture):
    flags = store_flags(two_versions)
    assert main(["status", *flags]) == 0
    assert "nothing deployed" in capsys.readouterr().out
    main(["deploy", "iris", "v1.0.0", "--env", "production", *flags])
    main(["deploy", "iris", "v2.0.0", "--env", "staging", *flags])
    capsys.readouterr()
    assert main(["status", *flags]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "environment", "version", "deployed_at", "status"]
    assert table[2].split()[:3] == ["iris", "production", "v1.0.0"] and table[3].split()[:3] == ["iris", "staging",
                                                                                                  "v2.0.0"]
    assert main(["status", *flags, "--env", "staging", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["version"] == "v2.0.0" and row["environment"] == "staging" and row["status"] == "active"


@pytest.mark.e2e
def test_serve_with_two_workers_converges_on_a_redeploy(two_versions: Store, tmp_path: Path):
    flags = store_flags(two_versions)
    main(["deploy", "iris", "v1.0.0", "--env", "production", *flags])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--env", "staging", "--port", str(port),
         "--workers", "2", *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        with httpx.Client(base_url=url) as client:
            assert client.post("/predict/iris", json={"inputs": ROW}).json()["version"] == "v1.0.0"
            assert client.post("/predict/iris", json={"inputs": ROW},
                               headers={"X-Environment": "staging"}).status_code == 503
            main(["deploy", "iris", "v2.0.0", "--env", "production", *flags])
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
