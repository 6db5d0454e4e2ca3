"""/health, the seed's per-model health, and /metrics."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.testclient import TestClient

from gateway.metrics import LATENCY_BUCKETS, GatewayMetrics


def test_gateway_health_lists_every_served_model_per_environment(client: TestClient):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["live"] is True
    assert body["environments"] == ["production", "staging"]
    served = {(m["model"], m["environment"]): m for m in body["models"]}
    assert served[("iris", "production")]["version"] == "v1.0.0"
    assert served[("iris", "staging")]["version"] == "v2.0.0"
    assert all(m["loaded"] and m["error"] is None for m in body["models"])
    assert body["last_reload"]["ok"] is True and body["last_reload"]["duration_s"] >= 0


def test_model_health_in_the_seed_shape_on_both_paths(client: TestClient):
    for path in ("/health/iris", "/api/v1/ml-models/iris/health"):
        response = client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["model_type"] == "iris" and body["version"] == "v1.0.0" and body["status"] == "healthy"
        assert body["available"] is True and body["loadable"] is True
        assert body["metadata"]["version"] == "v1.0.0" and body["metadata"]["deployed_at"]
        assert "error" not in body
    staging = client.get("/health/iris", headers={"X-Environment": "staging"}).json()
    assert staging["version"] == "v2.0.0"


def test_model_health_not_deployed_and_unknown(client: TestClient):
    response = client.get("/api/v1/ml-models/unused/health")
    assert response.status_code == 503 and response.json()["status"] == "not_deployed"
    assert response.json()["available"] is False
    assert client.get("/health/nosuch").status_code == 404
    assert client.get("/health/iris", headers={"X-Environment": "qa"}).status_code == 404


def sample(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_and_predicted_classes(client: TestClient):
    labels = {"model": "iris", "version": "v1.0.0", "environment": "production"}
    before = client.get("/metrics").text
    answer = client.post("/predict/iris", json={"inputs": [[5.1, 3.5, 1.4, 0.2]] * 3}).json()
    client.post("/predict/iris", json={"inputs": [[1, 2]]})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert sample(text, "requests_total", outcome="ok", **labels) == sample(before, "requests_total", outcome="ok",
                                                                            **labels) + 1
    assert sample(text, "requests_total", outcome="invalid_input", **labels) == sample(
        before, "requests_total", outcome="invalid_input", **labels) + 1
    assert sample(text, "request_latency_seconds_count", **labels) == sample(
        before, "request_latency_seconds_count", **labels) + 2
    predicted = answer["outputs"]["label"][0]
    assert sample(text, "predictions_total", **{"class": predicted}, **labels) == sample(
        before, "predictions_total", **{"class": predicted}, **labels) + 3
    for name in ("model_load_seconds", "models_loaded", "reloads_total", "canary_weight"):
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), name
    assert sample(text, "models_loaded") == 5  # iris v1 + v2, pair, echo, sentiment
    assert "# TYPE reload_failures_total counter" in text


def test_request_series_match_prometheus_clients_own_counter_and_histogram():
    """The per-request series are kept as plain numbers (gateway/metrics.py); fed the same observations, they must
    expose exactly what prometheus_client's Counter and Histogram would."""
    observations = [("ok", 0.0001), ("ok", 0.0005), ("ok", 0.00051), ("error", 0.003), ("ok", 4.9), ("ok", 7.0),
                    ("invalid_input", 0.001)]
    ours = CollectorRegistry()
    series = GatewayMetrics(ours).for_model(
        SimpleNamespace(name="m", version="v1", labels=["a", "b"], label_output="label"), "prod")
    reference = CollectorRegistry()
    requests = Counter("requests", "", ["model", "version", "environment", "outcome"], registry=reference)
    latency = Histogram("request_latency_seconds", "", ["model", "version", "environment"], buckets=LATENCY_BUCKETS,
                        registry=reference)
    predictions = Counter("predictions", "", ["model", "version", "environment", "class"], registry=reference)
    answered = iter((np.array([1]), np.array([0, 1, 1, 7]), None, np.array([b"b"]), np.array(["a", "zzz"])))
    for outcome, seconds in observations:
        if outcome == "ok":  # the answered ones, each with its label output's values (None: no label output)
            series.record_answer(seconds, next(answered))
        else:
            series.record(outcome, seconds)
        requests.labels("m", "v1", "prod", outcome).inc()
        latency.labels("m", "v1", "prod").observe(seconds)
    assert next(answered, "none left") == "none left"
    for name, count in (("a", 2), ("b", 4), ("other", 2)):
        predictions.labels("m", "v1", "prod", name).inc(count)

    def samples(registry: CollectorRegistry) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in registry.collect()
                for s in family.samples if not s.name.endswith("_created") and s.value}

    assert samples(ours) == samples(reference)
