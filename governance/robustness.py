"""Noise sensitivity: how much the model's answers move when its numeric features get a little Gaussian noise.

Each floating-point feature value gets noise of `scale` times that feature's standard deviation over the holdout
(integer and boolean inputs are left alone), drawn from one generator seeded with `seed`, so a rerun measures the
same. Per row: a classifier's predicted label changed (1) or not (0); a regressor's |y' - y| / max(|y|, eps). The
metric is the mean over rows.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from governance.metrics import MetricUndefined
from governance.predictions import LoadedModel, Predictions

RELATIVE_EPS = 1e-8
"""The floor of |y| in a regressor's relative change, so a prediction of 0 does not divide by zero."""


def noisy_features(features: Mapping[str, np.ndarray], *, scale: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    noisy = {}
    for name, values in features.items():
        if values.dtype.kind != "f":
            noisy[name] = values
            continue
        flat = values.reshape(len(values), -1).astype(np.float64)
        spread = flat.std(axis=0)
        moved = flat + rng.standard_normal(flat.shape) * (scale * spread)
        noisy[name] = moved.reshape(values.shape).astype(values.dtype)
    return noisy


def row_changes(clean: Predictions, noisy: Predictions) -> np.ndarray:
    """Per row: 1.0 where a classifier's label changed, else 0.0; a regressor's relative change."""
    if clean.task == "classification":
        return (clean.labels != noisy.labels).astype(np.float64)
    return np.abs(noisy.values - clean.values) / np.maximum(np.abs(clean.values), RELATIVE_EPS)


def noise_sensitivity_rows(model: LoadedModel, features: Mapping[str, np.ndarray], clean: Predictions, *,
                           scale: float, seed: int) -> np.ndarray:
    """The per-row changes (their mean is noise_sensitivity); MetricUndefined when no feature is floating-point."""
    if not any(values.dtype.kind == "f" for values in features.values()):
        raise MetricUndefined("the model has no floating-point features to add noise to")
    return row_changes(clean, model.predict(noisy_features(features, scale=scale, seed=seed)))
