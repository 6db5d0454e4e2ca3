"""Per-group metrics and their gaps, and noise sensitivity, on real exported models run in onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge

from governance.fairness import group_report
from governance.holdout import read_holdout
from governance.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from governance.predictions import load_model
from governance.robustness import noise_sensitivity_rows, noisy_features
from tests.governance.conftest import IRIS_NAMES, export, holdout_csv

pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")


@pytest.fixture
def iris_measured(store, tmp_path, iris):
    x_train, y_train, x_hold, y_hold = iris
    metadata = export(store, LogisticRegression(max_iter=1000).fit(x_train, y_train), "iris", x_hold, labels=IRIS_NAMES)
    sites = np.where(x_hold[:, 0] > np.median(x_hold[:, 0]), "long", "short")  # groups that differ in difficulty
    path = holdout_csv(tmp_path / "h.csv", x_hold, np.array(IRIS_NAMES)[y_hold], extra={"sepals": sites})
    holdout = read_holdout(path, "y", "sepals", metadata)
    model = load_model(store, "iris", "v1.0.0")
    return holdout, model, model.predict(holdout.features)


def test_per_group_metrics_are_sklearn_on_each_group_and_gaps_are_max_minus_min(iris_measured):
    holdout, _, predictions = iris_measured
    changes = np.arange(holdout.rows, dtype=np.float64) % 2  # any per-row figure: its per-group mean is reported

    report = group_report(CLASSIFICATION_METRICS, holdout.labels, predictions, holdout.groups,
                          {"noise_sensitivity": changes})

    assert sorted(report.groups) == ["long", "short"]
    for group, figures in report.groups.items():
        rows = holdout.groups == group
        assert figures["accuracy"] == skm.accuracy_score(holdout.labels[rows], predictions.labels[rows])
        assert figures["f1"] == skm.f1_score(holdout.labels[rows], predictions.labels[rows], average="macro",
                                             zero_division=0)
        assert figures["noise_sensitivity"] == changes[rows].mean()
    accuracy = [figures["accuracy"] for figures in report.groups.values()]
    assert report.gaps["accuracy"] == max(accuracy) - min(accuracy) == report.fairness_delta
    assert report.fairness_delta > 0  # the long-sepal flowers are the harder ones
    # setosa has short sepals only: one-vs-rest ROC AUC is undefined among the long ones, and said so
    assert "roc_auc" not in report.groups["long"] and "roc_auc in group 'long'" in report.omitted
    assert "roc_auc" not in report.gaps


def test_a_single_group_has_no_fairness_delta(iris_measured):
    holdout, _, predictions = iris_measured
    report = group_report(CLASSIFICATION_METRICS, holdout.labels, predictions, np.full(holdout.rows, "all"))
    assert report.fairness_delta is None and report.gaps == {} and "fairness_delta" in report.omitted


def test_noise_sensitivity_is_deterministic_with_the_seed_and_grows_with_the_noise(iris_measured):
    holdout, model, predictions = iris_measured

    def sensitivity(scale, seed):
        return noise_sensitivity_rows(model, holdout.features, predictions, scale=scale, seed=seed).mean()

    assert sensitivity(0.5, 0) == sensitivity(0.5, 0)
    assert sensitivity(0.0, 0) == 0.0
    assert 0 < sensitivity(0.5, 0) < sensitivity(3.0, 0) <= 1
    first, second = noisy_features(holdout.features, scale=0.05, seed=0), noisy_features(holdout.features, scale=0.05, seed=1)
    assert not np.array_equal(first["input"], second["input"])
    # the noise is 5% of each feature's standard deviation
    drift = (first["input"] - holdout.features["input"]).astype(np.float64).std(axis=0)
    np.testing.assert_allclose(drift, 0.05 * holdout.features["input"].astype(np.float64).std(axis=0), rtol=0.35)


def test_regressor_noise_sensitivity_is_the_mean_relative_change(store, tmp_path, diabetes):
    x_train, y_train, x_hold, y_hold = diabetes
    export(store, Ridge().fit(x_train, y_train), "ridge", x_hold)
    metadata = store.read_metadata("ridge", "v1.0.0")
    holdout = read_holdout(holdout_csv(tmp_path / "h.csv", x_hold, y_hold, extra={"sex": x_hold[:, 1] > 0}),
                           "y", "sex", metadata)
    model = load_model(store, "ridge", "v1.0.0")
    clean = model.predict(holdout.features)

    per_row = noise_sensitivity_rows(model, holdout.features, clean, scale=0.05, seed=0)
    moved = model.predict(noisy_features(holdout.features, scale=0.05, seed=0)).values

    np.testing.assert_array_equal(per_row, np.abs(moved - clean.values) / np.abs(clean.values))
    assert 0 < per_row.mean() < 0.1
    report = group_report(REGRESSION_METRICS, holdout.labels, clean, holdout.groups)
    maes = [skm.mean_absolute_error(holdout.labels[holdout.groups == g], clean.values[holdout.groups == g])
            for g in ("False", "True")]
    assert report.fairness_delta == report.gaps["mae"] == max(maes) - min(maes)
