"""Monitoring fixtures: metadata of a classifier and a regressor, and captured records written by the real writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from modelstore.metadata import ModelMetadata, TensorSpec
from monitoring.capture import Bounds, CaptureFiles, capture_record
from tests.factories import IRIS_LABELS, minimal_metadata

LARGE = Bounds(file_max_bytes=1 << 30, total_max_bytes=1 << 31)


def classifier_metadata(version: str = "v1.0.0") -> ModelMetadata:
    return minimal_metadata("iris", version, inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", 4])],
                            outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                                     TensorSpec(name="probabilities", dtype="float32", shape=["batch", 3])],
                            task="classification", labels=list(IRIS_LABELS), label_output="label",
                            score_output="probabilities")


def regressor_metadata(version: str = "v1.0.0") -> ModelMetadata:
    return minimal_metadata("price", version, inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", 2])],
                            outputs=[TensorSpec(name="variable", dtype="float32", shape=["batch", 1])],
                            task="regression")


def write_records(root: Path, metadata: ModelMetadata, environment: str, arm: str, rows: np.ndarray,
                  outputs: list[dict[str, np.ndarray]], ids: list[str], now: float,
                  files: CaptureFiles | None = None) -> None:
    """One captured request per id (rows[i] and outputs[i]), appended by the real writer."""
    files = files or CaptureFiles(root, LARGE)
    lines = []
    for request_id, row, output in zip(ids, rows, outputs, strict=True):
        record = capture_record(request_id, now, metadata.name, environment, metadata.version, arm, metadata,
                                {"X": row[None, :]}, output)
        lines.append(orjson.dumps(record) + b"\n")
    files.append(metadata.name, environment, lines, now)
