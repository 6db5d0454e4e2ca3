"""A store for the gateway rollout tests: one classifier in four versions that differ in what matters to a rollout.

v1.0.0 stable; v1.1.0 other weights (answers differ: visible in outputs and in shadow agreement); v1.2.0 the stable
weights plus real extra work in an ONNX Loop (slow, same answers); v1.3.0 other weights, failing at run time on rows
whose first feature exceeds POISON_THRESHOLD (onnxruntime FAIL status: a 500 from the gateway).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.registry import Deployment
from modelstore.rollout import start_canary
from modelstore.slo import SloPolicy
from tests.factories import (
    ClientThreads,
    classifier_expected,
    deploy_version,
    free_port,
    make_store,
    poison,
    publish_classifier,
    slow_work,
    stop_server,
    wait_ready,
)

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


def build_rollout_store(root: Path, store: Store | None = None) -> RolloutStore:
    """The four versions published into `store` (default: a file store at `root`), STABLE deployed to production."""
    store = store if store is not None else make_store(root)
    weights = {
        STABLE: publish_classifier(store, "iris", STABLE, seed=1),
        OTHER: publish_classifier(store, "iris", OTHER, seed=2),
        SLOW: publish_classifier(store, "iris", SLOW, seed=1, noise=slow_work(4, SLOW_ROUNDS)),
        FLAKY: publish_classifier(store, "iris", FLAKY, seed=2, noise=poison(POISON_THRESHOLD)),
    }
    deploy_version(store, "iris", STABLE, "production")
    return RolloutStore(store, weights)


def relabelled(weights: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The classifier `weights` would be if trained on the same data with every label k relabelled k + 1 (mod 3): the
    same logits, class columns rotated (its class j scores as the original's class j - 1)."""
    rotation = [2, 0, 1]
    return weights[0][:, rotation], weights[1][rotation]


def publish_relabelled(rollout: RolloutStore, version: str) -> None:
    """`version`: stable relabelled (a canary answering as fast as stable, with another class for every row)."""
    rollout.weights[version] = publish_classifier(rollout.store, "iris", version, weights=relabelled(rollout.weights[STABLE]))


def publish_copy_of_stable(rollout: RolloutStore, version: str) -> None:
    rollout.weights[version] = publish_classifier(rollout.store, "iris", version, weights=rollout.weights[STABLE])


READY_S = 90.0  # two workers importing onnxruntime on a loaded 2-core machine took over 30 s


USER_HEADER = "X-User"  # as an operator's proxy sets it: the one header a gateway is told to trust for the routing key
TRUSTING_USER_HEADER = {"ONNXGATE_ROUTING_HEADER": USER_HEADER}  # serve_store's `env` for a gateway that trusts it


@contextlib.contextmanager
def serve_store(store: Store, *, workers: int = 1, slo: dict | None = None, tick_s: float = 0.1,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """`onnxgate serve --env production` on `store` in its own process (so that the load generator's threads do not
    share its GIL), judging every `tick_s`, trusting X-Routing-Key for the routing key; `slo` goes in through
    --slo-file, `env` adds or overrides ONNXGATE_* settings. Its log
    goes to gateway.log beside the store."""
    root = store.root
    command = [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port := free_port()),
               "--workers", str(workers), "--store", str(root)]
    if slo is not None:
        slo_file = root.parent / "slo.json"
        slo_file.write_text(json.dumps(slo))
        command += ["--slo-file", str(slo_file)]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    server_env.update(ONNXGATE_ROLLOUT_TICK_S=str(tick_s), ONNXGATE_REGISTRY_POLL_S="0.1",
                      ONNXGATE_ROUTING_HEADER="X-Routing-Key")
    server_env.update(env or {})
    with open(root.parent / "gateway.log", "wb") as log:
        process = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, timeout_s=READY_S)
            yield url
        finally:
            stop_server(process)


@dataclass(frozen=True)
class Posted:
    started: float
    finished: float
    status: int
    key: str
    answer: dict

    @property
    def arm(self) -> str | None:
        return self.answer.get("arm")

    @property
    def retried_from(self) -> str | None:
        return self.answer.get("retried_from")


class Poster(ClientThreads):
    """One client thread posting `body(i)` to `path` with routing key `key(i)` in the header `header`, until stopped
    (or `pause_s` between requests); keeps every answer."""

    join_s = 15.0

    def __init__(self, url: str, path: str, body: Callable[[int], dict], key: Callable[[int], str], *,
                 header: str = "X-Routing-Key", pause_s: float = 0.0) -> None:
        super().__init__(url, [()])
        self.path, self.body, self.key, self.header, self.pause_s = path, body, key, header, pause_s
        self.posted: list[Posted] = []

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            index = 0
            while not self.stopped():
                key = self.key(index)
                started = time.monotonic()
                try:
                    response = client.post(self.path, json=self.body(index), headers={self.header: key})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.posted.append(Posted(started, time.monotonic(), response.status_code, key, response.json()))
                index += 1
                if self.pause_s:
                    time.sleep(self.pause_s)
