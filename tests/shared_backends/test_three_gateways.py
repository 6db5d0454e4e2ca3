"""Three `onnxgate serve` processes on different ports, one registry (a real PostgreSQL) and one bucket (a real
S3-compatible server), each with its own store directory as a local cache: every deploy made by the CLI reaches all
three. The time from the CLI's commit to the last gateway serving the new version is measured and printed (median of
DEPLOYS); the test asserts only that all converge, within generous deadlines."""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelstore.layout import Store
from tests.factories import deploy_version, publish_classifier
from tests.shared_backends.gateways import serving

pytestmark = pytest.mark.e2e
GATEWAYS = 3
DEPLOYS = 10
DEADLINE_S = 60.0
ROW = [[5.1, 3.5, 1.4, 0.2]]
SLOW_FALLBACK_POLL = {"ONNXGATE_REGISTRY_POLL_S": "30"}  # a change seen sooner came by LISTEN/NOTIFY


def cli_deploy(version: str, store: Store, registry_url: str, bucket_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    return subprocess.Popen([sys.executable, "-m", "onnxgate", "deploy", "iris", version, "--env", "production",
                             "--store", str(store.root), "--registry", registry_url, "--artifacts", bucket_url,
                             "--actor", "tests", "--reason", f"to {version}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def served_version(client: httpx.Client) -> str | None:
    try:
        [model] = client.get("/health").json()["models"]
    except (httpx.HTTPError, ValueError):
        return None
    return model["version"] if model["loaded"] else None


def follow_deploy(deployer: subprocess.Popen, store: Store, before: str, version: str,
                  clients: list[httpx.Client]) -> tuple[float, list[float]]:
    """Poll the registry's revision and every gateway until each serves `version`: (seconds from the commit, as this
    process sees the revision change, to the last gateway serving it; each gateway's delay)."""
    committed_at: float | None = None
    seen: dict[int, float] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(seen) < len(clients):
        if time.monotonic() > deadline:
            out, err = deployer.communicate(timeout=30) if deployer.poll() is not None else ("", "still running")
            raise AssertionError(f"deploy of {version}: gateways {sorted(set(range(len(clients))) - set(seen))} "
                                 f"did not serve it within {DEADLINE_S:g} s (deployer: {deployer.returncode} {err})")
        if committed_at is None and store.registry.revision() != before:
            committed_at = time.monotonic()
        for index, client in enumerate(clients):
            if index not in seen and served_version(client) == version:
                seen[index] = time.monotonic()
        time.sleep(0.002)
    _, err = deployer.communicate(timeout=DEADLINE_S)
    assert deployer.returncode == 0, err
    assert committed_at is not None  # every gateway serves it: the commit came first
    delays = [max(0.0, at - committed_at) for at in seen.values()]
    return max(delays), delays


def test_a_deploy_by_the_cli_reaches_three_gateways(shared_store: Store, registry_url: str, bucket_url: str,
                                                    s3_env: dict[str, str], tmp_path: Path,
                                                    record_property: pytest.RecordProperty):
    publish_classifier(shared_store, "iris", "v1.0.0", seed=1)
    publish_classifier(shared_store, "iris", "v2.0.0", seed=2)
    deploy_version(shared_store, "iris", "v1.0.0")
    convergence: list[float] = []
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serving(tmp_path / f"gateway{n}", tmp_path / f"gateway{n}.log",
                                            registry_url=registry_url, artifacts_url=bucket_url,
                                            env={**s3_env, **SLOW_FALLBACK_POLL})) for n in range(GATEWAYS)]
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=10)) for url in urls]
        assert [served_version(c) for c in clients] == ["v1.0.0"] * GATEWAYS
        for number in range(DEPLOYS):
            version = ("v2.0.0", "v1.0.0")[number % 2]
            before = shared_store.registry.revision()
            last, _ = follow_deploy(cli_deploy(version, shared_store, registry_url, bucket_url), shared_store,
                                    before, version, clients)
            convergence.append(last)
        for client in clients:
            answer = client.post("/predict/iris", json={"inputs": ROW})
            assert answer.status_code == 200 and answer.json()["version"] == "v1.0.0", answer.text
    for n in range(GATEWAYS):  # each gateway read the bucket into its own cache
        assert any((tmp_path / f"gateway{n}" / ".cache" / "artifacts").iterdir())
    median_ms, worst_ms = statistics.median(convergence) * 1000, max(convergence) * 1000
    record_property("three_gateways_convergence_median_ms", round(median_ms, 1))
    print(f"\nthree gateways: CLI commit -> last of {GATEWAYS} gateways serving it: median {median_ms:.1f} ms, "
          f"max {worst_ms:.1f} ms over {DEPLOYS} deploys; all: {[round(c * 1000) for c in convergence]}")
