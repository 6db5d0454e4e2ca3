"""Hot reloading: new deployments are picked up, tampered or broken versions are refused while the last good version
keeps serving, and a redeploy under load loses no request. The tests that do not edit the store's files by hand run
over the file store and over the shared backends (a real PostgreSQL registry, a real S3-compatible bucket)."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.service import Service
from gateway.watcher import StoreWatcher
from modelstore.layout import Store, open_store
from tests.factories import (
    ClientThreads,
    classifier_expected,
    deploy_unverified,
    deploy_version,
    make_shared_store,
    publish_classifier,
    running_server,
)
from tests.gateway.conftest import gateway_settings

ROW = [[5.1, 3.5, 1.4, 0.2]]


def tamper(store: Store, name: str, version: str) -> bytes:
    path = store.model_path(name, version)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    return original


@pytest.fixture(params=["file", "shared"])
def any_store(request: pytest.FixtureRequest, fresh_store: Store, tmp_path: Path) -> Iterator[Store]:
    """The file store, or one with its registry in a fresh database and its versions' files in a fresh bucket."""
    if request.param == "file":
        yield fresh_store
        return
    store = make_shared_store(tmp_path / "shared", request.getfixturevalue("registry_url"),
                              request.getfixturevalue("bucket_url"))
    yield store
    store.close()


@pytest.fixture
def app_client(fresh_store: Store) -> Iterator[TestClient]:
    publish_classifier(fresh_store, "iris", "v1.0.0", seed=1)
    publish_classifier(fresh_store, "iris", "v2.0.0", seed=2)
    deploy_version(fresh_store, "iris", "v1.0.0")
    app = create_app(gateway_settings(fresh_store, registry_poll_s=60), metrics_registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client


def reload(client: TestClient) -> dict:
    report = client.portal.call(client.app.state.service.reload)
    return report.as_json()


def served_version(client: TestClient) -> str:
    response = client.post("/predict/iris", json={"inputs": ROW})
    assert response.status_code == 200
    return response.json()["version"]


def failures_metric(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('reload_failures_total{model="iris"}'):
            return float(line.split()[-1])
    return 0.0


def test_tampered_version_is_refused_and_the_previous_one_keeps_serving(app_client: TestClient, fresh_store: Store):
    original = tamper(fresh_store, "iris", "v2.0.0")
    deploy_unverified(fresh_store, "iris", "v2.0.0")
    assert reload(app_client)["ok"] is False
    assert served_version(app_client) == "v1.0.0"
    health = app_client.get("/health/iris")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy" and body["available"] is True and body["loadable"] is False
    assert body["version"] == "v1.0.0" and body["metadata"]["version"] == "v2.0.0"
    assert "sha256 mismatch" in body["error"]
    overall = app_client.get("/health").json()
    assert overall["status"] == "degraded" and "sha256 mismatch" in overall["models"][0]["error"]
    assert failures_metric(app_client) == 1
    reload(app_client)  # nothing changed: not retried, not counted again
    assert failures_metric(app_client) == 1

    store_path = fresh_store.model_path("iris", "v2.0.0")
    store_path.write_bytes(original)  # the files change again: retried, and now it loads
    assert reload(app_client)["ok"] is True
    assert served_version(app_client) == "v2.0.0"
    assert app_client.get("/health/iris").json()["status"] == "healthy"


def test_tampering_a_loaded_version_keeps_its_verified_session_and_reports_it(app_client: TestClient,
                                                                            fresh_store: Store):
    tamper(fresh_store, "iris", "v1.0.0")
    assert reload(app_client)["ok"] is False
    assert served_version(app_client) == "v1.0.0"
    body = app_client.get("/health/iris").json()
    assert body["status"] == "unhealthy" and "sha256 mismatch" in body["error"]


def test_model_onnxruntime_refuses_is_not_loaded(app_client: TestClient, fresh_store: Store):
    publish_classifier(fresh_store, "iris", "v3.0.0", seed=3)
    path = fresh_store.model_path("iris", "v3.0.0")
    metadata_path = fresh_store.metadata_path("iris", "v3.0.0")
    garbage = b"this is not an onnx model"
    from modelstore.fileio import sha256_bytes
    metadata_path.write_text(metadata_path.read_text().replace(
        fresh_store.read_metadata("iris", "v3.0.0").model_sha256, sha256_bytes(garbage)))
    path.write_bytes(garbage)
    deploy_unverified(fresh_store, "iris", "v3.0.0")
    assert reload(app_client)["ok"] is False
    assert served_version(app_client) == "v1.0.0"
    assert "onnxruntime refused" in app_client.get("/health/iris").json()["error"]


def test_corrupt_registry_keeps_everything_serving(app_client: TestClient, fresh_store: Store):
    registry_path = fresh_store.registry_path
    registry_path.write_text("{not json")
    report = reload(app_client)
    assert report["ok"] is False and "registry" in report["error"]
    assert served_version(app_client) == "v1.0.0"
    assert app_client.get("/health").json()["last_reload"]["ok"] is False


def test_undeployed_model_becomes_served_after_deploy(any_store: Store):
    publish_classifier(any_store, "iris", "v1.0.0", seed=1)
    deploy_version(any_store, "iris", "v1.0.0")
    app = create_app(gateway_settings(any_store, registry_poll_s=60), metrics_registry=CollectorRegistry())
    with TestClient(app) as app_client:
        publish_classifier(any_store, "other", "v1.0.0", seed=4)
        reload(app_client)
        assert app_client.post("/predict/other", json={"inputs": ROW}).status_code == 503
        deploy_version(any_store, "other", "v1.0.0")
        reload(app_client)
        assert app_client.post("/predict/other", json={"inputs": ROW}).status_code == 200


class Load(ClientThreads):
    """Clients posting /predict in threads, recording (finished_at, status, version, environment, thread)."""

    def __init__(self, url: str, environments: list[str], threads_per_env: int = 2) -> None:
        super().__init__(url, [(env,) for env in environments for _ in range(threads_per_env)])
        self.results: list[tuple[float, int, str | None, str, int]] = []

    def _run(self, environment: str) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopped():
                try:
                    response = client.post("/predict/iris", json={"inputs": ROW},
                                           headers={"X-Environment": environment})
                    version = response.json().get("version") if response.status_code == 200 else None
                    self.results.append((time.monotonic(), response.status_code, version, environment,
                                         threading.get_ident()))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))


