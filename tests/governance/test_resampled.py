"""The batched label metrics of the bootstrap equal scikit-learn's on each resample, binary and multi-class, with
classes missing from a resample and predictions of one class only (zero_division=0)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from governance.metrics import measure
from governance.predictions import Predictions
from governance.resampled import LABEL_METRICS, resampled_metric

CLASSES = ["cat", "dog", "eel", "fox"]


@st.composite
def labelled_resamples(draw):
    classes = CLASSES[:draw(st.integers(2, 4))]
    rows = draw(st.integers(1, 40))
    picks = st.lists(st.integers(0, len(classes) - 1), min_size=rows, max_size=rows)
    truth = np.asarray(classes)[draw(picks)]
    labels = np.asarray(classes)[draw(picks)]
    resamples = np.asarray(draw(st.lists(st.lists(st.integers(0, rows - 1), min_size=rows, max_size=rows),
                                         min_size=1, max_size=5)))
    return classes, truth, labels, resamples


@settings(max_examples=200, deadline=None)
@given(labelled_resamples())
def test_batched_label_metrics_equal_scikit_learns_on_every_resample(case):
    classes, truth, labels, resamples = case
    predictions = Predictions("classification", labels=labels, classes=classes)
    for name in LABEL_METRICS:
        batched = resampled_metric(name, truth, predictions, resamples)
        one_by_one = [measure([name], truth, predictions, rows)[0][name] for rows in resamples]
        np.testing.assert_allclose(batched, one_by_one, rtol=1e-12, atol=1e-12, err_msg=name)


def test_the_binary_metrics_are_of_the_positive_class():
    truth = np.array(["no", "yes", "yes", "no", "yes"])
    labels = np.array(["yes", "yes", "no", "no", "yes"])
    predictions = Predictions("classification", labels=labels, classes=["no", "yes"])
    rows = np.array([[0, 1, 2, 3, 4]])
    assert resampled_metric("f1", truth, predictions, rows)[0] == skm.f1_score(truth, labels, pos_label="yes")
    assert resampled_metric("recall", truth, predictions, rows)[0] == 2 / 3


def test_other_metrics_are_computed_per_resample():
    truth = np.array([0.0, 1.0, 2.0, 4.0])
    predictions = Predictions("regression", values=np.array([0.5, 1.0, 2.5, 3.0]))
    rows = np.array([[0, 1, 2, 3], [3, 3, 2, 2]])
    assert resampled_metric("mae", truth, predictions, rows).tolist() == [
        skm.mean_absolute_error(truth[r], predictions.values[r]) for r in rows]
