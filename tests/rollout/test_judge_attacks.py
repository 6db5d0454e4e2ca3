"""Clients trying to steer the rollout judge, end to end (a real `onnxgate serve`, real models, real clients):

- latency: one client sends ~100 KB texts that land on a canary identical to stable and tiny texts that land on
  stable; judged per unit of work, the canary is not slower, and nothing is rolled back;
- dilution: one source floods a canary that fails some inputs with good requests, keeping its per-request error rate
  under the limit while a few other sources' requests fail; judged per source as well, it is rolled back, never
  promoted.

Keys are chosen by the bucket function so that each client lands on the arm the attack needs; they travel in the
header named by USER_HEADER, and TRUSTING_USER_HEADER holds the settings that name it to the gateway."""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.traffic import bucket, threshold
from modelstore.deployments import Change
from modelstore.rollout import new_routing_salt, start_canary
from modelstore.slo import SloPolicy
from tests.factories import deploy_version, make_store, publish_text_classifier
from tests.rollout.gateway_fixtures import (
    FLAKY,
    GOOD_ROW,
    POISONED_ROW,
    STABLE,
    TRUSTING_USER_HEADER,
    USER_HEADER,
    Posted,
    Poster,
    RolloutStore,
    build_rollout_store,
    serve_store,
    wait_until,
)

pytestmark = pytest.mark.e2e

DEADLINE_S = 90.0
TICK_S = 0.1


def keys_on(side: str, weight: float, prefix: str, salt: str) -> Iterator[str]:
    """Routing keys that land on `side` ("canary" or "stable") at `weight` under the deployment's `salt`, in order."""
    return (key for i in itertools.count()
            if (bucket(key := f"{prefix}-{i}", salt) < threshold(weight)) == (side == "canary"))


def verdicts(url: str) -> dict | None:
    [model] = httpx.get(url + "/health", timeout=10).json()["models"]
    return model.get("rollout", {}).get("last_verdict")


def test_large_requests_on_an_identical_canary_do_not_read_as_a_slow_version(tmp_path: Path):
    store = make_store(tmp_path / "models")
    for version in ("v1.0.0", "v1.1.0"):
        publish_text_classifier(store, "sentiment", version)
    deploy_version(store, "sentiment", "v1.0.0")
    weight = 50
    salt = new_routing_salt()
    canary_key, stable_key = next(keys_on("canary", weight, "big", salt)), next(keys_on("stable", weight, "small", salt))
    large = "good fine great " * 6_250  # 100,000 characters
    slo = SloPolicy(window_s=5.0, min_requests=5, breaches_to_rollback=2)  # a large request may take 0.5 s here
    with serve_store(store, tick_s=TICK_S, env=TRUSTING_USER_HEADER) as url:
        start_canary(store, "sentiment", "v1.1.0", "production", weight, change=Change(actor="tests"), slo=slo,
                     routing_salt=salt)
        wait_until(lambda: httpx.get(url + "/health").json()["models"][0].get("rollout", {}).get("canary", {})
                   .get("loaded"), DEADLINE_S, "the canary to load")
        big = Poster(url, "/predict/sentiment", lambda i: {"text": [large]}, lambda i: canary_key,
                     header=USER_HEADER)
        small = Poster(url, "/predict/sentiment", lambda i: {"text": ["good"]}, lambda i: stable_key,
                       header=USER_HEADER, pause_s=0.002)
        with big, small:
            judged = []

            def judged_windows() -> bool:  # or the canary is gone, as it went before latency was judged per unit
                if store.registry.read().state.deployment("sentiment", "production").canary is None:
                    return True
                verdict = verdicts(url)
                if verdict and (not judged or verdict != judged[-1]):
                    judged.append(verdict)
                return sum(v["kind"] != "inconclusive" for v in judged) >= 3

            wait_until(judged_windows, 2 * DEADLINE_S, "three conclusive verdicts")
    deployment = store.registry.read().state.deployment("sentiment", "production")
    assert deployment.last_rollback is None, deployment.last_rollback
    assert deployment.canary is not None and deployment.canary.version == "v1.1.0"
    assert not big.errors and not small.errors
    assert {p.status for p in big.posted + small.posted} == {200}
    assert {(p.arm, p.answer["version"]) for p in big.posted} == {("canary", "v1.1.0")}
    assert {(p.arm, p.answer["version"]) for p in small.posted} == {("stable", "v1.0.0")}
    # per request the canary is far slower (each request tokenizes 100 KB); per unit of work it is not
    request_ms = sorted((p.finished - p.started) * 1000 for p in big.posted)
    tiny_ms = sorted((p.finished - p.started) * 1000 for p in small.posted)
    print(f"\nlatency attack: median {request_ms[len(request_ms) // 2]:.1f} ms per large request against "
          f"{tiny_ms[len(tiny_ms) // 2]:.1f} ms per tiny one; verdicts {[v['kind'] for v in judged]}")
    # a loaded machine may make one window's p95 noisy; never two in a row, as a version judged per request would be
    assert sum(v["kind"] == "healthy" for v in judged) >= sum(v["kind"] == "breach" for v in judged), judged
    assert not [e for e in store.registry.audit.entries() if e["action"] == "canary_rollback"]


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    return build_rollout_store(tmp_path / "models")


