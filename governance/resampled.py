"""A metric on many bootstrap resamples at once: one call per batch of resamples instead of one scikit-learn call
per resample, which is what makes 1000 resamples take a fraction of a second.

The label metrics (accuracy, precision, recall, f1) come from each resample's confusion matrix, with the definitions
of governance.metrics: binary on the positive class, else macro over the classes present in that resample's truth or
predictions, zero_division=0 (tests/governance/test_resampled.py checks them against scikit-learn on resamples).
Every other metric is computed per resample by governance.metrics.
"""
from __future__ import annotations

import numpy as np

from governance.metrics import class_index, metric_of
from governance.predictions import Predictions

LABEL_METRICS = ("accuracy", "precision", "recall", "f1")


def resampled_metric(name: str, truth: np.ndarray, predictions: Predictions, rows: np.ndarray) -> np.ndarray:
    """`rows`: (resamples, n) row indices; the metric of each resample (NaN where it is not defined)."""
    rows = np.atleast_2d(rows)
    if name in LABEL_METRICS and predictions.classes:
        classes = predictions.classes
        truth_index, predicted_index = class_index(truth, classes), class_index(predictions.labels, classes)
        if (truth_index >= 0).all() and (predicted_index >= 0).all():
            return _from_confusion(name, _confusions(truth_index, predicted_index, rows, len(classes)))
    return np.array([metric_of(name, truth, predictions, sample) for sample in rows])


def _confusions(truth: np.ndarray, predicted: np.ndarray, rows: np.ndarray, classes: int) -> np.ndarray:
    """(resamples, classes, classes) counts: [r, t, p] = rows of resample r with truth t predicted as p."""
    resamples = rows.shape[0]
    cells = truth[rows] * classes + predicted[rows] + (np.arange(resamples) * classes * classes)[:, None]
    return np.bincount(cells.ravel(), minlength=resamples * classes * classes).reshape(resamples, classes, classes)


def _from_confusion(name: str, confusion: np.ndarray) -> np.ndarray:
    classes = confusion.shape[1]
    hits = np.diagonal(confusion, axis1=1, axis2=2).astype(np.float64)
    if name == "accuracy":
        return hits.sum(axis=1) / confusion.sum(axis=(1, 2))
    predicted = confusion.sum(axis=1)  # per class: rows predicted as it
    actual = confusion.sum(axis=2)  # per class: rows that are it
    if name == "precision":
        per_class = _ratio(hits, predicted)
    elif name == "recall":
        per_class = _ratio(hits, actual)
    else:
        per_class = _ratio(2 * hits, predicted + actual)
    if classes == 2:
        return per_class[:, 1]
    present = (predicted + actual) > 0
    return (per_class * present).sum(axis=1) / present.sum(axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64),
                     where=denominator > 0)
