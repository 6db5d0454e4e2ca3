"""The metrics, computed by scikit-learn on the model's predictions (ECE by hand: scikit-learn has none).

Classification: accuracy; precision, recall and f1 (binary, the positive class being the model's second class, for
two classes; macro over the classes present in truth or predictions for more; zero_division=0); ROC AUC (binary on
the positive class's score, else one-vs-rest macro on probabilities); log loss; ECE over 15 equal-width bins of the
top-class probability. Regression: rmse, mae, r2. A metric that is not defined on the data (ROC AUC with one class in
the holdout, log loss of decision scores) is NaN from `metric_of` and left out, with its reason, by `measure`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm

from governance.predictions import Predictions

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = {"log_loss", "ece", "rmse", "mae", "noise_sensitivity", "fairness_delta"}
ECE_BINS = 15


class MetricUndefined(ValueError):
    """A metric that has no value on these rows; the message says why."""


def classification_metrics(truth: np.ndarray, predictions: Predictions, rows: np.ndarray | None = None) -> dict[str, float]:
    return measure(CLASSIFICATION_METRICS, truth, predictions, rows)[0]


def regression_metrics(truth: np.ndarray, predictions: Predictions, rows: np.ndarray | None = None) -> dict[str, float]:
    return measure(REGRESSION_METRICS, truth, predictions, rows)[0]


def task_metrics(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def measure(names: Sequence[str], truth: np.ndarray, predictions: Predictions,
            rows: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """(the defined metrics, the reason each undefined one was left out)."""
    values, omitted = {}, {}
    for name in names:
        try:
            values[name] = _compute(name, truth, predictions, rows)
        except MetricUndefined as exc:
            omitted[name] = str(exc)
    return values, omitted


def metric_of(name: str, truth: np.ndarray, predictions: Predictions, rows: np.ndarray | None = None) -> float:
    """One metric on the rows at `rows` (all rows when None); NaN where it is not defined (see `measure` for why).
    Only the metrics of predictions and truth: noise_sensitivity and fairness_delta need the model and the groups."""
    try:
        return _compute(name, truth, predictions, rows)
    except MetricUndefined:
        return float("nan")


def _compute(name: str, truth: np.ndarray, predictions: Predictions, rows: np.ndarray | None) -> float:
    compute = _METRICS.get(name)
    if compute is None:
        raise ValueError(f"no metric {name!r}; metric_of knows {', '.join(_METRICS)}")
    if rows is not None:
        truth, predictions = truth[rows], predictions.subset(rows)
    if len(truth) == 0:
        raise MetricUndefined("no rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(compute(truth, predictions))
        except ValueError as exc:  # scikit-learn's word for "not defined on this data"
            raise MetricUndefined(str(exc).splitlines()[0]) from None
    if not np.isfinite(value):
        raise MetricUndefined(f"{name} is not finite on these rows")
    return value


# -- classification -----------------------------------------------------------------------------------------------

def class_index(values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Each value's position in `classes`; -1 for a value that is none of them."""
    names = np.asarray(classes, dtype=str)
    order = np.argsort(names)
    ordered = names[order]
    position = np.clip(np.searchsorted(ordered, values), 0, len(ordered) - 1)
    found = ordered[position] == values
    return np.where(found, order[position], -1)


def _averaging(predictions: Predictions) -> dict:
    classes = predictions.classes or []
    if len(classes) == 2:
        return {"average": "binary", "pos_label": classes[1]}
    return {"average": "macro"}


def _accuracy(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.accuracy_score(truth, predictions.labels)


def _precision(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.precision_score(truth, predictions.labels, zero_division=0, **_averaging(predictions))


def _recall(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.recall_score(truth, predictions.labels, zero_division=0, **_averaging(predictions))


def _f1(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.f1_score(truth, predictions.labels, zero_division=0, **_averaging(predictions))


def _scores(predictions: Predictions, *, probabilities: bool) -> np.ndarray:
    if predictions.scores is None:
        raise MetricUndefined("the model has no score output")
    if probabilities and not predictions.probabilities:
        raise MetricUndefined("the model's scores are not probabilities")
    return predictions.scores


def _roc_auc(truth: np.ndarray, predictions: Predictions) -> float:
    classes = predictions.classes or []
    if len(classes) == 2:
        positive = truth == classes[1]
        if positive.all() or not positive.any():
            raise MetricUndefined("only one class in the truth")
        return skm.roc_auc_score(positive, _scores(predictions, probabilities=False)[:, 1])
    scores = _scores(predictions, probabilities=True)
    present = np.unique(class_index(truth, classes))
    if len(present) < len(classes):
        missing = sorted(set(range(len(classes))) - set(present.tolist()))
        raise MetricUndefined(f"class {classes[missing[0]]!r} does not occur in the truth")
    return skm.roc_auc_score(class_index(truth, classes), scores, multi_class="ovr", average="macro",
                             labels=list(range(len(classes))))


def _log_loss(truth: np.ndarray, predictions: Predictions) -> float:
    scores = _scores(predictions, probabilities=True)
    return skm.log_loss(class_index(truth, predictions.classes), scores, labels=list(range(scores.shape[1])))


def _ece(truth: np.ndarray, predictions: Predictions) -> float:
    scores = _scores(predictions, probabilities=True)
    return expected_calibration_error(class_index(truth, predictions.classes), scores)


def expected_calibration_error(truth_index: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum over bins of (rows in bin / rows) * |accuracy - mean confidence|, the confidence being the top-class
    probability, in `bins` equal-width bins over [0, 1] (bin i holds (i/bins, (i+1)/bins]; the first also holds 0)."""
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == truth_index
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for index in np.unique(which):
        members = which == index
        total += members.sum() / len(scores) * abs(correct[members].mean() - confidence[members].mean())
    return total


# -- regression ---------------------------------------------------------------------------------------------------

def _rmse(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.root_mean_squared_error(truth, predictions.values)


def _mae(truth: np.ndarray, predictions: Predictions) -> float:
    return skm.mean_absolute_error(truth, predictions.values)


def _r2(truth: np.ndarray, predictions: Predictions) -> float:
    if len(truth) < 2:
        raise MetricUndefined("r2 needs at least two rows")
    return skm.r2_score(truth, predictions.values)


_METRICS: dict[str, Callable[[np.ndarray, Predictions], float]] = {
    "accuracy": _accuracy, "precision": _precision, "recall": _recall, "f1": _f1, "roc_auc": _roc_auc,
    "log_loss": _log_loss, "ece": _ece, "rmse": _rmse, "mae": _mae, "r2": _r2,
}
