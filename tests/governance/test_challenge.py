"""`onnxgate challenge` as a user runs it: real scikit-learn models exported to ONNX, a real holdout CSV, a real
process per command. The challenger wins, loses on margin, loses on significance; the first model of a name; a
winner the gates hold; lower-is-better metrics inverted."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from exporters.publish import PublishOptions, export_sklearn
from governance.holdout import read_holdout
from governance.predictions import predict
from modelstore.deployments import deploy
from modelstore.replay import replay, same_registry
from tests.governance.conftest import CANCER_NAMES, holdout_csv
from tests.governance.gate_fixtures import GATE_EXIT, audit, onnxgate

LOST_EXIT = 9
TEXTURE = 1  # mean texture: a weak predictor of the diagnosis on its own


def publish(store, model, version: str, sample: np.ndarray, **options) -> None:
    export_sklearn(store, model, name="cancer", version=version, sample=sample, labels=options.pop("labels", None),
                   options=PublishOptions(check_node=False, **options))


def only_feature(x: np.ndarray, index: int) -> np.ndarray:
    kept = np.zeros_like(x)
    kept[:, index] = x[:, index]
    return kept


@pytest.fixture
def cancer_store(store, tmp_path, cancer):
    """v1.0.0: a logistic regression that learned from the texture alone (the champion once deployed); v2.0.0: one
    that learned from every feature. Both take all 30 features."""
    x_train, y_train, x_hold, y_hold = cancer
    weak = LogisticRegression(max_iter=5000).fit(only_feature(x_train, TEXTURE), y_train)
    strong = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    publish(store, weak, "v1.0.0", x_hold, labels=CANCER_NAMES, training_samples=len(x_train))
    publish(store, strong, "v2.0.0", x_hold, labels=CANCER_NAMES, training_samples=len(x_train))
    data = holdout_csv(tmp_path / "holdout.csv", x_hold, np.array(CANCER_NAMES)[y_hold], label="diagnosis")
    return store, data


def challenge(store, data, version: str = "v2.0.0", *args: str) -> tuple[int, dict | None, str]:
    result = onnxgate(store, "challenge", "cancer", version, "--env", "production", "--data", str(data), "--label",
                      "diagnosis", "--json", "--actor", "trainer", *args)
    printed = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, printed, result.stderr


def state(store):
    return store.registry.read().state


def test_a_challenger_that_is_really_better_wins_and_starts_a_canary(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")

    code, printed, stderr = challenge(store, data)

    assert code == 0, stderr
    decided = printed["challenge"]
    assert decided["decision"] == "won" and decided["metric"] == "f1"
    assert decided["challenger_value"] >= 1.05 * decided["champion_value"]
    assert decided["margin"]["met"] and decided["margin"]["improvement"] >= 0.05
    interval = decided["significance"]["interval"]
    assert interval["low"] > 0 and interval["resamples"] == 1000 and interval["confidence"] == 0.95
    deployment = state(store).deployment("cancer", "production")
    assert deployment.version == "v1.0.0" and deployment.canary.version == "v2.0.0"
    assert deployment.canary.weight == 10  # no policy: the default plan
    [entry] = audit(store, "challenge_decided")
    assert entry["details"] == decided and entry["actor"] == "trainer"
    assert set(entry["details"]["champion_metrics"]) >= {"accuracy", "f1", "roc_auc"}
    assert entry["details"]["challenger_metrics"]["f1"] == decided["challenger_value"]
    # the challenger's measured figures are recorded with it, for the gates
    assert state(store).models["cancer"]["v2.0.0"].evaluation.metrics == decided["challenger_metrics"]
    events = [e["event"] for e in audit(store)]
    assert events[-3:] == ["model_evaluated", "challenge_decided", "deployment_initiated"]
    assert same_registry(replay(store.registry.audit.entries()), state(store))


def test_the_deciding_figures_are_the_metric_on_both_models_predictions(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")

    code, printed, stderr = challenge(store, data, "v2.0.0", "--metric", "accuracy")

    assert code == 0, stderr
    decided = printed["challenge"]
    metadata = store.read_metadata("cancer", "v2.0.0")
    holdout = read_holdout(data, "diagnosis", None, metadata)
    right = {version: predict(store, "cancer", version, holdout.features).labels == holdout.labels
             for version in ("v1.0.0", "v2.0.0")}
    assert decided["champion_value"] == right["v1.0.0"].mean()
    assert decided["challenger_value"] == right["v2.0.0"].mean()
    test = decided["significance"]["mcnemar"]
    assert test["only_challenger"] == int((right["v2.0.0"] & ~right["v1.0.0"]).sum())
    assert test["only_champion"] == int((right["v1.0.0"] & ~right["v2.0.0"]).sum())
    assert test["p_value"] < 0.05 and decided["significance"]["significant"]


def test_a_challenger_short_of_the_margin_loses_and_is_recorded_as_rejected(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")

    code, printed, stderr = challenge(store, data, "v2.0.0", "--min-improvement", "0.5")

    assert code == LOST_EXIT, stderr
    decided = printed["challenge"]
    assert decided["decision"] == "rejected"
    assert decided["significance"]["significant"]  # really better, but not by half again
    assert not decided["margin"]["met"] and decided["margin"]["improvement"] < 0.5
    assert "did not beat v1.0.0" in stderr and "needs >= +50.00%: not met" in stderr
    assert state(store).deployment("cancer", "production").canary is None
    [entry] = audit(store, "challenge_decided")
    assert entry["details"]["decision"] == "rejected"
    assert entry["details"]["champion_value"] == decided["champion_value"]


def test_a_lead_the_holdout_cannot_show_is_not_significant_and_loses(cancer_store, tmp_path, cancer):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")
    _, _, x_hold, _ = cancer
    holdout = read_holdout(data, "diagnosis", None, store.read_metadata("cancer", "v2.0.0"))
    truth = holdout.labels
    right = {version: predict(store, "cancer", version, holdout.features).labels == truth
             for version in ("v1.0.0", "v2.0.0")}
    both = np.flatnonzero(right["v1.0.0"] & right["v2.0.0"])
    only_challenger = np.flatnonzero(right["v2.0.0"] & ~right["v1.0.0"])
    only_champion = np.flatnonzero(right["v1.0.0"] & ~right["v2.0.0"])
    rows = np.concatenate([both[:17], only_challenger[:2], only_champion[:1]])  # 19/20 against 18/20
    small = holdout_csv(tmp_path / "small.csv", x_hold[rows], truth[rows], label="diagnosis")

    code, printed, stderr = challenge(store, small, "v2.0.0", "--metric", "accuracy")

    assert code == LOST_EXIT, stderr
    decided = printed["challenge"]
    assert (decided["champion_value"], decided["challenger_value"]) == (0.9, 0.95)
    assert decided["margin"]["met"]  # +5.6% on these 20 rows ...
    assert not decided["significance"]["significant"]  # ... but 2 rows against 1 is no evidence
    assert decided["significance"]["mcnemar"]["p_value"] == 1.0
    assert decided["significance"]["interval"]["low"] <= 0
    assert decided["decision"] == "rejected"
    assert state(store).deployment("cancer", "production").canary is None


def test_the_first_model_of_a_name_wins_when_it_clears_the_gates(cancer_store):
    store, data = cancer_store
    store.policy_path.write_text("[environments.production]\nmin_metrics = { accuracy = 0.9 }\n")

    code, printed, stderr = challenge(store, data, "v1.0.0")  # measured: the texture alone is not enough

    assert code == GATE_EXIT, stderr
    assert printed["challenge"]["decision"] == "first" and printed["challenge"]["champion"] is None
    assert "accuracy = " in stderr and "(measured), needs >= 0.9" in stderr
    assert state(store).deployment("cancer", "production") is None
    assert [e["event"] for e in audit(store)][-3:] == ["model_evaluated", "challenge_decided", "deployment_denied"]

    result = onnxgate(store, "challenge", "cancer", "v2.0.0", "--env", "production", "--data", str(data), "--label",
                      "diagnosis")  # the text output

    assert result.returncode == 0, result.stderr
    assert "first model in production" in result.stdout and "deployed cancer v2.0.0 to production" in result.stdout
    assert "ok  accuracy = " in result.stdout
    assert state(store).deployment("cancer", "production").version == "v2.0.0"


def test_a_winner_the_gates_hold_starts_no_canary_until_approved_then_follows_the_policy_plan(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")
    store.policy_path.write_text("[environments.production]\napprovals = 1\n"
                                 "canary = { weight = 20, steps = [50, 100], interval_s = 600 }\n")

    code, printed, stderr = challenge(store, data)

    assert code == GATE_EXIT, stderr
    assert printed["challenge"]["decision"] == "won"
    assert "approvals = pending" in stderr
    assert state(store).deployment("cancer", "production").canary is None

    assert onnxgate(store, "approve", "cancer", "v2.0.0", "--env", "production", "--actor", "reviewer").returncode == 0
    code, printed, stderr = challenge(store, data)

    assert code == 0, stderr
    canary = state(store).deployment("cancer", "production").canary
    assert (canary.version, canary.weight, canary.steps, canary.interval_s) == ("v2.0.0", 20, [50, 100], 600)
    assert printed["outcome"]["checks"][0]["passed"]
    assert [e["details"]["decision"] for e in audit(store, "challenge_decided")] == ["won", "won"]


def test_a_dry_run_decides_and_asks_the_gates_but_changes_nothing(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")
    before = store.registry_path.read_bytes()

    code, printed, stderr = challenge(store, data, "v2.0.0", "--dry-run", "--weight", "5")

    assert code == 0, stderr
    assert printed["dry_run"] and printed["challenge"]["decision"] == "won"
    assert printed["outcome"]["details"]["weight"] == 5
    assert store.registry_path.read_bytes() == before


def test_refusals_name_the_problem(cancer_store):
    store, data = cancer_store
    deploy(store, "cancer", "v1.0.0", "production")

    code, _, stderr = challenge(store, data, "v1.0.0")
    assert code == 2 and "already the champion" in stderr
    code, _, stderr = challenge(store, data, "v2.0.0", "--metric", "rmse")
    assert code == 2 and "metric 'rmse' is not one of a classification model's" in stderr
    assert audit(store, "challenge_decided") == []


def test_a_lower_is_better_metric_is_inverted(store, tmp_path, diabetes):
    x_train, y_train, x_hold, y_hold = diabetes
    export_sklearn(store, Ridge(alpha=100.0).fit(x_train, y_train), name="sugar", version="v1.0.0", sample=x_hold,
                   options=PublishOptions(check_node=False))
    export_sklearn(store, LinearRegression().fit(x_train, y_train), name="sugar", version="v2.0.0", sample=x_hold,
                   options=PublishOptions(check_node=False))
    deploy(store, "sugar", "v1.0.0", "production")
    data = holdout_csv(tmp_path / "holdout.csv", x_hold, y_hold, label="progression")

    result = onnxgate(store, "challenge", "sugar", "v2.0.0", "--env", "production", "--data", str(data), "--label",
                      "progression", "--resamples", "400", "--seed", "3", "--json")

    assert result.returncode == 0, result.stderr
    decided = json.loads(result.stdout)["challenge"]
    assert decided["metric"] == "rmse" and decided["direction"] == "lower is better"
    assert decided["challenger_value"] < decided["champion_value"]
    improvement = decided["champion_value"] / decided["challenger_value"] - 1
    assert decided["margin"]["improvement"] == pytest.approx(improvement) and improvement >= 0.05
    interval = decided["significance"]["interval"]
    assert interval["low"] > 0  # the gain is the champion's error minus the challenger's
    assert (interval["resamples"], interval["seed"]) == (400, 3)
