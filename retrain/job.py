"""One retraining job: pending -> running (the training command) -> validation (export to the next free version,
the challenge measured on the holdout) -> deploying (governance's challenge: a canary if the new version wins and the
gates let it) -> completed, rejected, failed or abandoned. The record is written at every status and every status is
an audit event (retrain_<status>); the whole job holds the model's lock."""
from __future__ import annotations

import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from governance.challenge import CanaryOverrides, ChallengeResult, ChallengeRules, challenge
from modelstore.errors import StoreError
from modelstore.events import record_event
from modelstore.layout import Store
from modelstore.transitions import Change
from retrain.config import ModelRetraining
from retrain.export_step import export_artifact, next_version
from retrain.lock import model_lock
from retrain.records import JobRecord, JobStore, Status, TriggerFigures, canonical_sha256
from retrain.runner import LocalRunner, Runner, TrainingSpec
from retrain.tracking import log_job
from retrain.triggers import count_rows

ACTOR = "onnxgate-retrain"


class _JobEnded(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class JobContext:
    store: Store
    name: str
    settings: ModelRetraining
    runner: Runner = field(default_factory=LocalRunner)
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    actor: str = ACTOR
    job_id: str | None = None  # given by a caller that answers with it before the job starts (the ops API)


def run_job(context: JobContext, decide: Callable[[JobRecord | None], TriggerFigures | None]) -> JobRecord | None:
    """Take the model's lock (JobBusy if held), ask `decide` (given the model's last job, read under the lock) what
    starts the job, and run it; None when `decide` says nothing does (a watcher that lost a race to another)."""
    jobs = JobStore(context.store.root)
    with model_lock(jobs.lock_path(context.name)):
        trigger = decide(jobs.last(context.name))
        if trigger is None:
            return None
        return _Job(context, jobs, trigger).run()


class _Job:
    def __init__(self, context: JobContext, jobs: JobStore, trigger: TriggerFigures) -> None:
        self.context = context
        self.jobs = jobs
        now = context.clock()
        job_id = context.job_id or jobs.new_id(context.name, now)
        self.record = JobRecord(id=job_id, model=context.name, status="pending", trigger=trigger, started_epoch=now,
                                workdir=str(context.settings.workdir_path()), output=str(jobs.output_dir(job_id)),
                                log=str(jobs.log_path(job_id)))
        self.change = Change(actor=context.actor, reason=f"retraining job {job_id} ({trigger.trigger})")

    @property
    def settings(self) -> ModelRetraining:
        return self.context.settings

    def run(self) -> JobRecord:
        if self.settings.triggers.new_data is not None:
            self.record.data_rows = count_rows(self.settings.path(self.settings.triggers.new_data.path))
        self._enter("pending", {"trigger": self.record.trigger.model_dump()})
        try:
            output = self._train()
            result = self._validate(output)
            self._deploy(result)
        except _JobEnded as ended:
            self.record.reason = ended.reason
            self._enter(ended.status, {"reason": ended.reason})
        except Exception as exc:  # noqa: BLE001 - a job never takes its watcher down; the log keeps the traceback
            with open(self.jobs.log_path(self.record.id), "a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
            self.record.reason = f"{type(exc).__name__}: {exc}"
            self._enter("failed", {"reason": self.record.reason})
        run_id = log_job(self.record, self.settings.challenge.environment)
        if run_id is not None:
            self.record.mlflow_run = run_id
            self.jobs.write(self.record)
        return self.record

    def _enter(self, status: Status, details: dict) -> None:
        if self.context.stop.is_set() and self.record.signal is None and status != "abandoned":
            self.record.signal = "finished"
        self.record.stamp(status, self.context.clock())
        try:  # audited before the record shows the status: whoever sees a job's status finds its audit entry
            record_event(self.context.store, f"retrain_{status}", self.context.name,
                         self.settings.challenge.environment, self.record.version,
                         {"job": self.record.id, "status": status, **details}, self.change)
        finally:
            self.jobs.write(self.record)

    def _train(self) -> Path:
        output = self.jobs.output_dir(self.record.id)
        output.mkdir(parents=True)
        argv = self._argv(output)
        self.record.command = argv
        self._enter("running", {"command": argv, "log": self.record.log})
        spec = TrainingSpec(self.record.id, argv, self.settings.workdir_path(), output,
                            self.jobs.log_path(self.record.id), self.settings.timeout,
                            env={"ONNXGATE_RETRAIN_JOB": self.record.id})
        result = self.context.runner.run(spec, self.context.stop)
        self.record.exit_code = result.exit_code
        if result.error is not None:
            raise _JobEnded("failed", result.error)
        if result.stopped:
            self.record.signal = "abandoned"
            raise _JobEnded("abandoned", f"SIGTERM while training: the command was stopped after "
                                         f"{result.duration_s:.0f}s, nothing was exported")
        if result.timed_out:
            raise _JobEnded("failed", f"the training command ran past its time limit of {self.settings.timeout:g}s "
                                      f"and was killed (its process group)")
        if result.exit_code != 0:
            raise _JobEnded("failed", f"the training command exited with code {result.exit_code}; see {spec.log}")
        artifact = output / self.settings.artifact
        if not artifact.is_file() or artifact.stat().st_size == 0:
            raise _JobEnded("failed", f"the training command exited 0 but wrote no {self.settings.artifact} in "
                                      f"{output}")
        return output

    def _argv(self, output: Path) -> list[str]:
        data = self.settings.data_window
        values = {"{output}": str(output), "{python}": sys.executable, "{job}": self.record.id,
                  "{data}": str(self.settings.path(data)) if data else None}
        argv = []
        for token in shlex.split(self.settings.command):
            for placeholder, value in values.items():
                if placeholder in token:
                    if value is None:
                        raise _JobEnded("failed", f"the command uses {placeholder} but retrain.toml names no data "
                                                  "window (data, or triggers.new_data.path)")
                    token = token.replace(placeholder, value)
            argv.append(token)
        if not argv:
            raise _JobEnded("failed", "the command is empty")
        return argv

    def _challenge(self, version: str, dry_run: bool) -> ChallengeResult:
        rules = self.settings.challenge
        holdout = self.settings.holdout
        return challenge(self.context.store, self.context.name, version, rules.environment,
                         self.settings.path(holdout.data), holdout.label,
                         rules=ChallengeRules(metric=rules.metric, min_improvement=rules.min_improvement,
                                              resamples=rules.resamples, seed=rules.seed),
                         canary=CanaryOverrides(rules.weight, tuple(rules.steps) if rules.steps else None,
                                                rules.interval),
                         change=self.change, dry_run=dry_run)

    def _validate(self, output: Path) -> ChallengeResult:
        version = next_version(self.context.store, self.context.name)
        self._enter("validation", {"version": version})
        try:
            metadata = export_artifact(self.context.store, self.context.name, version, self.settings, output,
                                       self.change)
            self.record.version = version  # exported: registered from here on, whatever the challenge says
            measured = self._challenge(version, dry_run=True)
        except StoreError as exc:
            raise _JobEnded("failed", f"validation of {version}: {exc}") from None
        details = measured.details
        validation = {
            "version": version, "model_sha256": metadata.model_sha256,
            "parity": metadata.parity.model_dump(mode="json"),
            "node": metadata.node_compatibility.model_dump(mode="json"),
            "holdout": {"dataset": details["dataset"], "dataset_sha256": details["dataset_sha256"],
                        "rows": details["rows"]},
            "metric": details["metric"],
            "champion": {"version": details["champion"], "metrics": details["champion_metrics"]},
            "challenger": {"version": version, "metrics": details["challenger_metrics"]},
            "verdict": {key: details[key] for key in ("decision", "champion_value", "challenger_value", "margin",
                                                      "significance")},
        }
        self.record.validation = validation
        self.record.validation_sha256 = canonical_sha256(validation)
        return measured

    def _deploy(self, measured: ChallengeResult) -> None:
        self._enter("deploying", {"validation_sha256": self.record.validation_sha256,
                                  "decision": measured.verdict.decision})
        try:
            result = self._challenge(self.record.version, dry_run=False)
        except StoreError as exc:
            raise _JobEnded("failed", f"challenge of {self.record.version}: {exc}") from None
        verdict = result.verdict
        outcome = result.outcome
        self.record.decision = {
            "decision": verdict.decision, "metric": verdict.metric, "champion": verdict.champion,
            "champion_value": verdict.champion_value, "challenger_value": verdict.challenger_value,
            "reasons": verdict.reasons,
            "action": outcome.action if outcome else None,
            "weight": outcome.details.get("weight") if outcome else None,
            "refused": result.refused.verdict if result.refused else None,
        }
        if result.refused is not None:
            raise _JobEnded("rejected", f"{self.record.version} won but the gates refused it: {result.refused}")
        if verdict.decision == "rejected":
            raise _JobEnded("rejected", f"{self.record.version} did not beat {verdict.champion}: "
                                        f"{'; '.join(verdict.reasons)}")
        self._enter("completed", {"decision": verdict.decision, "action": outcome.action if outcome else None})
