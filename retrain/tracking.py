"""Each finished job as an MLflow run, when MLflow is installed and MLFLOW_TRACKING_URI is set; otherwise nothing.

One experiment per model (`onnxgate-retrain/<model>`), one run per job (named by its id): params (the trigger, the
command, the version made, the environment, the metric), the trigger's numeric figures and both models' holdout
metrics (`challenger.<metric>`, `champion.<metric>`), tags (status, decision, validation sha256), the whole record
as `job.json`. A tracking server that fails is noted in the job's log; it never fails the job.
"""
from __future__ import annotations

import importlib.util
import os
import traceback
from pathlib import Path

from retrain.records import JobRecord

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def enabled() -> bool:
    return bool(os.environ.get(TRACKING_ENV)) and importlib.util.find_spec("mlflow") is not None


def log_job(record: JobRecord, environment: str) -> str | None:
    """The MLflow run id, or None when tracking is off or failed."""
    if not enabled():
        return None
    try:
        return _log(record, environment)
    except Exception:  # noqa: BLE001 - tracking is a copy of the record: it never decides the job's fate
        if record.log:
            with open(Path(record.log), "a", encoding="utf-8") as log:
                log.write("MLflow logging failed:\n" + traceback.format_exc())
        return None


def _log(record: JobRecord, environment: str) -> str:
    import mlflow

    mlflow.set_experiment(f"onnxgate-retrain/{record.model}")
    with mlflow.start_run(run_name=record.id) as run:
        validation = record.validation or {}
        mlflow.log_params({"model": record.model, "trigger": record.trigger.trigger, "environment": environment,
                           "version": record.version or "", "command": " ".join(record.command)[:500],
                           "metric": validation.get("metric") or ""})
        figures = {f"trigger.{key}": float(value) for key, value in record.trigger.figures.items()
                   if isinstance(value, int | float) and not isinstance(value, bool)}
        for side in ("challenger", "champion"):
            metrics = (validation.get(side) or {}).get("metrics") or {}
            figures.update({f"{side}.{key}": float(value) for key, value in metrics.items()})
        if figures:
            mlflow.log_metrics(figures)
        mlflow.set_tags({"status": record.status, "decision": (record.decision or {}).get("decision") or "",
                         "validation_sha256": record.validation_sha256 or "", "reason": (record.reason or "")[:500]})
        mlflow.log_dict(record.model_dump(mode="json"), "job.json")
        return run.info.run_id
