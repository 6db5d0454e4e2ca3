"""Running the stored ONNX model (never the source model) in onnxruntime, and reading its answers as predictions.

Class labels come out as strings, in the space of Holdout.labels: class ids mapped through metadata.labels, or the
classifier's own labels. The scores' columns follow `classes`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnxruntime as ort

from governance.errors import NotEvaluable
from governance.signature import task_of
from modelstore.backends import ArtifactStore
from modelstore.layout import check_sha256
from modelstore.metadata import ModelMetadata

BATCH_ROWS = 4096
"""Rows per onnxruntime run: bounds the memory of a large holdout's intermediate tensors."""
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Predictions:
    """`probabilities`: the scores are class probabilities (each row in [0, 1], summing to 1), not decision scores;
    log loss, calibration and multi-class ROC AUC need them."""

    task: Literal["classification", "regression"]
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    classes: list[str] | None = None
    values: np.ndarray | None = None
    probabilities: bool = False

    def subset(self, index: np.ndarray) -> Predictions:
        """The predictions of a subset of rows."""
        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[index]

        return Predictions(self.task, pick(self.labels), pick(self.scores), self.classes, pick(self.values),
                           self.probabilities)


class LoadedModel:
    """One version's verified bytes in an onnxruntime session, to predict on several feeds (clean and noisy)."""

    def __init__(self, metadata: ModelMetadata, model_bytes: bytes) -> None:
        self.metadata = metadata
        self.task = task_of(metadata)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.class_labels = _graph_class_labels(model_bytes) if self.task == "classification" else None

    def run(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(features.values())))
        parts: list[list[np.ndarray]] = []
        for start in range(0, max(rows, 1), BATCH_ROWS):
            feeds = {name: value[start:start + BATCH_ROWS] for name, value in features.items()}
            parts.append(self.session.run(None, feeds))
        return {name: np.concatenate([part[index] for part in parts]) for index, name in enumerate(self.output_names)}

    def predict(self, features: Mapping[str, np.ndarray]) -> Predictions:
        outputs = self.run(features)
        if self.task == "regression":
            return Predictions("regression", values=self._regression_values(outputs))
        return self._classification(outputs)

    def _output(self, outputs: dict[str, np.ndarray], name: str | None, role: str) -> np.ndarray | None:
        if name is None:
            return None
        if name not in outputs:
            raise NotEvaluable(f"metadata names {name!r} as the {role} output, but the model has no such output "
                               f"(outputs: {', '.join(self.output_names)})")
        return outputs[name]

    def _regression_values(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        name = self.metadata.score_output or (self.output_names[0] if len(self.output_names) == 1 else None)
        values = self._output(outputs, name, "prediction")
        if values is None:
            raise NotEvaluable(f"{self._where()} has several outputs and metadata names none as the prediction")
        values = np.asarray(values, dtype=np.float64)
        if values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1):
            raise NotEvaluable(f"{self._where()} predicts {values.shape[1:]} values per row; evaluate measures "
                               "single-output regressors")
        return values.reshape(-1)

    def _classification(self, outputs: dict[str, np.ndarray]) -> Predictions:
        label_ids = self._output(outputs, self.metadata.label_output, "label")
        scores = self._output(outputs, self.metadata.score_output, "score")
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
            scores = scores.reshape(len(scores), -1)
        classes = self._classes(label_ids, scores)
        if scores is not None and scores.shape[1] == 1 and len(classes) == 2:
            scores = _two_columns(scores[:, 0])
        if scores is not None and scores.shape[1] != len(classes):
            raise NotEvaluable(f"{self._where()} gives {scores.shape[1]} scores per row for {len(classes)} classes")
        if label_ids is not None:
            labels = self._label_names(np.asarray(label_ids).reshape(-1))
        elif scores is not None:
            labels = np.asarray(classes, dtype=str)[scores.argmax(axis=1)]
        else:
            raise NotEvaluable(f"{self._where()}: metadata names neither a label nor a score output")
        return Predictions("classification", labels=labels, scores=scores, classes=classes,
                           probabilities=scores is not None and _are_probabilities(scores))

    def _classes(self, label_ids: np.ndarray | None, scores: np.ndarray | None) -> list[str]:
        if self.metadata.labels:
            return list(self.metadata.labels)
        if self.class_labels is not None:
            return self.class_labels
        if scores is not None and (label_ids is None or np.asarray(label_ids).dtype.kind in "iu"):
            width = 2 if scores.shape[1] == 1 else scores.shape[1]
            return [str(index) for index in range(width)]
        raise NotEvaluable(f"{self._where()}: cannot tell its classes (no labels in metadata, no class labels in the "
                           "graph, no score output)")

    def _label_names(self, values: np.ndarray) -> np.ndarray:
        if self.metadata.labels and values.dtype.kind in "iu":
            names = np.asarray(self.metadata.labels, dtype=str)
            inside = (values >= 0) & (values < len(names))
            return np.where(inside, names[np.clip(values, 0, len(names) - 1)], values.astype(str))
        if values.dtype.kind in "SO":
            return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)
        return values.astype(str)

    def _where(self) -> str:
        return f"{self.metadata.name} {self.metadata.version}"


def load_model(store: ArtifactStore, name: str, version: str) -> LoadedModel:
    """The version's model file, checked against metadata's sha256 on the very bytes handed to onnxruntime."""
    metadata = store.verify_version(name, version)
    model_bytes = store.read_file(metadata.name, metadata.version, metadata.model_file)
    check_sha256(model_bytes, metadata.model_sha256, f"{metadata.name}/{metadata.version}/{metadata.model_file}")
    return LoadedModel(metadata, model_bytes)


def predict(store: ArtifactStore, name: str, version: str, features: Mapping[str, np.ndarray]) -> Predictions:
    return load_model(store, name, version).predict(features)


def _graph_class_labels(model_bytes: bytes) -> list[str] | None:
    """The class labels an ONNX-ML classifier node carries (skl2onnx writes them; its label output holds them and
    its probability columns follow them). The last such node is the one that answers."""
    try:
        import onnx
    except ImportError:
        return None
    found = None
    for node in onnx.load_from_string(model_bytes).graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints"):
                found = [str(value) for value in attribute.ints]
            elif attribute.name == "classlabels_strings":
                found = [value.decode() for value in attribute.strings]
    return found or None


def _two_columns(column: np.ndarray) -> np.ndarray:
    """A binary model's single score column: the positive class's probability, or a signed decision score."""
    if ((column >= 0) & (column <= 1)).all():
        return np.stack([1 - column, column], axis=1)
    return np.stack([-column, column], axis=1)


def _are_probabilities(scores: np.ndarray) -> bool:
    within = ((scores >= -1e-6) & (scores <= 1 + 1e-6)).all()
    return bool(within and np.allclose(scores.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE))
