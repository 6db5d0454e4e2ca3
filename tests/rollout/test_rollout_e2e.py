"""The rollout end to end: a real gateway (`onnxgate serve`, one worker or two, in its own process), clients driving load
over loopback, canaries that are really slow (an ONNX Loop doing real work) or really fail (onnxruntime FAIL at run
time), and the gateway's own judge rolling them back, stepping them up or baking them.

Run with `-s` to see the measured times (also recorded as junit properties). The tests assert on what happened and
in which order (who decided, on which figures, which requests the canary answered), with generous deadlines, never
on how fast: a loaded machine makes everything slower, not different."""
from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.traffic import bucket, threshold
from modelstore.deployments import Change
from modelstore.rollout import new_routing_salt, promote
from onnxgate.__main__ import main
from tests.factories import ClientThreads
from tests.rollout.gateway_fixtures import (
    FLAKY,
    GOOD_ROW,
    OTHER,
    POISONED_ROW,
    SLOW,
    STABLE,
    RolloutStore,
    build_rollout_store,
    serve_store,
    wait_until,
)

pytestmark = pytest.mark.e2e

# Short windows so that each test takes seconds: judged every second, 5 requests make a window conclusive.
SLO = {"window_s": 1.0, "min_requests": 5, "breaches_to_rollback": 2}
TICK_S = 0.1
DEADLINE_S = 90.0  # for events that take seconds here: only a broken rollout takes this long


@dataclass(frozen=True)
class Reply:
    started: float
    finished: float
    status: int
    version: str | None
    arm: str | None
    key: str
    poisoned: bool
    retried_from: str | None = None


class Load(ClientThreads):
    """Client threads posting /predict with a fresh routing key per request. `poison(i)` says which requests carry
    a row the FLAKY version fails on; `fresh_every` opens a new connection every so many requests (so that several
    server workers share the load)."""

    join_s = 15.0

    def __init__(self, url: str, *, threads: int = 2, poison: Callable[[int], bool] = lambda i: False,
                 keys: Callable[[int], str] = lambda i: f"user-{i}", fresh_every: int = 0) -> None:
        super().__init__(url, [()] * threads)
        self.replies: list[Reply] = []
        self._poison, self._keys, self._fresh_every = poison, keys, fresh_every
        self._counter = itertools.count()

    def _run(self) -> None:
        client = httpx.Client(base_url=self.url, timeout=10)
        sent = 0
        while not self.stopped():
            index = next(self._counter)
            key, poisoned = self._keys(index), self._poison(index)
            started = time.monotonic()
            try:
                response = client.post("/predict/iris", json={"inputs": [POISONED_ROW if poisoned else GOOD_ROW]},
                                       headers={"X-Routing-Key": key})
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
                continue
            body = response.json()
            self.replies.append(Reply(started, time.monotonic(), response.status_code, body.get("version"),
                                      body.get("arm"), key, poisoned, body.get("retried_from")))
            sent += 1
            if self._fresh_every and sent % self._fresh_every == 0:
                client.close()
                client = httpx.Client(base_url=self.url, timeout=10)
        client.close()

    def canary_replies(self) -> list[Reply]:
        return [r for r in self.replies if r.arm == "canary"]


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    return build_rollout_store(tmp_path / "models")


def serve(rollout: RolloutStore, *, workers: int = 1, slo: dict | None = None) -> contextlib.AbstractContextManager[str]:
    """`onnxgate serve` on the rollout store, judging every TICK_S."""
    return serve_store(rollout.store, workers=workers, slo=slo, tick_s=TICK_S)


