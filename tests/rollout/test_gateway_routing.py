"""The rollout in the gateway's request path, through the app (TestClient, real store, real onnxruntime sessions):
the weighted split, sticky routing, which arm answered, shadow mirroring, and the controller's rollbacks that need
no timing (a canary that fails to load) or must not happen (too little traffic). Over the file store and the shared
backends (the registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.traffic import bucket, threshold
from modelstore.deployments import Change
from modelstore.overview import status_rows
from modelstore.rollout import start_shadow
from modelstore.slo import SloPolicy
from tests.factories import BACKENDS, backend_store
from tests.gateway.conftest import gateway_settings
from tests.rollout.gateway_fixtures import (
    FLAKY,
    GOOD_ROW,
    OTHER,
    POISONED_ROW,
    SLOW,
    STABLE,
    RolloutStore,
    build_rollout_store,
    wait_until,
)

NO_TICKS = 3600.0  # the controller's background task never ticks: tests that need no judge


@pytest.fixture(params=BACKENDS)
def rollout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RolloutStore]:
    with backend_store(request.param, tmp_path / "models", request) as store:
        yield build_rollout_store(tmp_path / "models", store)


def serving(rollout: RolloutStore, metrics: CollectorRegistry | None = None, **settings: object) -> TestClient:
    settings.setdefault("rollout_tick_s", NO_TICKS)
    app = create_app(gateway_settings(rollout.store, "production", **settings),
                     metrics_registry=metrics or CollectorRegistry())
    return TestClient(app)


def reload(client: TestClient) -> None:
    client.portal.call(client.app.state.service.reload)


def random_rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32) * 3


def test_weighted_split_holds_within_statistical_tolerance_and_says_which_arm(rollout: RolloutStore):
    rollout.canary(OTHER, 20)
    rows = random_rows(2000)
    with serving(rollout) as client:
        answers = [client.post("/predict/iris", json={"inputs": [row.tolist()]}) for row in rows]
    assert {a.status_code for a in answers} == {200}
    versions = np.array([a.json()["version"] for a in answers])
    for answer, version in zip(answers, versions, strict=True):
        assert answer.headers["x-model-version"] == version
        assert answer.json()["arm"] == ("canary" if version == OTHER else "stable")
    share = (versions == OTHER).mean()
    sigma = np.sqrt(0.2 * 0.8 / len(rows))
    assert abs(share - 0.2) < 4 * sigma, f"canary share {share:.3f}, expected 0.2 ± {4 * sigma:.3f}"
    # each side answered with its own weights
    for version in (STABLE, OTHER):
        mask = versions == version
        labels = [a.json()["outputs"]["label"][0] for a, m in zip(answers, mask, strict=True) if m]
        expected = rollout.expected_labels(version, rows[mask])
        assert labels == [("setosa", "versicolor", "virginica")[i] for i in expected]


def test_routing_key_is_sticky_follows_the_documented_bucket_and_survives_a_weight_increase(rollout: RolloutStore):
    rollout.canary(OTHER, 25)
    salt = rollout.deployment().routing_salt
    assert salt is not None
    keys = [f"user-{i}" for i in range(300)]
    body = {"inputs": [GOOD_ROW]}
    v2_body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW}]}
    with serving(rollout, routing_header="X-Routing-Key") as client:
        def arm(key: str) -> str:
            first = client.post("/predict/iris", json=body, headers={"X-Routing-Key": key}).json()
            again = client.post("/predict/iris", json=body, headers={"X-Routing-Key": key}).json()
            v2 = client.post("/v2/models/iris/infer", json=v2_body, headers={"X-Routing-Key": key}).json()
            assert first["arm"] == again["arm"] == v2["parameters"]["arm"]
            assert first["version"] == again["version"] == v2["model_version"]
            return first["arm"]

        at_25 = {key: arm(key) for key in keys}
        for key, side in at_25.items():
            assert side == ("canary" if bucket(key, salt) < threshold(25) else "stable")
        assert 0 < sum(side == "canary" for side in at_25.values()) < len(keys)
        rollout.canary(OTHER, 50)
        assert rollout.deployment().routing_salt == salt
        reload(client)
        at_50 = {key: arm(key) for key in keys}
    assert all(at_50[key] == "canary" for key, side in at_25.items() if side == "canary")
    assert {key for key, side in at_50.items() if side == "canary"} == {k for k in keys if bucket(k, salt) < threshold(50)}


def test_pinned_version_bypasses_the_split(rollout: RolloutStore):
    rollout.canary(OTHER, 100)
    with serving(rollout) as client:
        pinned = client.post("/predict/iris?version=v1.0.0", json={"inputs": [GOOD_ROW]}).json()
        split = client.post("/predict/iris", json={"inputs": [GOOD_ROW]}).json()
    assert (pinned["version"], pinned["arm"]) == (STABLE, "pinned")
    assert (split["version"], split["arm"]) == (OTHER, "canary")


def sample(metrics: CollectorRegistry, name: str, **labels: str) -> float:
    return metrics.get_sample_value(name, labels) or 0.0


def test_shadow_answers_never_reach_the_client_and_are_measured(rollout: RolloutStore):
    """The shadow (FLAKY: other weights, failing on poisoned rows) sees every request after the response is sent;
    clients get stable's answers only, and the metrics count agreement exactly as numpy predicts it."""
    start_shadow(rollout.store, "iris", FLAKY, "production", 100, Change(actor="tests", reason="shadow test"))
    rows = random_rows(150, seed=3)
    poisoned = 20
    metrics = CollectorRegistry()
    with serving(rollout, metrics) as client:
        answers = [client.post("/predict/iris", json={"inputs": [row.tolist()]}) for row in rows]
        failing = [client.post("/predict/iris", json={"inputs": [POISONED_ROW]}) for _ in range(poisoned)]
        health = client.get("/health").json()
    assert {a.status_code for a in answers + failing} == {200}
    assert {a.json()["version"] for a in answers + failing} == {STABLE}
    assert {a.json()["arm"] for a in answers} == {"stable"}
    stable_labels = rollout.expected_labels(STABLE, rows)
    assert [a.json()["outputs"]["label"][0] for a in answers] == [
        ("setosa", "versicolor", "virginica")[i] for i in stable_labels]

    agree = int((rollout.expected_labels(OTHER, rows) == stable_labels).sum())
    assert 0 < agree < len(rows), "the two versions must disagree on some rows for this test to mean anything"
    labels = {"model": "iris", "version": FLAKY, "environment": "production"}
    assert sample(metrics, "shadow_rows_total", **labels, result="agree") == agree
    assert sample(metrics, "shadow_rows_total", **labels, result="disagree") == len(rows) - agree
    assert sample(metrics, "shadow_requests_total", **labels, outcome="ok") == len(rows)
    assert sample(metrics, "shadow_requests_total", **labels, outcome="error") == poisoned
    assert sample(metrics, "shadow_latency_seconds_count", **labels) == len(rows) + poisoned
    distance = sample(metrics, "shadow_distribution_distance", **labels)
    stable_share = np.bincount(stable_labels, minlength=3) / len(rows)
    shadow_share = np.bincount(rollout.expected_labels(OTHER, rows), minlength=3) / len(rows)
    assert distance == pytest.approx(0.5 * np.abs(stable_share - shadow_share).sum(), abs=1e-9)
    [entry] = health["models"]
    shadow = entry["rollout"]["shadow"]
    assert shadow["version"] == FLAKY and shadow["mirrored"] == len(rows) + poisoned
    assert shadow["agreement_rate"] == pytest.approx(agree / len(rows), abs=1e-4)
    # the stable arm's own request counter saw every request once: the shadow's runs are not counted as answers
    assert sample(metrics, "requests_total", model="iris", version=STABLE, environment="production",
                  outcome="ok") == len(rows) + poisoned


