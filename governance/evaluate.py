"""`evaluate`: measure a version's ONNX model on a holdout file and record what was measured with the version."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import sklearn

from governance.fairness import group_report
from governance.holdout import Holdout, check_known_labels, read_holdout
from governance.metrics import ECE_BINS, MetricUndefined, measure, task_metrics
from governance.predictions import Predictions, load_model
from governance.robustness import RELATIVE_EPS, noise_sensitivity_rows
from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.clock import utc_now
from modelstore.evaluations import record_evaluation
from modelstore.registry import EvaluationRecord
from modelstore.transitions import Change


@dataclass(frozen=True)
class Measurement:
    """A version measured on a holdout: what is recorded, and the per-row answers it was computed from."""

    version: str
    record: EvaluationRecord
    predictions: Predictions
    holdout: Holdout


def measure_model(store: ModelRepository, name: str, version: str, data: Path, label: str,
                  group: str | None = None, *, noise_scale: float = 0.05, seed: int = 0,
                  change: Change = Change()) -> Measurement:
    """The version ('latest' resolved) measured on the holdout, recording nothing."""
    if not (np.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise scale must be a finite number >= 0, not {noise_scale}")
    metadata = store.read_metadata(name, version)
    holdout = read_holdout(Path(data), label, group, metadata)  # refused before the model is loaded
    model = load_model(store, metadata.name, metadata.version)
    where = f"{metadata.name} {metadata.version}"
    predictions = model.predict(holdout.features)
    if predictions.task == "classification":
        check_known_labels(holdout.labels, predictions.classes, where)
    names = task_metrics(predictions.task)
    metrics, omitted = measure(names, holdout.labels, predictions)
    row_values = {}
    try:
        changes = noise_sensitivity_rows(model, holdout.features, predictions, scale=noise_scale, seed=seed)
        metrics["noise_sensitivity"] = float(changes.mean())
        row_values["noise_sensitivity"] = changes
    except MetricUndefined as exc:
        omitted["noise_sensitivity"] = str(exc)
    groups, gaps = {}, {}
    if holdout.groups is not None:
        report = group_report(names, holdout.labels, predictions, holdout.groups, row_values)
        groups, gaps = report.groups, report.gaps
        omitted.update(report.omitted)
        if report.fairness_delta is not None:
            metrics["fairness_delta"] = report.fairness_delta
    record = EvaluationRecord(
        measured_at=utc_now(), actor=change.actor or default_actor(), dataset=Path(data).name,
        dataset_sha256=holdout.sha256, rows=holdout.rows, task=predictions.task, label=label, group=group,
        metrics=metrics, groups=groups, fairness_gaps=gaps,
        parameters=_parameters(predictions, metadata.model_sha256, noise_scale, seed, omitted),
    )
    return Measurement(metadata.version, record, predictions, holdout)


def evaluate(store: ModelRepository, name: str, version: str, data: Path, label: str, group: str | None = None, *,
             noise_scale: float = 0.05, seed: int = 0, change: Change = Change()) -> EvaluationRecord:
    """Measure, then record with the version (through the transition API, with its audit entry)."""
    measured = measure_model(store, name, version, data, label, group, noise_scale=noise_scale, seed=seed,
                             change=change)
    record_evaluation(store, name, measured.version, measured.record, change)
    return measured.record


def _parameters(predictions, model_sha256: str, noise_scale: float, seed: int, omitted: dict[str, str]) -> dict:
    parameters = {"model_sha256": model_sha256, "noise_scale": noise_scale, "seed": seed,
                  "runtime": f"onnxruntime {onnxruntime.__version__}", "metrics_by": f"scikit-learn {sklearn.__version__}",
                  "omitted": omitted}
    if predictions.task == "classification":
        classes = predictions.classes
        parameters.update({
            "classes": classes,
            "averaging": f"binary (positive class {classes[1]!r})" if len(classes) == 2 else "macro",
            "zero_division": 0, "ece_bins": ECE_BINS, "scores_are_probabilities": predictions.probabilities,
        })
    else:
        parameters["relative_change_eps"] = RELATIVE_EPS
    return parameters
