"""The answer ledger through a real gateway: answers written down but not yet counted are counted by each reader on
its own (the metrics collector, a drift report, the rollout windows), a large request is counted at once, and a
full ledger settles."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.answer_ledger import LEDGER_ENTRIES, MAX_HELD_ROWS
from gateway.app import create_app
from gateway.service import Service
from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.rollout import StartCanary
from modelstore.transitions import transition
from tests.factories import deploy_version, make_store, publish_watched_classifier, running_server, training_rows
from tests.gateway.conftest import gateway_settings
from tests.gateway.test_health_metrics import sample

ANSWERS = 5  # well under LEDGER_ENTRIES: nothing settles the ledger on its own


@pytest.fixture(scope="module")
def ledger_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """`split`: v1.0.0 stable with v2.0.0 as a 50% canary; `single`: v1.0.0 alone. Both with reference statistics."""
    store = make_store(tmp_path_factory.mktemp("ledger") / "models")
    for name in ("split", "single"):
        publish_watched_classifier(store, name, seed=1)
        deploy_version(store, name, "v1.0.0", "production")
    publish_watched_classifier(store, "split", "v2.0.0", seed=2)
    transition(store, StartCanary("split", "production", "v2.0.0", 50), Change(actor="tests"))
    return store


@pytest.fixture(scope="module")
def served(ledger_store: Store) -> Iterator[tuple[httpx.Client, Service, CollectorRegistry]]:
    """A gateway whose judge does not tick during the tests (a tick settles the ledger)."""
    settings = gateway_settings(ledger_store, "production", drift_enabled=True, rollout_tick_s=3600)
    registry = CollectorRegistry()
    app = create_app(settings, metrics_registry=registry)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, app.state.service, registry


def predict(client: httpx.Client, model: str, rows: int) -> dict:
    response = client.post(f"/predict/{model}", json={"inputs": training_rows(seed=rows, rows=rows).tolist()})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.e2e
def test_every_reader_counts_the_answers_the_ledger_holds(served):
    """Each reader on its own (a /metrics scrape reads drift too, which settles: the collector is read directly)."""
    client, service, registry = served
    arms = [predict(client, "split", 1)["version"] for _ in range(ANSWERS)]
    assert len(service.ledger.entries) == ANSWERS  # held: no reader has asked yet
    metrics = generate_latest(registry).decode()
    assert service.ledger.entries == []
    for version in ("v1.0.0", "v2.0.0"):
        assert sample(metrics, "requests_total", model="split", version=version, environment="production",
                      outcome="ok") == arms.count(version)

    arms += [predict(client, "split", 1)["version"] for _ in range(ANSWERS)]
    assert len(service.ledger.entries) == ANSWERS
    drift = client.get("/drift/split", params={"version": "v1.0.0"}).json()
    assert service.ledger.entries == []
    assert drift["window_rows"] == arms.count("v1.0.0")

    arms.append(predict(client, "split", 1)["version"])
    assert len(service.ledger.entries) == 1
    windows = service.pools.rollouts[("split", "production")].windows
    assert service.ledger.entries == []
    judged = [windows.window(arm, version) for arm, version in (("stable", "v1.0.0"), ("canary", "v2.0.0"))]
    assert [window.total_requests if window else 0 for window in judged] == [arms.count("v1.0.0"),
                                                                            arms.count("v2.0.0")]


@pytest.mark.e2e
def test_a_large_request_is_counted_at_once_and_a_full_ledger_settles(served):
    client, service, registry = served
    predict(client, "single", 1)
    assert len(service.ledger.entries) == 1
    predict(client, "single", MAX_HELD_ROWS + 1)
    assert service.ledger.entries == []
    for _ in range(LEDGER_ENTRIES - 1):
        predict(client, "single", 1)
    assert len(service.ledger.entries) == LEDGER_ENTRIES - 1
    predict(client, "single", 1)
    assert service.ledger.entries == []
    metrics = generate_latest(registry).decode()
    assert sample(metrics, "requests_total", model="single", version="v1.0.0", environment="production",
                  outcome="ok") == 1 + 1 + LEDGER_ENTRIES
