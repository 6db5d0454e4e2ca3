"""Live quality: captured predictions joined with labels, per version and arm; the figures equal scikit-learn's on
the same rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error

from monitoring.feedback import Feedback, InvalidFeedback, append_labels, parse_feedback
from monitoring.quality import InvalidDuration, live_quality, parse_duration
from tests.factories import IRIS_LABELS
from tests.monitoring.conftest import classifier_metadata, regressor_metadata, write_records

NOW = 1_780_000_000.0
DAY = 86400.0


def classifier_outputs(class_ids: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"label": np.array([c]), "probabilities": np.full((1, 3), 1 / 3, dtype=np.float32)} for c in class_ids]


def test_accuracy_per_version_and_arm_equals_sklearn(tmp_path: Path):
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(120, 4)).astype(np.float32)
    predicted = rng.integers(0, 3, size=120)
    truth = np.where(rng.random(120) < 0.7, predicted, rng.integers(0, 3, size=120))
    ids = [f"req-{i}" for i in range(120)]
    stable, canary = slice(0, 80), slice(80, 120)
    write_records(tmp_path, classifier_metadata("v1.0.0"), "production", "stable", rows[stable],
                  classifier_outputs(predicted[stable]), ids[stable], NOW - 60)
    write_records(tmp_path, classifier_metadata("v2.0.0"), "production", "canary", rows[canary],
                  classifier_outputs(predicted[canary]), ids[canary], NOW - 60)
    names = np.array(IRIS_LABELS)
    labelled = list(range(0, 120, 2))  # half the requests get a label back
    append_labels(tmp_path, "iris", "production",
                  [Feedback(ids[i], "label", str(names[truth[i]])) for i in labelled]
                  + [Feedback("never-captured", "label", "setosa")], NOW - 30)

    report = live_quality(tmp_path, "iris", "production", DAY, now=NOW)

    assert (report.labels, report.matched, report.unknown_ids, report.unusable) == (61, 60, 1, 0)
    for version, arm, part in (("v1.0.0", "stable", stable), ("v2.0.0", "canary", canary)):
        chosen = [i for i in labelled if part.start <= i < part.stop]
        figures = report.arm(version, arm)
        assert figures.labelled_rows == len(chosen)
        assert figures.accuracy == pytest.approx(accuracy_score(names[truth[chosen]], names[predicted[chosen]]),
                                                 abs=1e-12)
        assert figures.rmse is None and figures.mae is None


def test_rmse_and_mae_equal_sklearn(tmp_path: Path):
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(50, 2)).astype(np.float32)
    predicted = rng.normal(10, 3, size=50).astype(np.float32)
    truth = predicted.astype(np.float64) + rng.normal(0, 1.5, size=50)
    ids = [f"r{i}" for i in range(50)]
    outputs = [{"variable": np.array([[p]], dtype=np.float32)} for p in predicted]
    write_records(tmp_path, regressor_metadata(), "production", "stable", rows, outputs, ids, NOW - 60)
    append_labels(tmp_path, "price", "production", [Feedback(i, "value", float(t)) for i, t in zip(ids, truth,
                                                                                                   strict=True)], NOW)
    figures = live_quality(tmp_path, "price", "production", DAY, now=NOW).arm("v1.0.0", "stable")
    as_served = predicted.astype(np.float64)  # what the captured record holds: the float32 output, exactly
    assert figures.labelled_rows == 50 and figures.accuracy is None
    assert figures.rmse == pytest.approx(np.sqrt(mean_squared_error(truth, as_served)), rel=1e-12)
    assert figures.mae == pytest.approx(mean_absolute_error(truth, as_served), rel=1e-12)


def test_the_window_and_the_last_label_per_id(tmp_path: Path):
    ids = ["old", "new"]
    write_records(tmp_path, classifier_metadata(), "production", "stable", np.zeros((1, 4), np.float32),
                  classifier_outputs(np.array([0])), ["old"], NOW - 3 * DAY)
    write_records(tmp_path, classifier_metadata(), "production", "stable", np.zeros((1, 4), np.float32),
                  classifier_outputs(np.array([0])), ["new"], NOW - 60)
    append_labels(tmp_path, "iris", "production", [Feedback(i, "label", "virginica") for i in ids], NOW - 50)
    append_labels(tmp_path, "iris", "production", [Feedback("new", "label", "setosa")], NOW - 40)  # corrected
    day = live_quality(tmp_path, "iris", "production", DAY, now=NOW)
    assert day.unknown_ids == 1 and day.arm("v1.0.0").labelled_rows == 1 and day.arm("v1.0.0").accuracy == 1.0
    week = live_quality(tmp_path, "iris", "production", 7 * DAY, now=NOW)
    assert week.unknown_ids == 0 and week.arm("v1.0.0").labelled_rows == 2 and week.arm("v1.0.0").accuracy == 0.5
    assert live_quality(tmp_path, "iris", "staging", DAY, now=NOW).arms == ()


@pytest.mark.parametrize("body", [
    {"id": "a", "label": 1}, [{"label": 1}], [{"id": "", "label": 1}], [{"id": "a b", "label": 1}],
    [{"id": "x" * 129, "label": 1}], [{"id": "a", "label": 1, "value": 2.0}], [{"id": "a"}],
    [{"id": "a", "value": "high"}], [{"id": "a", "value": float("nan")}], [{"id": "a", "label": None}],
    [{"id": "a", "label": []}], [{"id": "a", "label": 1, "extra": 0}], [{"id": 7, "label": 1}], ["a"],
])
def test_malformed_feedback_is_refused(body: object):
    with pytest.raises(InvalidFeedback):
        parse_feedback(body)


def test_durations():
    assert [parse_duration(t) for t in ("7d", "24h", "30m", "90s", "120", "1.5h", "2w")] == [
        7 * DAY, DAY, 1800, 90, 120, 5400, 14 * DAY]
    for text in ("", "0d", "7 days", "-1h", "h"):
        with pytest.raises(InvalidDuration):
            parse_duration(text)