def test_canary_that_fails_to_load_is_rolled_back_while_stable_keeps_serving(rollout: RolloutStore):
    if rollout.store.registry_backend is not None:
        pytest.skip("tampers the canary's file by hand: the file store only")
    rollout.canary(OTHER, 50)
    model_file = rollout.store.version_dir("iris", OTHER) / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    metrics = CollectorRegistry()
    with serving(rollout, metrics, rollout_tick_s=0.05) as client:
        answers = [client.post("/predict/iris", json={"inputs": [GOOD_ROW]}) for _ in range(20)]
        wait_until(lambda: rollout.deployment().canary is None, 5,
                 "the canary rollback")
        wait_until(lambda: "last_rollback" in client.get("/health").json()["models"][0].get("rollout", {}), 5,
                 "health to show the rollback")
        health = client.get("/health").json()
    assert {(a.status_code, a.json()["version"]) for a in answers} == {(200, STABLE)}
    deployment = rollout.deployment()
    assert deployment.version == STABLE and deployment.last_rollback["kind"] == "canary"
    assert deployment.last_rollback["causes"] == ["load_failure"]
    assert "sha256 mismatch" in deployment.last_rollback["reasons"][0]
    [entry] = rollout.audit_actions("canary_rollback")
    assert entry["actor"].startswith("gateway@") and "failed to load" in entry["reason"]
    assert sample(metrics, "rollbacks_total", model="iris", environment="production", kind="canary",
                  cause="load_failure") == 1
    assert health["models"][0]["rollout"]["last_rollback"]["from"] == OTHER
    [row] = status_rows(rollout.store.registry.read().state)
    assert row["last_rollback"].startswith(f"{OTHER}->{STABLE} canary (load_failure) ")


