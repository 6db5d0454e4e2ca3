"""Adversarial suite fixtures: a store with small real models deployed, and one real uvicorn server per test module."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.layout import Store
from tests.factories import (
    deploy_version,
    make_store,
    publish_classifier,
    publish_identity,
    publish_text_classifier,
    publish_two_input,
    running_server,
)
from tests.gateway.conftest import gateway_settings

DEADLINE_S = 90.0


@dataclass(frozen=True)
class LiveGateway:
    url: str
    store: Store
    iris_weights: tuple[np.ndarray, np.ndarray]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=DEADLINE_S)


def build_served_store(root) -> tuple[Store, tuple[np.ndarray, np.ndarray]]:
    """iris (float32[batch, 4] -> label, probabilities) v1 in production and v2 registered; pair (two inputs of two
    dtypes), echo (one input per dtype) and sentiment (text) in production."""
    store = make_store(root)
    weights = publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    publish_two_input(store, "pair")
    publish_identity(store, "echo")
    publish_text_classifier(store, "sentiment")
    for name in ("iris", "pair", "echo", "sentiment"):
        deploy_version(store, name, "v1.0.0", "production")
    return store, weights


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    store, weights = build_served_store(tmp_path_factory.mktemp("adversarial") / "models")
    app = create_app(gateway_settings(store, "production", "staging"), metrics_registry=CollectorRegistry())
    with running_server(app) as url:
        yield LiveGateway(url, store, weights)


# How many generated cases each test ran, and what the gateway answered them, printed at the end of the session (the
# issue asks for the count).
CASE_COUNTS: dict[str, int] = {}
ANSWER_COUNTS: dict[str, int] = {}


def count_cases(label: str, n: int = 1) -> None:
    CASE_COUNTS[label] = CASE_COUNTS.get(label, 0) + n


def count_answer(label: str) -> None:
    ANSWER_COUNTS[label] = ANSWER_COUNTS.get(label, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASE_COUNTS:
        terminalreporter.section("adversarial cases run")
        for label, count in sorted(CASE_COUNTS.items()):
            terminalreporter.write_line(f"{count:6d}  {label}")
        terminalreporter.write_line(f"{sum(CASE_COUNTS.values()):6d}  cases in all")
        for label, count in sorted(ANSWER_COUNTS.items()):
            terminalreporter.write_line(f"{count:6d}  answered {label}")
