"""Pinned versions (`?version=`, /v2/models/m/versions/v): which ones may be served, and what loading them costs.

Rules: a pin serves a version the served environments deploy now or deployed just before (stable, canary, shadow,
bake's previous, previous_version), any registered version only with pin_any_version, and never a rolled-back one.
Loads: concurrent pins of one uncached version share one load; the cache of pinned versions cannot be churned into
a full load per request.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.rollout import rollback_canary, rollback_environment, start_canary, start_shadow
from tests.factories import deploy_version, make_store, publish_classifier, publish_mlp, running_server
from tests.gateway.conftest import gateway_settings

ROW = [[5.1, 3.5, 1.4, 0.2]]
DEADLINE_S = 90
CHANGE = Change(actor="tests")


def pinned_requests(version: str) -> list[tuple[str, dict]]:
    """The same row for iris pinned to `version`, once per endpoint: /predict and v2 infer."""
    v2_body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": ROW[0]}]}
    return [(f"/predict/iris?version={version}", {"inputs": ROW}),
            (f"/v2/models/iris/versions/{version}/infer", v2_body)]


def version_loads(metrics_text: str, model: str, outcome: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "version_loads_total" and sample.labels == {"model": model, "outcome": outcome}:
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def rollout_history(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """iris in production: v1.1.0 stable (replacing v1.0.0), v1.2.0 canary, v1.3.0 shadow; v1.4.0 only registered;
    v1.5.0 stable in staging (not served by these gateways). flaky v1.1.0 was a canary rolled back, and v1.2.0 a
    stable version rolled back to v1.0.0."""
    store = make_store(tmp_path_factory.mktemp("pins") / "models")
    for seed, version in enumerate(["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0"]):
        publish_classifier(store, "iris", version, seed=seed)
        publish_classifier(store, "flaky", version, seed=seed)
    deploy_version(store, "iris", "v1.0.0")
    deploy_version(store, "iris", "v1.1.0")
    start_canary(store, "iris", "v1.2.0", "production", 10, change=CHANGE)
    start_shadow(store, "iris", "v1.3.0", "production", change=CHANGE)
    deploy_version(store, "iris", "v1.5.0", "staging")
    deploy_version(store, "flaky", "v1.0.0")
    start_canary(store, "flaky", "v1.1.0", "production", 10, change=CHANGE)
    rollback_canary(store, "flaky", "production", CHANGE)
    deploy_version(store, "flaky", "v1.2.0")
    rollback_environment(store, "flaky", "production", CHANGE)  # back to v1.0.0; v1.2.0 is its previous_version
    return store


@pytest.fixture(scope="module")
def strict_client(rollout_history: Store) -> Iterator[TestClient]:
    app = create_app(gateway_settings(rollout_history), metrics_registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def any_version_client(rollout_history: Store) -> Iterator[TestClient]:
    app = create_app(gateway_settings(rollout_history, pin_any_version=True), metrics_registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"])
def test_versions_the_environment_deploys_or_deployed_just_before_can_be_pinned(strict_client, version):
    for path, body in pinned_requests(version):
        response = strict_client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == version


@pytest.mark.parametrize("version", ["v1.4.0", "v1.5.0"])  # registered only; deployed in an environment not served
def test_other_registered_versions_are_refused_unless_the_operator_allows_any(strict_client, any_version_client,
                                                                               version):
    for path, body in pinned_requests(version):
        refused = strict_client.post(path, json=body)
        assert refused.status_code == 403
        assert "not deployed" in refused.json()["error"] and "ONNXGATE_PIN_ANY_VERSION" in refused.json()["error"]
        allowed = any_version_client.post(path, json=body)
        assert allowed.status_code == 200 and allowed.headers["X-Model-Version"] == version
    unknown = strict_client.post("/predict/iris?version=v9.9.9", json={"inputs": ROW})
    assert unknown.status_code == 404 and "v9.9.9" in unknown.json()["error"]


@pytest.mark.parametrize("version", ["v1.1.0", "v1.2.0"])  # a rolled-back canary; a rolled-back stable version
def test_rolled_back_versions_are_never_pinned(strict_client, any_version_client, version):
    for client in (strict_client, any_version_client):
        refused = client.post(f"/predict/flaky?version={version}", json={"inputs": ROW})
        assert refused.status_code == 403 and "rolled back" in refused.json()["error"]
    assert strict_client.post("/predict/flaky?version=v1.0.0", json={"inputs": ROW}).status_code == 200
    metrics = strict_client.get("/metrics").text
    assert 'requests_total{environment="production",model="flaky",outcome="forbidden",version=""}' in metrics


def test_twelve_concurrent_pins_of_an_uncached_version_load_it_once(fresh_store):
    """v1.0.0 is the previous stable version: pinnable, not held by the pool. Large enough (a ~32 MB MLP) that its
    load takes a while, so the twelve requests arrive while it runs."""
    publish_mlp(fresh_store, "mlp", "v1.0.0", width=1024, layers=8, n_features=1024)
    publish_mlp(fresh_store, "mlp", "v2.0.0", width=8, layers=1, n_features=1024)
    deploy_version(fresh_store, "mlp", "v1.0.0")
    deploy_version(fresh_store, "mlp", "v2.0.0")
    app = create_app(gateway_settings(fresh_store, max_body_bytes=1 << 20), metrics_registry=CollectorRegistry())
    row = [[0.01] * 1024]
    statuses: list[tuple[int, str | None]] = []
    errors: list[str] = []
    with running_server(app) as url:
        start = threading.Barrier(12)

        def pin() -> None:
            try:
                with httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
                    start.wait(DEADLINE_S)
                    response = client.post("/predict/mlp?version=v1.0.0", json={"inputs": row})
                    statuses.append((response.status_code, response.headers.get("X-Model-Version")))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))

        threads = [threading.Thread(target=pin) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_S)
        metrics = httpx.get(f"{url}/metrics", timeout=DEADLINE_S).text
    assert not errors and statuses == [(200, "v1.0.0")] * 12, (errors, statuses)
    assert version_loads(metrics, "mlp", "ok") == 1
    assert version_loads(metrics, "mlp", "failed") == 0


def churn_store(root) -> Store:
    """stable v1.3.0; v1.0.0, v1.1.0 and v1.2.0 registered and pinnable only with pin_any_version."""
    store = make_store(root)
    for seed, version in enumerate(["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]):
        publish_classifier(store, "iris", version, seed=seed)
    deploy_version(store, "iris", "v1.3.0")
    return store


def test_cycling_more_versions_than_the_cache_holds_is_refused_not_reloaded(tmp_path):
    store = churn_store(tmp_path / "models")
    settings = gateway_settings(store, pin_any_version=True, pinned_cache_size=2, pinned_min_residency_s=3600)
    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        answers = []
        for _ in range(3):
            for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
                answers.append(client.post(f"/predict/iris?version={version}", json={"inputs": ROW}))
        assert [a.status_code for a in answers] == [200, 200, 503] * 3
        busy = answers[2].json()["error"]
        assert "every slot for pinned versions (2)" in busy and "retry later" in busy
        assert version_loads(client.get("/metrics").text, "iris", "ok") == 2
        assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 200  # the deployed version: no slot


def test_a_cached_version_older_than_the_residency_gives_way(tmp_path):
    store = churn_store(tmp_path / "models")
    settings = gateway_settings(store, pin_any_version=True, pinned_cache_size=2, pinned_min_residency_s=0)
    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        for version in ("v1.0.0", "v1.1.0", "v1.0.0", "v1.2.0", "v1.0.0", "v1.1.0"):
            response = client.post(f"/predict/iris?version={version}", json={"inputs": ROW})
            assert response.status_code == 200 and response.headers["X-Model-Version"] == version
        # loads: v1.0.0, v1.1.0, v1.2.0 (evicting v1.1.0, least recently used), v1.1.0 again (evicting v1.2.0)
        assert version_loads(client.get("/metrics").text, "iris", "ok") == 4


def test_a_failed_load_is_not_cached(tmp_path):
    store = churn_store(tmp_path / "models")
    path = store.model_path("iris", "v1.0.0")
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    settings = gateway_settings(store, pin_any_version=True)
    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        for _ in range(2):
            response = client.post("/predict/iris?version=v1.0.0", json={"inputs": ROW})
            assert response.status_code == 503 and "cannot be loaded" in response.json()["error"]
        path.write_bytes(original)
        assert client.post("/predict/iris?version=v1.0.0", json={"inputs": ROW}).status_code == 200
        metrics = client.get("/metrics").text
    assert version_loads(metrics, "iris", "failed") == 2 and version_loads(metrics, "iris", "ok") == 1


@pytest.mark.parametrize("version", ["v1.0.0%0A", "v1.0.0%0D%0A", "v1.0.0-" + "a" * 5000])
def test_a_version_with_a_newline_or_over_long_is_an_unknown_version(strict_client, version):
    for path, body in pinned_requests(version):
        response = strict_client.post(path, json=body)
        assert response.status_code == 404, response.text
        assert "has no version" in response.json()["error"] and len(response.json()["error"]) < 300


def test_a_model_name_with_a_newline_is_not_found(strict_client):
    response = strict_client.post("/predict/iris%0A", json={"inputs": ROW})
    assert response.status_code == 404 and "not found" in response.json()["error"]
