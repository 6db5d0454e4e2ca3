"""Job records: one JSON file per job in the store, written whole (temp file + rename) at every status change.

    <store>/.retrain/jobs/<job-id>.json    the record (JobRecord)
    <store>/.retrain/jobs/<job-id>.log     the training command's output
    <store>/.retrain/work/<job-id>/        {output}: what the training command writes
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from modelstore.layout import RETRAIN_DIR
from modelstore.versions import check_name
from retrain.errors import JobNotFound

Status = Literal["pending", "running", "validation", "deploying", "completed", "rejected", "failed", "abandoned"]
FINAL: frozenset[str] = frozenset({"completed", "rejected", "failed", "abandoned"})


class TriggerFigures(BaseModel):
    """Why a trigger fires or not, with the figures it was decided on."""

    trigger: str
    fires: bool
    reason: str
    figures: dict = Field(default_factory=dict)


class StatusTime(BaseModel):
    status: Status
    time: str


class JobRecord(BaseModel):
    id: str
    model: str
    status: Status
    trigger: TriggerFigures
    history: list[StatusTime] = Field(default_factory=list, description="each status with its time (UTC, ISO 8601)")
    started_epoch: float = Field(description="when the job was recorded (epoch seconds): triggers count from here")
    command: list[str] = Field(default_factory=list, description="the training command as run (placeholders filled)")
    workdir: str | None = None
    output: str | None = None
    log: str | None = None
    data_rows: int | None = Field(default=None, description="rows of the new_data path when the job started")
    exit_code: int | None = None
    version: str | None = Field(default=None, description="the version the job exported")
    validation: dict | None = Field(default=None, description="export checks and both models' metrics on the holdout")
    validation_sha256: str | None = Field(default=None, description="sha256 of the canonical JSON of `validation`")
    decision: dict | None = Field(default=None, description="the challenge's decision and what it started")
    reason: str | None = Field(default=None, description="why the job failed, was rejected or abandoned")
    signal: str | None = Field(default=None, description="what a SIGTERM during the job did: finished or abandoned")
    mlflow_run: str | None = Field(default=None, description="the job's MLflow run id, when tracking is on")

    def stamp(self, status: Status, now: float | None = None) -> None:
        self.status = status
        self.history.append(StatusTime(status=status, time=iso(time.time() if now is None else now)))


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_sha256(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobStore:
    """The job records and work directories of one store."""

    def __init__(self, store_root: Path) -> None:
        self.root = Path(store_root).absolute() / RETRAIN_DIR  # the training command runs elsewhere: {output} is absolute
        self.jobs_dir = self.root / "jobs"

    def new_id(self, model: str, now: float) -> str:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M%S")
        return f"{check_name(model)}-{stamp}-{secrets.token_hex(3)}"

    def record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{check_name(job_id)}.json"

    def log_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{check_name(job_id)}.log"

    def output_dir(self, job_id: str) -> Path:
        return self.root / "work" / check_name(job_id)

    def lock_path(self, model: str) -> Path:
        return self.root / "locks" / f"{check_name(model)}.lock"

    def write(self, record: JobRecord) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        path = self.record_path(record.id)
        temp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        temp.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)

    def read(self, job_id: str) -> JobRecord:
        try:
            return JobRecord.model_validate_json(self.record_path(job_id).read_bytes())
        except (FileNotFoundError, ValueError):
            raise JobNotFound(f"no retraining job {job_id!r} in {self.jobs_dir}") from None

    def jobs(self, model: str | None = None) -> list[JobRecord]:
        """Newest first; records that do not validate (a hand edit) are left out."""
        found = []
        for path in self.jobs_dir.glob("*.json") if self.jobs_dir.is_dir() else ():
            if path.name.startswith(".tmp-"):
                continue
            try:
                record = JobRecord.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                continue
            if model is None or record.model == model:
                found.append(record)
        return sorted(found, key=lambda record: (record.started_epoch, record.id), reverse=True)

    def last(self, model: str) -> JobRecord | None:
        jobs = self.jobs(model)
        return jobs[0] if jobs else None
