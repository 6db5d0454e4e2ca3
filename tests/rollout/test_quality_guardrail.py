"""The quality guardrail through the gateway's seam: a real app (TestClient), real store and onnxruntime sessions, and a
quality source that joins the answers the clients really got with the true labels of their rows; and the whole path
as `onnxgate serve` runs it: answers captured, true labels sent to POST /feedback, the judge reading
monitoring.quality's join of the two.

The truth is stable's own rule (stable is right on every row), so a canary trained on relabelled data is wrong on
every row and a copy of stable right on every row; the judge sees each arm's measured accuracy by (version, arm)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.guardrails import ArmQuality
from tests.factories import IRIS_LABELS, classifier_expected
from tests.gateway.conftest import gateway_settings
from tests.rollout.gateway_fixtures import (
    STABLE,
    RolloutStore,
    build_rollout_store,
    publish_copy_of_stable,
    publish_relabelled,
    wait_until,
)

RELABELLED, SAME = "v2.0.0", "v2.1.0"
# windows of whole seconds: the windows' slots are one second long
SLO = {"window_s": 1.0, "min_requests": 3, "breaches_to_rollback": 2, "max_latency_ratio": 100.0,
       "max_quality_drop": 0.05, "min_labels": 50}
DEADLINE_S = 60.0


class LabelledAnswers:
    """Every answer the client got, joined with its rows' true labels: per (version, arm), labelled rows and how many
    were right. Its `figures` is a quality source (gateway.quality_feed)."""

    def __init__(self, truth: tuple[np.ndarray, np.ndarray]) -> None:
        self.truth = truth
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.calls: list[tuple[str, str, float, str]] = []
        self._lock = threading.Lock()

    def add(self, rows: np.ndarray, answer: dict) -> None:
        truth = np.asarray(IRIS_LABELS)[classifier_expected(self.truth, rows)[0]]  # answers carry label names
        right = int((np.asarray(answer["outputs"]["label"]) == truth).sum())
        with self._lock:
            tally = self.counts.setdefault((answer["version"], answer["arm"]), [0, 0])
            tally[0] += len(rows)
            tally[1] += right

    def figures(self, model: str, environment: str, since_s: float) -> dict[tuple[str, str], ArmQuality]:
        self.calls.append((model, environment, since_s, threading.current_thread().name))
        with self._lock:
            return {key: ArmQuality(rows, right / rows) for key, (rows, right) in self.counts.items()}


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    rollout = build_rollout_store(tmp_path / "models")
    publish_relabelled(rollout, RELABELLED)
    publish_copy_of_stable(rollout, SAME)
    return rollout


@contextmanager
def labelled_traffic(client: TestClient, on_answer: Callable[[np.ndarray, dict], None], seed: int = 3) -> Iterator[None]:
    """Requests of 10 random rows from a thread, each answer handed to `on_answer(rows, answer)`, until the block ends."""
    stop = threading.Event()

    def send() -> None:
        rng = np.random.default_rng(seed)
        index = 0
        while not stop.is_set():
            rows = rng.normal(scale=3.0, size=(10, 4)).astype(np.float32)
            response = client.post("/predict/iris", json={"inputs": rows.tolist()},
                                   headers={"X-Routing-Key": f"user-{index}"})
            assert response.status_code == 200, response.text
            on_answer(rows, response.json())
            index += 1

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(30)


def app_for(rollout: RolloutStore, answers: LabelledAnswers) -> TestClient:
    settings = gateway_settings(rollout.store, "production", rollout_tick_s=0.05, quality_refresh_s=0.2,
                                routing_header="X-Routing-Key")
    return TestClient(create_app(settings, metrics_registry=CollectorRegistry(), quality_source=answers.figures))


def test_a_canary_less_accurate_than_stable_is_rolled_back_for_quality(rollout: RolloutStore):
    answers = LabelledAnswers(rollout.weights[STABLE])
    rollout.canary(RELABELLED, 50, **SLO)
    with app_for(rollout, answers) as client, labelled_traffic(client, answers.add):
        wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the rollback for quality")
        wait_until(lambda: "last_rollback" in (client.get("/health").json()["models"][0].get("rollout") or {}),
                   DEADLINE_S, "/health to show the rollback")
        health = client.get("/health").json()
    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["causes"] == ["quality"]
    figures = record.last_rollback["figures"]
    assert (figures["candidate_accuracy"], figures["reference_accuracy"]) == (0.0, 1.0)
    assert figures["quality_drop"] == 1.0 and figures["max_quality_drop"] == 0.05
    assert min(figures["candidate_labelled_rows"], figures["reference_labelled_rows"]) >= 50
    [entry] = rollout.audit_actions("canary_rollback")
    assert entry["actor"].startswith("gateway@") and "live accuracy" in entry["reason"]
    assert entry["details"]["causes"] == ["quality"]
    assert health["models"][0]["rollout"]["last_rollback"]["causes"] == ["quality"]
    # asked from the controller, off the event loop, about the canary's time so far
    assert answers.calls and all(call[:2] == ("iris", "production") and call[2] >= 0 for call in answers.calls)
    assert all(call[3] != threading.main_thread().name for call in answers.calls)


def test_a_canary_as_accurate_as_stable_is_judged_on_its_quality_and_kept(rollout: RolloutStore):
    answers = LabelledAnswers(rollout.weights[STABLE])
    judged: list[dict] = []
    rollout.canary(SAME, 50, **SLO)
    with app_for(rollout, answers) as client, labelled_traffic(client, answers.add):
        def compared() -> bool:
            verdict = (client.get("/health").json()["models"][0].get("rollout") or {}).get("last_verdict")
            if (verdict is not None and verdict["figures"].get("quality_drop") is not None
                    and (not judged or verdict != judged[-1])):  # a new window's verdict
                judged.append(verdict)
            return len(judged) >= 3

        wait_until(compared, DEADLINE_S, "verdicts that compared the arms' accuracy")
    for verdict in judged:
        figures = verdict["figures"]
        assert (figures["candidate_accuracy"], figures["reference_accuracy"], figures["quality_drop"]) == (1.0, 1.0, 0.0)
        assert not any("live accuracy" in reason for reason in verdict["reasons"])
    assert rollout.deployment().canary.version == SAME and rollout.audit_actions("canary_rollback") == []


def test_labels_sent_to_feedback_roll_a_less_accurate_canary_back(rollout: RolloutStore):
    """No stand-in: every answer captured (capture_rate 1), each request's true labels posted to /feedback by the
    client, and the gateway's default quality source joining them."""
    rollout.canary(RELABELLED, 50, **SLO)
    settings = gateway_settings(rollout.store, "production", rollout_tick_s=0.05, quality_refresh_s=0.2,
                                routing_header="X-Routing-Key", capture_rate=1.0)

    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        def send_labels(rows: np.ndarray, answer: dict) -> None:
            truth = np.asarray(IRIS_LABELS)[classifier_expected(rollout.weights[STABLE], rows)[0]]
            feedback = client.post("/feedback/iris", json=[{"id": answer["id"], "label": truth.tolist()}])
            assert feedback.status_code == 200, feedback.text

        with labelled_traffic(client, send_labels, seed=5):
            wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S * 2, "the rollback for quality")
        quality = client.get("/quality/iris?since=1h")
    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["causes"] == ["quality"]
    figures = record.last_rollback["figures"]
    assert (figures["candidate_accuracy"], figures["reference_accuracy"]) == (0.0, 1.0)
    assert min(figures["candidate_labelled_rows"], figures["reference_labelled_rows"]) >= SLO["min_labels"]
    assert quality.status_code == 200, quality.text
    arms = {(arm["version"], arm["arm"]): arm for arm in quality.json()["arms"]}
    assert arms[(RELABELLED, "canary")]["accuracy"] == 0.0 and arms[(STABLE, "stable")]["accuracy"] == 1.0