def test_one_source_flooding_good_requests_does_not_dilute_the_others_failures(rollout: RolloutStore):
    """FLAKY fails poisoned rows. One source floods it with good rows; three others send only poisoned rows, paced to
    2.5% of the canary's requests, under the 5% per-request limit. Healthy windows would promote it (one step, to 100,
    after a 9 s interval, three windows; it does without the rule per source); judged per source too (the victims
    see only failures), it is rolled back."""
    weight = 50
    salt = new_routing_salt()
    flood_key = next(keys_on("canary", weight, "flood", salt))
    victims = list(itertools.islice(keys_on("canary", weight, "victim", salt), 3))
    bystander = next(keys_on("stable", weight, "bystander", salt))
    slo = {"window_s": 3.0, "min_requests": 5, "breaches_to_rollback": 2, "max_error_rate": 0.05}
    with serve_store(rollout.store, tick_s=TICK_S, env=TRUSTING_USER_HEADER) as url:
        rollout.canary(FLAKY, weight, steps=(100,), interval_s=9, routing_salt=salt, **slo)
        flood = Poster(url, "/predict/iris", lambda i: {"inputs": [GOOD_ROW]}, lambda i: flood_key,
                       header=USER_HEADER)
        background = Poster(url, "/predict/iris", lambda i: {"inputs": [GOOD_ROW]}, lambda i: bystander,
                            header=USER_HEADER, pause_s=0.01)
        paced = PacedFailures(url, flood, victims)
        with flood, background, paced:
            wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the canary to leave")
            time.sleep(0.3)
    posted = flood.posted + background.posted + paced.posted
    assert not flood.errors and not background.errors and not paced.errors
    assert {p.status for p in posted} == {200}
    failed = [p for p in paced.posted if p.retried_from == FLAKY]
    assert failed and all(p.arm == "stable" for p in failed)
    canary_requests = sum(p.arm == "canary" for p in posted) + len(failed)
    print(f"\ndilution attack: {len(failed)} failures among {canary_requests} canary requests "
          f"({len(failed) / canary_requests:.2%}) from {len(victims)} sources, flood of {len(flood.posted)}")
    assert len(failed) / canary_requests < slo["max_error_rate"]  # per request the canary passes
    record = rollout.deployment()
    assert record.version == STABLE and record.canary is None
    assert not rollout.audit_actions("promote") and not rollout.audit_actions("canary_step")
    assert record.last_rollback["kind"] == "canary" and record.last_rollback["causes"] == ["error_rate"]
    figures = record.last_rollback["figures"]
    assert figures["candidate_error_rate"] <= slo["max_error_rate"] < figures["candidate_source_error_rate"]
    assert figures["candidate_sources"] >= 3 and figures["candidate_failing_sources"] >= 2
    assert "per source" in record.last_rollback["reasons"][0]


class PacedFailures(Poster):
    """Poisoned rows from the victim sources in turn, sent only while the poisoned requests stay under 2.5% of all
    the canary's requests so far (the flood's, and these)."""

    def __init__(self, url: str, flood: Poster, victims: list[str]) -> None:
        super().__init__(url, "/predict/iris", lambda i: {"inputs": [POISONED_ROW]},
                         lambda i: victims[i % len(victims)], header=USER_HEADER)
        self.flood = flood

    def _run(self) -> None:
        sent = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stopped():
                if (sent + 1) / (len(self.flood.posted) + sent + 1) > 0.025:
                    time.sleep(0.005)
                    continue
                key = self.key(sent)
                started = time.monotonic()
                try:
                    response = client.post(self.path, json=self.body(sent), headers={self.header: key})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.posted.append(Posted(started, time.monotonic(), response.status_code, key, response.json()))
                sent += 1