@pytest.mark.e2e
def test_redeploy_under_load_switches_versions_with_no_failed_request(any_store: Store,
                                                                      record_property: pytest.RecordProperty):
    fresh_store = any_store
    weights = {"v1.0.0": publish_classifier(fresh_store, "iris", "v1.0.0", seed=1),
               "v2.0.0": publish_classifier(fresh_store, "iris", "v2.0.0", seed=2)}
    deploy_version(fresh_store, "iris", "v1.0.0", "production")
    deploy_version(fresh_store, "iris", "v2.0.0", "staging")
    # Polling fallback off (60 s): the switch below must come from watchfiles events (LISTEN/NOTIFY when shared).
    settings = gateway_settings(fresh_store, "production", "staging", registry_poll_s=60)
    app = create_app(settings, metrics_registry=CollectorRegistry())
    with running_server(app) as url, Load(url, ["production", "staging"]) as load:
        time.sleep(0.5)
        deployed_at = time.monotonic()
        deploy_version(fresh_store, "iris", "v2.0.0", "production")
        deadline = deployed_at + 30  # generous: the figure is recorded below, never bounded
        while time.monotonic() < deadline:
            switched = [r for r in load.results if r[3] == "production" and r[2] == "v2.0.0"]
            if switched:
                break
            time.sleep(0.005)
        time.sleep(0.3)
        with httpx.Client(base_url=url) as client:
            answer = client.post("/predict/iris", json={"inputs": ROW}).json()
    assert switched, "production never served v2.0.0"
    latency = min(r[0] for r in switched) - deployed_at
    record_property("deploy_to_first_new_response_s", round(latency, 3))
    print(f"\ndeploy-to-first-new-response: {latency * 1000:.0f} ms over {len(load.results)} requests")
    assert not load.errors
    assert [r for r in load.results if r[1] != 200] == []
    production = sorted(r for r in load.results if r[3] == "production")
    first_new = next(i for i, r in enumerate(production) if r[2] == "v2.0.0")
    assert {r[2] for r in production[:first_new]} == {"v1.0.0"}
    # Each client sends its next request after the last answer: once a client has had v2, it never has v1 again.
    # (Across clients, a request answered by v1 just before the swap may be recorded after others' v2 answers.)
    for thread in {r[4] for r in production}:
        versions = [r[2] for r in production if r[4] == thread]
        switched_at = versions.index("v2.0.0") if "v2.0.0" in versions else len(versions)
        assert set(versions[switched_at:]) <= {"v2.0.0"}, versions
    assert {r[2] for r in load.results if r[3] == "staging"} == {"v2.0.0"}
    _, probabilities = classifier_expected(weights["v2.0.0"], np.array(ROW, dtype=np.float32))
    np.testing.assert_allclose(answer["outputs"]["probabilities"], probabilities, rtol=1e-5)



def test_a_deploy_between_the_first_load_and_the_watcher_start_is_not_missed(fresh_store: Store):
    """The race behind a worker of `serve --workers 2` that stayed on the old version: the first load read the
    registry, a deploy landed, and only then did the watcher start. It must compare with what the pool read."""
    publish_classifier(fresh_store, "iris", "v1.0.0", seed=1)
    publish_classifier(fresh_store, "iris", "v2.0.0", seed=2)
    deploy_version(fresh_store, "iris", "v1.0.0")
    settings = gateway_settings(fresh_store, registry_poll_s=0.05)

    async def scenario() -> str:
        store = open_store(fresh_store.root, relative_paths=True)
        service = Service(settings, GatewayMetrics(CollectorRegistry()), store)
        await service.reload()
        deploy_version(fresh_store, "iris", "v2.0.0")
        feed = store.change_feed(poll_s=settings.registry_poll_s, debounce_ms=settings.reload_debounce_ms)
        watcher = StoreWatcher(feed, service.reload, lambda: service.pools.seen_revision)
        task = asyncio.create_task(watcher.run())
        try:
            for _ in range(200):
                if service.pools.pool.route("production", "iris").stable.version == "v2.0.0":
                    break
                await asyncio.sleep(0.025)
            return service.pools.pool.route("production", "iris").stable.version
        finally:
            watcher.stop()
            await task
            service.close()

    assert asyncio.run(scenario()) == "v2.0.0"


def test_metadata_that_declares_another_input_dtype_than_the_graph_is_not_loaded(app_client: TestClient,
                                                                                 fresh_store: Store):
    """Loaded, it would answer every request with a 400 blamed on the caller; refused, /health says what is wrong."""
    publish_classifier(fresh_store, "iris", "v3.0.0", seed=3)
    metadata_path = fresh_store.metadata_path("iris", "v3.0.0")
    metadata_path.write_text(metadata_path.read_text().replace('"dtype": "float32"', '"dtype": "float64"', 1))
    deploy_unverified(fresh_store, "iris", "v3.0.0")
    assert reload(app_client)["ok"] is False
    assert served_version(app_client) == "v1.0.0"
    assert "metadata says input 'X' is float64, the graph takes float32" in app_client.get("/health/iris").json()["error"]
