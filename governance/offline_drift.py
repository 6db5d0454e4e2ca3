"""`onnxgate drift` as a library: a file of rows counted with the version's DriftLayout, the model's answers on them
counted too, and the same drift report the gateway computes (monitoring/drift.py) for the same rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from governance.errors import NotEvaluable
from governance.holdout import read_feature_rows
from modelstore.backends import ArtifactStore
from modelstore.layout import check_sha256
from monitoring.drift import DriftLayout, DriftReport, DriftThresholds, drift_report

BATCH_ROWS = 4096  # rows per onnxruntime run, so a large file's intermediate tensors stay small


def drift_from_file(store: ArtifactStore, name: str, version: str, path: Path, thresholds: DriftThresholds, *,
                    environment: str | None = None) -> DriftReport:
    metadata = store.verify_version(name, version)
    layout = DriftLayout.of(metadata)
    if layout is None:
        why = metadata.reference_stats.reason or "no feature statistics"
        raise NotEvaluable(f"{name} {metadata.version} has no reference statistics to compare with ({why}); export "
                           f"it with --sample or --reference-data rows")
    rows = read_feature_rows(path, metadata)
    table = layout.feature_table(rows.features)
    if table is None:
        raise NotEvaluable(f"{name} {metadata.version}: the rows do not give the input {layout.input_name!r} with the "
                           f"{len(layout.feature_names)} values per row its reference statistics describe")
    feature_counts = layout.count_features(table)
    prediction_counts = layout.empty_prediction_counts()
    if layout.has_prediction_reference:
        model_bytes = store.read_file(metadata.name, metadata.version, metadata.model_file)
        check_sha256(model_bytes, metadata.model_sha256, f"{metadata.name}/{metadata.version}/{metadata.model_file}")
        session = _session(model_bytes)
        names = [output.name for output in session.get_outputs()]
        for start in range(0, rows.rows, BATCH_ROWS):
            feeds = {key: value[start:start + BATCH_ROWS] for key, value in rows.features.items()}
            outputs = dict(zip(names, session.run(None, feeds), strict=True))
            prediction_counts += layout.count_predictions({key: np.asarray(value) for key, value in outputs.items()
                                                           if not isinstance(value, list)})
    return drift_report(layout, feature_counts, prediction_counts, rows.rows, thresholds, model=name,
                        version=metadata.version, environment=environment)


def _session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
