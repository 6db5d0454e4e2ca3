"""The retraining jobs' records, read-only, for the dashboard. The gateway sits below retrain/ in the import layers
(pyproject.toml), so it reads the records retrain.records.JobStore writes (<store>/.retrain/jobs/<id>.json) as plain
JSON, and shows only the fields every record has."""
from __future__ import annotations

import json
from pathlib import Path

from modelstore.layout import RETRAIN_DIR

SHOWN_FIELDS = ("id", "model", "status", "version", "reason", "started_epoch", "history", "trigger")


def recent_jobs(store_root: Path, limit: int = 10) -> list[dict]:
    """The newest `limit` job records, newest first; records that cannot be read are left out (as JobStore does)."""
    jobs_dir = Path(store_root) / RETRAIN_DIR / "jobs"
    found = []
    for path in jobs_dir.glob("*.json") if jobs_dir.is_dir() else ():
        if path.name.startswith(".tmp-"):
            continue
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(
                record.get("started_epoch"), int | float):
            found.append({field: record.get(field) for field in SHOWN_FIELDS})
    found.sort(key=lambda record: (record["started_epoch"], record["id"]), reverse=True)
    return found[:limit]
