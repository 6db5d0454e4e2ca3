"""scikit-learn estimators and pipelines -> ONNX via skl2onnx, and the source model's own answers for parity.

Input: float32 "input" [batch, n_features]. Outputs, as skl2onnx names them: classifiers "label" (class ids) and
"probabilities" (ZipMap disabled, so a plain tensor); regressors and transformers "variable"; clusterers "label" and
"scores" (distances to each centre).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import sklearn
from sklearn.base import is_classifier, is_clusterer, is_regressor
from sklearn.pipeline import Pipeline

from exporters.errors import ExportError

INPUT_NAME = "input"
# ai.onnx 21 is the newest opset onnxruntime-node is checked against (see compat.MAX_NODE_OPSET); skl2onnx lowers
# each domain to what the converted operators actually need.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class SklearnRole:
    task: str
    label_output: str | None
    score_output: str | None


def describe(model: object) -> str:
    if isinstance(model, Pipeline):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def role_of(model: object) -> SklearnRole:
    if is_classifier(model):
        return SklearnRole("classification", "label", "probabilities")
    if is_regressor(model):
        return SklearnRole("regression", None, "variable")
    if is_clusterer(model) and hasattr(model, "predict"):
        return SklearnRole("clustering", "label", "scores")
    if hasattr(model, "transform"):
        return SklearnRole("transform", None, "variable")
    raise ExportError(f"{describe(model)} is not a classifier, regressor, clusterer or transformer")


def n_features(model: object) -> int:
    count = getattr(model, "n_features_in_", None)
    if count is None:
        raise ExportError(f"{describe(model)} is not fitted (no n_features_in_); train it before exporting")
    return int(count)


def feature_names(model: object) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(name) for name in names] if names is not None else None


def convert(model: object) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features(model)]))]
    # A global option applies to every converter that declares it: the classifier at the end of a pipeline too.
    # Classifiers without probabilities (LinearSVC) have no ZipMap and reject the option: convert those with an
    # empty option set of their own (skl2onnx 1.20 fails on a pipeline ending in LinearSVC given no options at all).
    options = {"zipmap": False} if role_of(model).task == "classification" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return convert_sklearn(model, initial_types=initial_types, target_opset=TARGET_OPSET, options=options)
            except Exception as exc:  # NameError alone, RuntimeError inside a pipeline
                if options is None or "'zipmap'" not in str(exc):
                    raise
                plain = {type(step): {} for step in _estimators(model) if is_classifier(step)}
                return convert_sklearn(model, initial_types=initial_types, target_opset=TARGET_OPSET, options=plain)
    except ExportError:
        raise
    except Exception as exc:  # skl2onnx raises RuntimeError, NameError, ValueError, TypeError... for the same cause
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"skl2onnx cannot convert {describe(model)}: {reason[:300]}") from None


def _estimators(model: object) -> list[object]:
    if isinstance(model, Pipeline):
        return [part for _, step in model.steps for part in _estimators(step)]
    return [model]


def check_labels(model: object, labels: list[str] | None) -> list[str] | None:
    """Labels map the ONNX class ids by position, which holds only when the classes are 0..n-1."""
    classes = getattr(model, "classes_", None)
    if labels is None or classes is None:
        return labels
    if len(labels) != len(classes):
        raise ExportError(f"{len(labels)} labels given but {describe(model)} has {len(classes)} classes")
    if not (np.issubdtype(np.asarray(classes).dtype, np.integer) and np.array_equal(classes, np.arange(len(classes)))):
        raise ExportError(f"labels can only name classes 0..n-1, but {describe(model)} has classes "
                          f"{list(classes)[:10]}; train on class ids or omit --labels")
    return labels


def reference_outputs(model: object, rows: np.ndarray, score_width: int | None = None) -> dict[str, np.ndarray]:
    """What the source model answers, as ONNX output name -> array, on rows rounded to float32 like the ONNX input.

    Classifiers without predict_proba (SVC, LinearSVC) answer decision-function scores. For two classes skl2onnx
    gives one column or two of opposite sign in a converter-specific order, so `score_width` (the ONNX output's width)
    picks the shape, and those scores are compared by magnitude only: the labels carry the sign."""
    x = np.asarray(rows, dtype=np.float32).astype(np.float64)
    role = role_of(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if role.task == "classification":
            outputs = {"label": np.asarray(model.predict(x))}
            if hasattr(model, "predict_proba"):
                outputs["probabilities"] = np.asarray(model.predict_proba(x))
            elif hasattr(model, "decision_function"):
                outputs["probabilities"] = _decision_scores(np.asarray(model.decision_function(x)), score_width)
            return outputs
        if role.task == "regression":
            return {"variable": np.asarray(model.predict(x)).reshape(len(x), -1)}
        if role.task == "clustering":
            outputs = {"label": np.asarray(model.predict(x))}
            if hasattr(model, "transform"):
                outputs["scores"] = np.asarray(model.transform(x))
            return outputs
        return {"variable": np.asarray(model.transform(x))}


def _decision_scores(scores: np.ndarray, width: int | None) -> np.ndarray:
    if scores.ndim == 2:
        return scores
    return scores[:, None] if width == 1 else np.stack([-scores, scores], axis=1)


def magnitude_only(model: object, score_width: int | None) -> frozenset[str]:
    """Outputs to compare by absolute value: two-column binary decision scores (see reference_outputs)."""
    binary = len(getattr(model, "classes_", ())) == 2
    if binary and score_width == 2 and not hasattr(model, "predict_proba") and hasattr(model, "decision_function"):
        return frozenset({"probabilities"})
    return frozenset()


def framework_version() -> str:
    return sklearn.__version__
