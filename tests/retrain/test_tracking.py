"""A job logged as an MLflow run in a local SQLite tracking store, and nothing logged without MLFLOW_TRACKING_URI."""
from __future__ import annotations

import pytest

from tests.retrain.conftest import STRONG, onnxgate, retrain_json, write_config

mlflow = pytest.importorskip("mlflow")


def test_a_job_is_logged_as_an_mlflow_run(store, workdir, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    # the artifacts (job.json) beside the database, not in ./mlruns
    mlflow.create_experiment("onnxgate-retrain/cancer", artifact_location=(tmp_path / "artifacts").as_uri())
    write_config(store, workdir, command=STRONG)

    code, record, stderr = retrain_json(store, "run", "cancer")

    assert code == 0, stderr
    run = mlflow.get_run(record["mlflow_run"])
    assert run.info.run_name == record["id"]
    assert run.data.params["trigger"] == "manual" and run.data.params["version"] == "v1.0.0"
    assert run.data.tags["status"] == "completed" and run.data.tags["decision"] == "first"
    assert run.data.tags["validation_sha256"] == record["validation_sha256"]
    assert run.data.metrics["challenger.f1"] == record["validation"]["challenger"]["metrics"]["f1"]
    assert list((tmp_path / "artifacts").rglob("job.json"))


def test_without_a_tracking_uri_nothing_is_logged(store, workdir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_config(store, workdir, command="{python} -c pass")
    result = onnxgate(store, "retrain", "run", "cancer", "--json")
    assert result.returncode == 11 and '"mlflow_run": null' in result.stdout
