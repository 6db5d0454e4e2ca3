"""The gateway's store watcher ignores what retraining writes (.retrain/: records, logs, training output, locks), as
it ignores .monitoring/; a job's new version reaches the gateway through the registry like any other."""
from __future__ import annotations

from watchfiles import Change

from modelstore.file_feed import StoreFilter


def test_the_store_watcher_ignores_retraining_files(tmp_path):
    keep = StoreFilter()
    root = tmp_path / "models"
    assert not keep(Change.modified, str(root / ".retrain" / "jobs" / "cancer-20261202-120000-abcdef.json"))
    assert not keep(Change.added, str(root / ".retrain" / "work" / "cancer-20261202-120000-abcdef" / "model.joblib"))
    assert not keep(Change.added, str(root / ".retrain"))
    assert keep(Change.added, str(root / "cancer" / "v1.1.0" / "model.onnx"))
    assert keep(Change.modified, str(root / "registry.json"))