def test_no_rollback_below_the_minimum_request_count_or_on_empty_windows(rollout: RolloutStore):
    """A canary 100x slower than stable, but with fewer requests per window than the minimum: every verdict is
    inconclusive and nothing is rolled back, however long it runs; then nothing at all for a while (empty windows)."""
    rollout.canary(SLOW, 50, window_s=0.5, min_requests=20, breaches_to_rollback=1)
    with serving(rollout, rollout_tick_s=0.05) as client:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert client.post("/predict/iris", json={"inputs": [GOOD_ROW]}).status_code == 200
            time.sleep(0.1)  # ~5 requests per 0.5 s window, ~2-3 of them to the canary
        time.sleep(1.5)
        verdict = client.get("/health").json()["models"][0]["rollout"]["last_verdict"]
    assert rollout.deployment().canary.version == SLOW
    assert rollout.audit_actions("canary_rollback") == []
    assert verdict["kind"] == "inconclusive" and "fewer than 20" in verdict["reasons"][0]


def test_slo_defaults_come_from_settings_and_bad_ones_are_refused(rollout: RolloutStore):
    with pytest.raises(ValueError, match="max_error_rate"):
        gateway_settings(rollout.store, "production", slo=SloPolicy(max_error_rate=2))
    settings = gateway_settings(rollout.store, "production", slo=SloPolicy(window_s=3, min_requests=7))
    assert (settings.slo_limits.window_s, settings.slo_limits.min_requests) == (3, 7)


def test_a_request_the_canary_fails_is_answered_by_stable_and_says_so(rollout: RolloutStore):
    rollout.canary(FLAKY, 100)
    poisoned_v2 = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": POISONED_ROW}]}
    metrics = CollectorRegistry()
    with serving(rollout, metrics) as client:
        predict = client.post("/predict/iris", json={"inputs": [POISONED_ROW]})
        v2 = client.post("/v2/models/iris/infer", json=poisoned_v2)
        good = client.post("/predict/iris", json={"inputs": [GOOD_ROW]}).json()
        pinned = client.post(f"/predict/iris?version={FLAKY}", json={"inputs": [POISONED_ROW]})
        mistake = client.post("/predict/iris", json={"inputs": [[1.0, 2.0]]})
    assert predict.status_code == 200 and predict.headers["x-model-version"] == STABLE
    body = predict.json()
    assert (body["arm"], body["version"], body["retried_from"]) == ("stable", STABLE, FLAKY)
    expected = rollout.expected_labels(STABLE, np.array([POISONED_ROW], dtype=np.float32))
    assert body["outputs"]["label"] == [("setosa", "versicolor", "virginica")[i] for i in expected]
    assert v2.status_code == 200
    assert v2.json()["model_version"] == STABLE
    assert v2.json()["parameters"] == {"environment": "production", "arm": "stable", "retried_from": FLAKY}
    assert (good["arm"], good["version"]) == ("canary", FLAKY) and "retried_from" not in good
    assert pinned.status_code == 500 and "error" in pinned.json()  # a pinned request is not retried
    assert mistake.status_code == 400  # nor is the caller's mistake
    labels = {"model": "iris", "environment": "production"}
    assert sample(metrics, "requests_total", **labels, version=FLAKY, outcome="error") == 3  # two retried, one pinned
    assert sample(metrics, "requests_total", **labels, version=STABLE, outcome="ok") == 2
