"""The validation step's export: the job's artifact to the next free version, through exporters.publish as
`onnxgate export` does (the same loaders, parity and Node checks, reference statistics)."""
from __future__ import annotations

import json
from pathlib import Path

from exporters.errors import ExportError
from exporters.parity import DEFAULT_TOLERANCE
from exporters.publish import PublishOptions, export_source, load_source
from exporters.sample import load_sample
from modelstore.errors import InvalidMetadata, ModelNotFound
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, check_metrics
from modelstore.transitions import Change
from modelstore.versions import VERSION_PATTERN
from retrain.config import ModelRetraining


def next_version(store: Store, name: str) -> str:
    """The latest version with its minor number raised (v1.2.3 -> v1.3.0); v1.0.0 for a new model."""
    try:
        versions = store.list_versions(name)
    except ModelNotFound:
        versions = []
    if not versions:
        return "v1.0.0"
    prefix = "v" if versions[-1].startswith("v") else ""
    major, minor, _, _ = VERSION_PATTERN.fullmatch(versions[-1]).groups()
    minor = int(minor) + 1
    while store.has_version(name, f"{prefix}{major}.{minor}.0"):  # only a pre-release of it existed
        minor += 1
    return f"{prefix}{major}.{minor}.0"


def export_artifact(store: Store, name: str, version: str, settings: ModelRetraining, output: Path,
                    change: Change) -> ModelMetadata:
    export = settings.export
    artifact = output / settings.artifact

    def path(value: str | None) -> Path | None:
        return None if value is None else _existing(settings.path(value, output))

    sample_path, reference_path = path(export.sample), path(export.reference_data)
    sample = load_sample(sample_path) if sample_path else None
    reference = load_sample(reference_path) if reference_path else None
    if reference is not None and (reference.rows is None or len(reference.rows) == 0):
        raise ExportError(f"export.reference_data {reference_path}: no rows")
    labels = export.labels
    if export.labels_file is not None:
        lines = path(export.labels_file).read_text(encoding="utf-8").splitlines()
        labels = [line.strip() for line in lines if line.strip()]
    metrics = _metrics(path(export.metrics)) if export.metrics else {}
    options = PublishOptions(
        metrics=metrics, training_samples=export.training_samples,
        training_data=reference.rows if reference else None,
        training_feature_names=reference.feature_names if reference else None,
        tolerance=export.tolerance if export.tolerance is not None else DEFAULT_TOLERANCE,
        allow_incompatible=export.allow_incompatible, check_node=export.check_node, change=change)
    source = load_source(str(artifact))
    extra: dict = {}
    if export.tokenizer:
        extra = {"tokenizer": str(path(export.tokenizer)), "max_length": export.max_length}
    if source.kind == "torch":
        extra["scores"] = export.scores
    return export_source(store, source, name=name, version=version, sample=sample, labels=labels, options=options,
                         **extra)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ExportError(f"{path}: no such file (named in retrain.toml's export table)")
    return path


def _metrics(path: Path) -> dict[str, float]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object of metric name -> number")
        return check_metrics(payload, f"export.metrics {path}")
    except (UnicodeDecodeError, ValueError, InvalidMetadata) as exc:
        raise ExportError(f"export.metrics {path}: {exc}") from None