def test_slow_canary_is_rolled_back_within_the_windows_and_clients_see_no_error(
        rollout: RolloutStore, record_property: pytest.RecordProperty):
    with serve(rollout) as url, Load(url, threads=4) as load:
        time.sleep(0.5)
        rollout.canary(SLOW, 20, **SLO)
        rolled_back_at = wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the automatic rollback")
        time.sleep(0.5)
        health = httpx.get(url + "/health").json()
        metrics = httpx.get(url + "/metrics").text
    canary = load.canary_replies()
    assert canary, "the canary never answered"
    breach_started = canary[0].started
    last_canary_answer = max(r.started for r in canary)
    to_stop = last_canary_answer - breach_started
    to_record = rolled_back_at - breach_started
    record_property("breach_to_routing_stop_s", round(to_stop, 3))
    record_property("breach_to_registry_rollback_s", round(to_record, 3))
    record_property("requests_served_by_bad_canary", len(canary))
    print(f"\nslow canary: routing stopped {to_stop:.2f} s after its first request, rollback recorded after "
          f"{to_record:.2f} s; {len(canary)} of {len(load.replies)} requests answered by it")

    assert not load.errors and {r.status for r in load.replies} == {200}
    # the worker withholds the canary before it records the rollback: no request sent after the record reached it
    assert last_canary_answer < rolled_back_at
    assert any(r.started > rolled_back_at for r in load.replies), "no request after the rollback to check"
    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["kind"] == "canary"
    assert record.last_rollback["causes"] == ["latency"]
    figures = record.last_rollback["figures"]
    assert figures["candidate_latency_ms"] > figures["latency_limit_ms"] >= figures["reference_latency_ms"]
    [entry] = rollout.audit_actions("canary_rollback")
    assert entry["actor"].startswith("gateway@") and "latency" in entry["reason"]
    assert entry["details"]["figures"]["candidate_version"] == SLOW
    [model] = health["models"]
    assert model["rollout"]["last_rollback"]["from"] == SLOW
    assert 'rollbacks_total{cause="latency",environment="production",kind="canary",model="iris"} 1.0' in metrics


def test_failing_canary_is_rolled_back_and_stable_answered_the_requests_it_failed(
        rollout: RolloutStore, record_property: pytest.RecordProperty):
    weight = 30
    with serve(rollout) as url, Load(url, poison=lambda i: i % 3 == 0) as load:
        time.sleep(0.5)
        rollout.canary(FLAKY, weight, **SLO)
        rolled_back_at = wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the automatic rollback")
        time.sleep(1.0)
    retried = [r for r in load.replies if r.retried_from is not None]
    canary = load.canary_replies()
    assert retried, "the failing canary never failed a request"
    assert not load.errors and {r.status for r in load.replies} == {200}
    # every request the canary failed was a poisoned row routed (by its key's bucket) to it, answered by stable
    salt = rollout.deployment().routing_salt
    assert all(r.poisoned and bucket(r.key, salt) < threshold(weight) for r in retried)
    assert {(r.retried_from, r.arm, r.version) for r in retried} == {(FLAKY, "stable", STABLE)}
    assert all(r.arm == "stable" and r.retried_from is None for r in load.replies if r.started > rolled_back_at)
    first_failure = min(r.started for r in retried)
    record_property("breach_to_registry_rollback_s", round(rolled_back_at - first_failure, 3))
    record_property("requests_failed_by_bad_canary", len(retried))
    print(f"\nfailing canary: rollback recorded {rolled_back_at - first_failure:.2f} s after the first failure; "
          f"{len(canary)} answered and {len(retried)} failed by it (answered by stable), of {len(load.replies)} "
          "requests")
    record = rollout.deployment()
    assert record.last_rollback["causes"][0] == "error_rate"
    assert record.last_rollback["figures"]["candidate_error_rate"] > 0.01
    assert [e["before"] for e in rollout.audit_actions("canary_rollback")] == [FLAKY]


