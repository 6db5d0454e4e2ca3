"""Gateway fixtures: a store with every test model deployed, an app over it, and a TestClient running its lifespan."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from modelstore.layout import Store
from tests.factories import (
    deploy_version,
    make_store,
    publish_classifier,
    publish_identity,
    publish_text_classifier,
    publish_two_input,
)

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_ROWS = 100


def gateway_settings(store: Store, *environments: str, **overrides: object) -> GatewaySettings:
    values = {"max_body_bytes": MAX_BODY_BYTES, "max_batch_rows": MAX_BATCH_ROWS, "registry_poll_s": 0.1, **overrides}
    if store.registry_backend is not None:  # the shared backends (tests/factories.py make_shared_store)
        values["registry_url"] = store.registry_backend.url
    if store.artifacts is not None:
        values["artifacts_url"] = store.artifacts.location.url(store.artifacts.location.prefix)
    return GatewaySettings(store=store.root, environments=list(environments or ["production"]), **values)


@pytest.fixture(scope="module")
def served_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict]:
    """iris v1 (production) and v2 (staging), pair, echo, sentiment in production; 'unused' registered only."""
    store = make_store(tmp_path_factory.mktemp("served") / "models")
    weights = {"v1.0.0": publish_classifier(store, "iris", "v1.0.0", seed=1),
               "v2.0.0": publish_classifier(store, "iris", "v2.0.0", seed=2)}
    publish_two_input(store, "pair")
    publish_identity(store, "echo")
    publish_text_classifier(store, "sentiment")
    publish_classifier(store, "unused", "v1.0.0", seed=3)
    for name in ("pair", "echo", "sentiment"):
        deploy_version(store, name, "v1.0.0", "production")
    deploy_version(store, "iris", "v1.0.0", "production")
    deploy_version(store, "iris", "v2.0.0", "staging")
    return store, weights


@pytest.fixture(scope="module")
def client(served_store: tuple[Store, dict]) -> Iterator[TestClient]:
    store, _ = served_store
    app = create_app(gateway_settings(store, "production", "staging"), metrics_registry=CollectorRegistry())
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def fresh_store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "models")
