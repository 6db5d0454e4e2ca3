"""The metrics of real exported models, run in onnxruntime, equal scikit-learn's on the same predictions."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import LinearSVC

from governance.holdout import read_holdout
from governance.metrics import (
    classification_metrics,
    expected_calibration_error,
    measure,
    metric_of,
    regression_metrics,
)
from governance.predictions import Predictions, predict
from tests.governance.conftest import CANCER_NAMES, IRIS_NAMES, export, holdout_csv

# float32 probabilities, widened, sum to 1 within 1e-7, not exactly: scikit-learn says so, and uses them as they are
pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")


def measured(store, tmp_path, metadata, x, truth):
    holdout = read_holdout(holdout_csv(tmp_path / "holdout.csv", x, truth), "y", None, metadata)
    return holdout, predict(store, metadata.name, metadata.version, holdout.features)


def sklearn_classification(truth, labels, scores, classes):
    """scikit-learn on the same predictions, spelled out independently of governance.metrics."""
    index = {name: position for position, name in enumerate(classes)}
    truth_ids = np.array([index[t] for t in truth])
    if len(classes) == 2:
        averaging = {"average": "binary", "pos_label": classes[1]}
        roc_auc = skm.roc_auc_score(truth_ids == 1, scores[:, 1])
    else:
        averaging = {"average": "macro"}
        roc_auc = skm.roc_auc_score(truth_ids, scores, multi_class="ovr", average="macro")
    return {
        "accuracy": skm.accuracy_score(truth, labels),
        "precision": skm.precision_score(truth, labels, zero_division=0, **averaging),
        "recall": skm.recall_score(truth, labels, zero_division=0, **averaging),
        "f1": skm.f1_score(truth, labels, zero_division=0, **averaging),
        "roc_auc": roc_auc,
        "log_loss": skm.log_loss(truth_ids, scores, labels=list(range(len(classes)))),
    }


def test_binary_metrics_equal_sklearn(store, tmp_path, cancer):
    x_train, y_train, x_hold, y_hold = cancer
    model = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    metadata = export(store, model, "cancer", x_hold, labels=CANCER_NAMES)
    truth = np.array(CANCER_NAMES)[y_hold]

    holdout, predictions = measured(store, tmp_path, metadata, x_hold, truth)

    # the ONNX model's answers are the source model's (so the label mapping is right) ...
    x32 = x_hold.astype(np.float32).astype(np.float64)
    assert (predictions.labels == np.array(CANCER_NAMES)[model.predict(x32)]).mean() >= 0.99
    np.testing.assert_allclose(predictions.scores, model.predict_proba(x32), atol=1e-4)
    # ... and every metric is scikit-learn's on them
    figures = classification_metrics(holdout.labels, predictions)
    expected = sklearn_classification(truth, predictions.labels, predictions.scores, CANCER_NAMES)
    assert {name: figures[name] for name in expected} == expected
    assert 0.9 < figures["accuracy"] < 1.0 and 0 <= figures["ece"] < 0.2


@pytest.mark.parametrize(("family", "classes"), [
    ("logistic_named", IRIS_NAMES),              # class ids mapped through metadata.labels
    ("forest_string_classes", ["a", "b", "c"]),  # the graph's classlabels_strings
    ("forest_int_classes", ["1", "2", "5"]),     # the graph's classlabels_int64s, not 0..n-1
])
def test_multiclass_metrics_equal_sklearn(store, tmp_path, iris, family, classes):
    x_train, y_train, x_hold, y_hold = iris
    if family == "logistic_named":
        model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
        metadata = export(store, model, "iris", x_hold, labels=IRIS_NAMES)
    else:
        train_classes = np.array(classes if family == "forest_string_classes" else [1, 2, 5])
        model = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x_train, train_classes[y_train])
        metadata = export(store, model, "iris-forest", x_hold)
    truth = np.array(classes)[y_hold]

    holdout, predictions = measured(store, tmp_path, metadata, x_hold, truth)

    assert predictions.classes == classes and predictions.probabilities
    x32 = x_hold.astype(np.float32).astype(np.float64)
    assert (predictions.labels == np.array([str(c) for c in model.predict(x32)]) if family != "logistic_named"
            else predictions.labels == np.array(IRIS_NAMES)[model.predict(x32)]).mean() >= 0.99
    figures = classification_metrics(holdout.labels, predictions)
    expected = sklearn_classification(truth, predictions.labels, predictions.scores, classes)
    assert {name: figures[name] for name in expected} == expected


@pytest.mark.parametrize("family", ["ridge", "gradient_boosting"])
def test_regression_metrics_equal_sklearn(store, tmp_path, diabetes, family):
    x_train, y_train, x_hold, y_hold = diabetes
    model = (Ridge(alpha=0.5) if family == "ridge" else GradientBoostingRegressor(n_estimators=20, random_state=0))
    metadata = export(store, model.fit(x_train, y_train), family, x_hold)

    holdout, predictions = measured(store, tmp_path, metadata, x_hold, y_hold)

    np.testing.assert_allclose(predictions.values, model.predict(x_hold.astype(np.float32).astype(np.float64)),
                               rtol=1e-4, atol=1e-3)
    assert regression_metrics(holdout.labels, predictions) == {
        "rmse": skm.root_mean_squared_error(y_hold, predictions.values),
        "mae": skm.mean_absolute_error(y_hold, predictions.values),
        "r2": skm.r2_score(y_hold, predictions.values),
    }


def test_decision_scores_give_binary_auc_but_no_probability_metrics(store, tmp_path, cancer):
    x_train, y_train, x_hold, y_hold = cancer
    model = LinearSVC(max_iter=5000).fit(x_train / 100, y_train)
    metadata = export(store, model, "svm", x_hold / 100, labels=CANCER_NAMES)
    truth = np.array(CANCER_NAMES)[y_hold]

    holdout, predictions = measured(store, tmp_path, metadata, x_hold / 100, truth)
    values, omitted = measure(["accuracy", "roc_auc", "log_loss", "ece"], holdout.labels, predictions)

    assert not predictions.probabilities
    assert values["roc_auc"] == skm.roc_auc_score(truth == "benign", predictions.scores[:, 1])
    assert values["accuracy"] == skm.accuracy_score(truth, predictions.labels)
    assert set(omitted) == {"log_loss", "ece"} and "not probabilities" in omitted["log_loss"]


def test_metric_of_a_row_subset_equals_sklearn_on_those_rows(store, tmp_path, iris):
    x_train, y_train, x_hold, y_hold = iris
    metadata = export(store, LogisticRegression(max_iter=1000).fit(x_train, y_train), "iris", x_hold, labels=IRIS_NAMES)
    holdout, predictions = measured(store, tmp_path, metadata, x_hold, np.array(IRIS_NAMES)[y_hold])
    rows = np.random.default_rng(3).integers(0, holdout.rows, size=holdout.rows)  # a bootstrap resample

    assert metric_of("f1", holdout.labels, predictions, rows) == skm.f1_score(
        holdout.labels[rows], predictions.labels[rows], average="macro", zero_division=0)
    assert metric_of("accuracy", holdout.labels, predictions, rows) == skm.accuracy_score(
        holdout.labels[rows], predictions.labels[rows])
    only_setosa = np.flatnonzero(holdout.labels == "setosa")
    assert np.isnan(metric_of("roc_auc", holdout.labels, predictions, only_setosa))
    with pytest.raises(ValueError, match="no metric 'nope'"):
        metric_of("nope", holdout.labels, predictions)


def test_ece_against_a_hand_computation():
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    truth = np.array(["a", "b", "b", "a"])
    predictions = Predictions("classification", labels=np.array(["a", "a", "b", "a"]), scores=scores,
                              classes=["a", "b"], probabilities=True)
    # bins of width 1/15: 0.9 -> bin 13 (right), 0.7 -> bin 10 (right), 0.6 and 0.55 -> bin 8 (one right of two)
    hand = 0.25 * abs(1 - 0.9) + 0.25 * abs(1 - 0.7) + 0.5 * abs(0.5 - (0.6 + 0.55) / 2)
    assert metric_of("ece", truth, predictions) == pytest.approx(hand, abs=1e-12)
    assert expected_calibration_error(np.array([0, 1, 1, 0]), scores) == pytest.approx(0.1375, abs=1e-12)
    perfect = expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert perfect == 0.0
