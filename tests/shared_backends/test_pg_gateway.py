"""`onnxgate serve` with its registry in PostgreSQL and the versions' files in its local store directory: a deploy made
by another process reaches it by LISTEN/NOTIFY, and a database that goes away under load costs no request on the
versions it serves, shows in /health, and is followed again once it is back."""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelstore.deployments import Change, deploy
from modelstore.layout import Store
from tests.factories import ClientThreads, free_port, publish_classifier, stop_server, wait_ready
from tests.postgres_server import PostgresServer

ROW = [[5.1, 3.5, 1.4, 0.2]]
DEADLINE_S = 60.0
DEPLOYS = 10


@contextlib.contextmanager
def gateway(store: Store, registry_url: str, tmp_path: Path) -> Iterator[str]:
    """`onnxgate serve` in a subprocess; its base URL once ready. The fallback poll is slow (30 s), so a change seen
    sooner came by NOTIFY."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env["ONNXGATE_REGISTRY_POLL_S"] = "30"
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port),
         "--store", str(store.root), "--registry", registry_url], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout_s=DEADLINE_S)
        yield url
    finally:
        stop_server(process)
        log.close()


def served_version(client: httpx.Client) -> str | None:
    [model] = client.get("/health").json()["models"]
    return model["version"]


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S, step_s: float = 0.002) -> float:
    """Poll until `condition()` holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(step_s)
    return time.monotonic() - started


@pytest.fixture
def two_versions(pg_store: Store) -> Store:
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    publish_classifier(pg_store, "iris", "v2.0.0", seed=2)
    deploy(pg_store, "iris", "v1.0.0", "production", Change(actor="tests"))
    return pg_store


@pytest.mark.e2e
def test_a_deploy_from_another_process_reaches_the_gateway_by_notify(two_versions: Store, registry_url: str,
                                                                      tmp_path: Path,
                                                                      record_property: pytest.RecordProperty):
    delays = []
    with gateway(two_versions, registry_url, tmp_path) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert served_version(client) == "v1.0.0"
        for number in range(DEPLOYS):
            version = ("v2.0.0", "v1.0.0")[number % 2]
            deploy(two_versions, "iris", version, "production", Change(actor="tests", reason=f"deploy {number}"))
            delays.append(wait_for(lambda v=version: served_version(client) == v, f"deploy {number} of {version}"))
        answer = client.post("/predict/iris", json={"inputs": ROW})
        assert answer.status_code == 200 and answer.json()["version"] == ("v2.0.0", "v1.0.0")[(DEPLOYS - 1) % 2]
    median_ms = statistics.median(delays) * 1000
    record_property("notify_delay_median_ms", round(median_ms, 1))
    print(f"\nNOTIFY: deploy committed -> gateway serving it: median {median_ms:.1f} ms, max "
          f"{max(delays) * 1000:.1f} ms over {DEPLOYS} deploys")


class Load(ClientThreads):
    """Light load: clients posting /predict, each pausing between requests; keeps every status and version."""

    def __init__(self, url: str, threads: int = 2, pause_s: float = 0.02) -> None:
        super().__init__(url, [() for _ in range(threads)])
        self.pause_s = pause_s
        self.results: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stopped():
                try:
                    response = client.post("/predict/iris", json={"inputs": ROW})
                    version = response.json().get("version") if response.status_code == 200 else None
                    with self._lock:
                        self.results.append((response.status_code, version))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                time.sleep(self.pause_s)

    def count(self) -> int:
        with self._lock:
            return len(self.results)


@pytest.mark.e2e
def test_the_database_going_away_under_load_fails_no_request(two_versions: Store, registry_url: str,
                                                             postgres: PostgresServer, tmp_path: Path):
    with gateway(two_versions, registry_url, tmp_path) as url, httpx.Client(base_url=url, timeout=30) as client, \
            Load(url) as load:
        wait_for(lambda: load.count() >= 20, "requests before the outage", step_s=0.05)
        postgres.stop()
        try:
            wait_for(lambda: client.get("/health").json()["status"] == "degraded", "/health degraded", step_s=0.1)
            health = client.get("/health").json()
            assert any("cannot be reached" in (problem["reason"] or "") for problem in health["problems"]), health
            assert health["models"][0]["version"] == "v1.0.0" and health["models"][0]["loaded"]
            during = load.count()
            wait_for(lambda: load.count() >= during + 20, "requests during the outage", step_s=0.05)
        finally:
            postgres.start()
        deploy(two_versions, "iris", "v2.0.0", "production", Change(actor="tests", reason="after the outage"))
        wait_for(lambda: served_version(client) == "v2.0.0", "the deploy made after the database came back",
                 step_s=0.05)
        wait_for(lambda: client.get("/health").json()["status"] == "ok", "/health ok again", step_s=0.1)
        after = load.count()
        wait_for(lambda: load.count() >= after + 5, "requests after the outage", step_s=0.05)
    assert not load.errors, load.errors[:3]
    statuses = {status for status, _ in load.results}
    assert statuses == {200}, statuses
    versions = [version for _, version in load.results]
    assert set(versions) == {"v1.0.0", "v2.0.0"} and versions[-1] == "v2.0.0"
