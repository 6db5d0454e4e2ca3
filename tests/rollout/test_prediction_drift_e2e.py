"""The prediction-drift guardrail end to end: a real `onnxgate serve` judging a canary whose answers have the usual
latency and no errors, only another class distribution (a model trained on relabelled data), and one that predicts
like stable.

Every request carries the same batch of rows, so both arms predict on the same inputs and the distance the judge
measures is known beforehand from the weights (numpy): the canary that maps each class k to k + 1 moves the class
shares by a total variation distance of about 0.26; the copy of stable, by exactly 0. Asserted on what the judge
recorded, with generous deadlines, never on timing."""
from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.guardrails import prediction_distance
from tests.factories import classifier_expected
from tests.rollout.gateway_fixtures import (
    STABLE,
    Poster,
    RolloutStore,
    build_rollout_store,
    publish_copy_of_stable,
    publish_relabelled,
    serve_store,
    wait_until,
)

pytestmark = pytest.mark.e2e

RELABELLED, SAME = "v2.0.0", "v2.1.0"
BATCH = np.random.default_rng(7).normal(scale=3.0, size=(20, 4)).round(3).astype(np.float32)
# Judged every second, on at least 100 predicted rows (5 requests of 20) per arm; latency far out of the way.
SLO = {"window_s": 1.0, "min_requests": 5, "breaches_to_rollback": 2, "max_latency_ratio": 100.0,
       "max_prediction_distance": 0.1, "min_prediction_rows": 100}
DEADLINE_S = 90.0


def shares(weights: tuple[np.ndarray, np.ndarray]) -> dict[str, int]:
    labels = classifier_expected(weights, BATCH)[0]
    return {str(label): int(count) for label, count in zip(*np.unique(labels, return_counts=True), strict=True)}


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    rollout = build_rollout_store(tmp_path / "models")
    publish_relabelled(rollout, RELABELLED)
    publish_copy_of_stable(rollout, SAME)
    return rollout


def batches(url: str) -> Poster:
    return Poster(url, "/predict/iris", lambda i: {"inputs": BATCH.tolist()}, lambda i: f"user-{i}")


def test_a_canary_predicting_another_class_distribution_is_rolled_back_for_prediction_drift(rollout: RolloutStore):
    expected = prediction_distance(shares(rollout.weights[RELABELLED]), shares(rollout.weights[STABLE]))
    assert expected > 0.2  # the rows really tell the two apart (numpy, from the weights)
    with serve_store(rollout.store, tick_s=0.1) as url, batches(url) as load:
        rollout.canary(RELABELLED, 50, **SLO)
        wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the rollback for prediction drift")
        wait_until(lambda: "last_rollback" in (httpx.get(url + "/health").json()["models"][0].get("rollout") or {}),
                   DEADLINE_S, "/health to show the rollback")
        health = httpx.get(url + "/health").json()
    assert not load.errors and {p.status for p in load.posted} == {200}
    answered = [p for p in load.posted if p.arm == "canary"]
    assert answered, "the canary never answered"
    assert all(p.answer["version"] == RELABELLED for p in answered)

    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["kind"] == "canary"
    assert record.last_rollback["from"] == RELABELLED and record.last_rollback["causes"] == ["prediction_drift"]
    figures = record.last_rollback["figures"]
    assert figures["prediction_distance"] == pytest.approx(expected, abs=1e-4)
    assert figures["max_prediction_distance"] == 0.1 and figures["min_prediction_rows"] == 100
    assert min(figures["candidate_prediction_rows"], figures["reference_prediction_rows"]) >= 100
    [entry] = rollout.audit_actions("canary_rollback")
    assert entry["actor"].startswith("gateway@") and "total variation distance" in entry["reason"]
    assert entry["details"]["causes"] == ["prediction_drift"]
    assert entry["details"]["figures"]["prediction_distance"] == figures["prediction_distance"]
    assert health["models"][0]["rollout"]["last_rollback"]["causes"] == ["prediction_drift"]


def test_a_canary_predicting_like_stable_is_not_rolled_back_for_prediction_drift(rollout: RolloutStore):
    judged: list[dict] = []

    def compared() -> bool:
        rollout_report = httpx.get(url + "/health").json()["models"][0].get("rollout") or {}
        verdict = rollout_report.get("last_verdict")
        if (verdict is not None and verdict["figures"].get("prediction_distance") is not None
                and (not judged or verdict != judged[-1])):  # a new window's verdict
            judged.append(verdict)
        return len(judged) >= 3

    with serve_store(rollout.store, tick_s=0.1) as url, batches(url):
        rollout.canary(SAME, 50, **SLO)
        wait_until(compared, DEADLINE_S, "three verdicts that compared the predicted classes")
    for verdict in judged:
        assert verdict["figures"]["prediction_distance"] == 0.0
        assert not any("predicted classes differ" in reason for reason in verdict["reasons"])
        assert min(verdict["figures"]["candidate_prediction_rows"], verdict["figures"]["reference_prediction_rows"]) \
            >= 100
    assert rollout.deployment().canary is not None and rollout.deployment().canary.version == SAME
    assert rollout.audit_actions("canary_rollback") == []


def test_two_workers_each_judge_their_share_and_the_rollback_is_recorded_once(rollout: RolloutStore):
    # As with latency and errors: each worker counts and judges the classes of the traffic it served; whichever
    # reaches the breach first records the rollback, the other converges through its change feed.
    with serve_store(rollout.store, workers=2, slo={"window_s": 2.0}, tick_s=0.1) as url:
        clients = [batches(url) for _ in range(3)]  # three connections: spread over the workers by the kernel
        with clients[0], clients[1], clients[2]:
            rollout.canary(RELABELLED, 50, **{**SLO, "window_s": 2.0})
            wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the rollback for prediction drift")
    assert not any(c.errors for c in clients)
    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["causes"] == ["prediction_drift"]
    assert record.last_rollback["figures"]["prediction_distance"] > 0.1
    [entry] = rollout.audit_actions("canary_rollback")  # both workers judged; the registry changed once
    assert entry["details"]["causes"] == ["prediction_drift"]