def test_healthy_canary_climbs_its_steps_and_is_promoted(rollout: RolloutStore):
    # A latency limit wide enough that a busy machine's noisy p95 never breaches two 1 s windows in a row (this test is
    # about the steps; the slow-canary and bake tests judge latency)
    slo = {**SLO, "max_latency_ratio": 20}
    with serve(rollout) as url, Load(url) as load:
        time.sleep(0.3)
        rollout.canary(OTHER, 25, steps=(50, 100), interval_s=1, **slo)
        started = time.monotonic()
        promoted_at = wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the promotion")
        promoted_after = promoted_at - started
        assert rollout.deployment().version == OTHER, rollout.deployment().last_rollback
        switched_at = wait_until(lambda: len(load.replies) > 20 and all(
            (r.version, r.arm) == (OTHER, "stable") for r in load.replies[-20:]), DEADLINE_S, "the switch to stable")
        time.sleep(0.3)
    print(f"\nsteps 25 -> 50 -> 100 with 1 s intervals: promoted after {promoted_after:.1f} s")
    record = rollout.deployment()
    assert record.version == OTHER and record.previous_version == STABLE and record.bake is not None
    [step] = rollout.audit_actions("canary_step")
    assert step["details"] == {"weight_from": 25.0, "weight_to": 50.0} and step["actor"].startswith("gateway@")
    [promotion] = rollout.audit_actions("promote")
    assert promotion["details"]["via"] == "steps" and promotion["after"] == OTHER
    assert not load.errors and {r.status for r in load.replies} == {200}
    assert {(r.version, r.arm) for r in load.replies if r.started > switched_at} == {(OTHER, "stable")}
    canary = load.canary_replies()
    assert canary and {r.version for r in canary} == {OTHER}
    salt = rollout.deployment().routing_salt  # kept through the promotion
    assert all(bucket(r.key, salt) < threshold(50) for r in canary)  # never more than the top step's share before 100


def test_version_that_breaches_during_its_bake_is_rolled_back_to_the_one_it_replaced(rollout: RolloutStore):
    # Keys that the 1% canary never takes: stable gets all traffic and the judge keeps its figures as the baseline.
    salt = new_routing_salt()
    stable_keys = (key for i in itertools.count() if bucket(key := f"user-{i}", salt) >= threshold(1))
    with serve(rollout) as url, Load(url, keys=lambda i: next(stable_keys)) as load:
        rollout.canary(SLOW, 1, bake_s=60, routing_salt=salt, **SLO)
        time.sleep(2.5)  # two judged windows with the canary running: stable's figures are kept
        assert not load.canary_replies()
        promote(rollout.store, "iris", "production", Change(actor="tests", reason="promote without waiting"))
        promoted_at = time.monotonic()
        rolled_back_at = wait_until(lambda: rollout.deployment().version == STABLE, DEADLINE_S, "the bake rollback")
        time.sleep(0.5)
    print(f"\nbake: {SLOW} rolled back {rolled_back_at - promoted_at:.2f} s after its promotion")
    record = rollout.deployment()
    assert record.last_rollback["kind"] == "bake" and record.last_rollback["from"] == SLOW
    [entry] = rollout.audit_actions("bake_rollback")
    assert entry["actor"].startswith("gateway@") and entry["after"] == STABLE
    assert not load.errors and {r.status for r in load.replies} == {200}
    assert {r.version for r in load.replies if r.started > rolled_back_at} == {STABLE}


def test_two_workers_converge_on_one_rollback(rollout: RolloutStore):
    # Each worker judges its own share of the traffic; on a loaded machine a slow canary throttles the clients to a
    # few requests a second, so each judge needs longer windows than 1 s to see the minimum of requests in them.
    root = str(rollout.store.root)
    with serve(rollout, workers=2, slo={**SLO, "window_s": 3.0}) as url:
        with Load(url, threads=3, fresh_every=5) as load:
            time.sleep(0.5)
            assert main(["canary", "iris", SLOW, "--env", "production", "--weight", "30", "--store", root,
                         "--actor", "tests", "--reason", "two workers"]) == 0
            wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the automatic rollback")
            # the worker that did not decide converges through its change feed: 30 answers in a row from stable
            converged_at = wait_until(lambda: len(load.replies) > 30 and all(
                r.arm == "stable" for r in load.replies[-30:]), DEADLINE_S, "both workers to converge")
            time.sleep(0.5)
        # converged: 20 fresh connections in a row (spread over both workers) answer stable
        for _ in range(20):
            with httpx.Client(base_url=url) as fresh:
                body = fresh.post("/predict/iris", json={"inputs": [GOOD_ROW]},
                                  headers={"X-Routing-Key": "user-7"}).json()
                assert (body["version"], body["arm"]) == (STABLE, "stable")
    assert load.canary_replies(), "the canary never answered"
    assert not load.errors and {r.status for r in load.replies} == {200}
    assert not any(r.arm == "canary" for r in load.replies if r.started > converged_at)
    [entry] = rollout.audit_actions("canary_rollback")  # both workers judged; the registry changed once
    assert entry["actor"].startswith("gateway@")
    assert rollout.store.registry.audit.verify() > 0
