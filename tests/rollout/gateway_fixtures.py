"""A store for the gateway rollout tests: one classifier in four versions that differ in what matters to a rollout.

v1.0.0 stable; v1.1.0 other weights (answers differ: visible in outputs and in shadow agreement); v1.2.0 the stable
weights plus real extra work in an ONNX Loop (slow, same answers); v1.3.0 other weights, failing at run time on rows
whose first feature exceeds POISON_THRESHOLD (onnxruntime FAIL status: a 500 from the gateway).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.registry import Deployment
from modelstore.rollout import start_canary
from modelstore.slo import SloPolicy
from tests.factories import classifier_expected, deploy_version, make_store, poison, publish_classifier, slow_work

STABLE, OTHER, SLOW, FLAKY = "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"
SLOW_ROUNDS = 3000  # ~13 ms per run here, against ~0.1-0.3 ms for stable
POISON_THRESHOLD = 9.5
GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
POISONED_ROW = [50.0, 3.5, 1.4, 0.2]


@dataclass(frozen=True)
class RolloutStore:
    store: Store
    weights: dict[str, tuple[np.ndarray, np.ndarray]]

    def expected_labels(self, version: str, rows: np.ndarray) -> np.ndarray:
        return classifier_expected(self.weights[version], rows)[0]

    def deployment(self, environment: str = "production") -> Deployment:
        return self.store.registry.read().state.deployment("iris", environment)

    def audit_actions(self, action: str) -> list[dict]:
        return [e for e in self.store.registry.audit.entries() if e["action"] == action]

    def canary(self, version: str, weight: float, environment: str = "production", *, steps: tuple = (),
               interval_s: float | None = None, routing_salt: str | None = None, **slo: object) -> None:
        start_canary(self.store, "iris", version, environment, weight, steps, interval_s,
                     Change(actor="tests", reason="test canary"), slo=SloPolicy(**slo) if slo else None,
                     routing_salt=routing_salt)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until `condition`; return the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.01)
    return time.monotonic()


def build_rollout_store(root: Path) -> RolloutStore:
    store = make_store(root)
    weights = {
        STABLE: publish_classifier(store, "iris", STABLE, seed=1),
        OTHER: publish_classifier(store, "iris", OTHER, seed=2),
        SLOW: publish_classifier(store, "iris", SLOW, seed=1, noise=slow_work(4, SLOW_ROUNDS)),
        FLAKY: publish_classifier(store, "iris", FLAKY, seed=2, noise=poison(POISON_THRESHOLD)),
    }
    deploy_version(store, "iris", STABLE, "production")
    return RolloutStore(store, weights)
