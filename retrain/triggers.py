"""Whether each configured trigger fires now, why, and the figures: read-only (nothing here writes).

Automatic triggers count from the last job of the model (rows captured and labels received since it started, rows
added to the new_data path since it started, scheduled times after it started); within `cooldown` of its start none
fires, so one cause does not start a job per check, and none fires while a canary runs in the environment (the last
winner is still being judged). `manual` always fires.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from croniter import croniter

from modelstore.clock import epoch_seconds
from modelstore.layout import Store
from monitoring.capture import read_captures
from monitoring.drift import DriftLayout, DriftThresholds, drift_report
from monitoring.quality import live_quality
from retrain.config import DegradationTrigger, DriftTrigger, ModelRetraining, NewDataTrigger
from retrain.records import JobRecord, TriggerFigures, iso

AUTOMATIC = ("drift", "degradation", "schedule", "new_data")


@dataclass(frozen=True)
class CheckResult:
    model: str
    triggers: list[TriggerFigures]
    cooldown_until: float | None  # epoch seconds; None: no cooldown now
    last_job: str | None
    canary: str | None = None  # the version of a canary running in the environment: it holds every trigger back

    @property
    def firing(self) -> TriggerFigures | None:
        """The first automatic trigger that fires, unless the cooldown or a running canary holds them all back."""
        if self.cooldown_until is not None or self.canary is not None:
            return None
        return next((trigger for trigger in self.triggers if trigger.fires), None)

    def as_json(self) -> dict:
        return {"model": self.model, "fires": self.firing.trigger if self.firing else None,
                "cooldown_until": iso(self.cooldown_until) if self.cooldown_until else None,
                "last_job": self.last_job, "canary": self.canary, "triggers": [trigger.model_dump() for trigger in self.triggers]}


def check(store: Store, name: str, settings: ModelRetraining, last: JobRecord | None, now: float) -> CheckResult:
    since_job = last.started_epoch if last is not None else None
    triggers = settings.triggers
    found = []
    if triggers.drift is not None:
        found.append(drift_trigger(store, name, settings.challenge.environment, triggers.drift, since_job, now))
    if triggers.degradation is not None:
        found.append(degradation_trigger(store, name, settings.challenge.environment, triggers.degradation,
                                         since_job, now))
    if triggers.schedule is not None:
        found.append(schedule_trigger(store, name, settings.challenge.environment, triggers.schedule, since_job, now))
    if triggers.new_data is not None:
        found.append(new_data_trigger(settings, triggers.new_data, last, now))
    cooldown_until = None
    if since_job is not None and now < since_job + settings.cooldown:
        cooldown_until = since_job + settings.cooldown
    deployment = store.registry.read().state.deployment(name, settings.challenge.environment)
    canary = deployment.canary.version if deployment is not None and deployment.canary is not None else None
    return CheckResult(name, found, cooldown_until, last.id if last else None, canary)


def manual_trigger(reason: str = "run by hand") -> TriggerFigures:
    return TriggerFigures(trigger="manual", fires=True, reason=reason)


def _stable_version(store: Store, name: str, environment: str) -> tuple[str | None, str | None]:
    deployment = store.registry.read().state.deployment(name, environment)
    return (deployment.version, deployment.deployed_at) if deployment else (None, None)


def drift_trigger(store: Store, name: str, environment: str, rule: DriftTrigger, since_job: float | None,
                  now: float) -> TriggerFigures:
    """The captured requests of the stable version in the environment, counted into its DriftLayout and judged by
    drift_report: the same code and figures as `onnxgate drift` and the gateway's GET /drift."""
    version, _ = _stable_version(store, name, environment)
    if version is None:
        return TriggerFigures(trigger="drift", fires=False, reason=f"{name} is not deployed to {environment}")
    metadata = store.read_metadata(name, version)
    layout = DriftLayout.of(metadata)
    if layout is None:
        return TriggerFigures(trigger="drift", fires=False, reason=f"{name} {version} has no reference statistics")
    since = max(now - rule.window, since_job or 0.0)
    feature_counts = layout.empty_feature_counts()
    prediction_counts = layout.empty_prediction_counts()
    rows = 0
    for record in read_captures(store.root, name, environment, since):
        if record.get("version") != version or not isinstance(record.get("inputs"), dict):
            continue
        try:
            table = layout.feature_table({key: np.asarray(value) for key, value in record["inputs"].items()})
        except ValueError:  # ragged lists: not a tensor
            continue
        if table is None:
            continue
        feature_counts += layout.count_features(table)
        rows += table.shape[0]
        outputs = record.get("outputs")
        if layout.has_prediction_reference and isinstance(outputs, dict):
            with contextlib.suppress(ValueError):
                prediction_counts += layout.count_predictions({k: np.asarray(v) for k, v in outputs.items()})
    thresholds = DriftThresholds(psi=rule.psi, ks=rule.ks, drifted_share=rule.share, min_rows=rule.min_rows)
    report = drift_report(layout, feature_counts, prediction_counts, rows, thresholds, model=name, version=version,
                          environment=environment)
    figures = {"version": version, "since": iso(since), "rows": rows, "min_rows": rule.min_rows,
               "drifted_share": report.drifted_share, "share": rule.share, "status": report.status,
               "drifted_features": [feature.name for feature in report.features if feature.drifted]}
    if report.status == "insufficient data":
        reason = f"{rows} captured rows of {version} since {iso(since)}, fewer than {rule.min_rows}"
    else:
        reason = (f"{report.drifted_share:.0%} of the features drifted over {rows} captured rows of {version} "
                  f"(fires at {rule.share:.0%})")
    return TriggerFigures(trigger="drift", fires=report.status == "drift", reason=reason, figures=figures)


def degradation_trigger(store: Store, name: str, environment: str, rule: DegradationTrigger, since_job: float | None,
                        now: float) -> TriggerFigures:
    version, _ = _stable_version(store, name, environment)
    if version is None:
        return TriggerFigures(trigger="degradation", fires=False, reason=f"{name} is not deployed to {environment}")
    since = max(now - rule.window, since_job or 0.0)
    report = live_quality(store.root, name, environment, now - since, now=now)
    arm = report.arm(version, "stable")
    labelled = arm.labelled_rows if arm else 0
    value = getattr(arm, rule.metric) if arm else None
    bound = rule.below if rule.below is not None else rule.above
    figures = {"version": version, "since": iso(since), "metric": rule.metric, "value": value,
               "labelled_rows": labelled, "min_labels": rule.min_labels,
               "below" if rule.below is not None else "above": bound}
    if value is None or labelled < rule.min_labels:
        return TriggerFigures(trigger="degradation", fires=False, figures=figures,
                              reason=f"{labelled} labelled rows of {version} since {iso(since)}, fewer than "
                                     f"{rule.min_labels}")
    fires = value < rule.below if rule.below is not None else value > rule.above
    side = "below" if rule.below is not None else "above"
    reason = (f"live {rule.metric} of {version} {value:.4f} on {labelled} labelled rows "
              f"{'is' if fires else 'is not'} {side} {bound}")
    return TriggerFigures(trigger="degradation", fires=fires, reason=reason, figures=figures)


def schedule_trigger(store: Store, name: str, environment: str, expression: str, since_job: float | None,
                     now: float) -> TriggerFigures:
    """Fires when a scheduled time passed since the last job started (before any job: since the environment's
    deployment; with neither, at the first scheduled time)."""
    scheduled = croniter(expression, datetime.fromtimestamp(now, UTC)).get_prev(float)
    anchor, what = since_job, "the last job"
    if anchor is None:
        _, deployed_at = _stable_version(store, name, environment)
        anchor, what = (epoch_seconds(deployed_at), f"the deployment to {environment}") if deployed_at else (None, "")
    figures = {"cron": expression, "last_scheduled": iso(scheduled), "since": iso(anchor) if anchor else None}
    if anchor is None:
        return TriggerFigures(trigger="schedule", fires=True, figures=figures,
                              reason=f"scheduled at {iso(scheduled)}, no job or deployment before it")
    fires = scheduled > anchor
    reason = (f"scheduled at {iso(scheduled)}, {'after' if fires else 'not after'} {what} ({iso(anchor)})")
    return TriggerFigures(trigger="schedule", fires=fires, reason=reason, figures=figures)


def new_data_trigger(settings: ModelRetraining, rule: NewDataTrigger, last: JobRecord | None,
                     now: float) -> TriggerFigures:
    path = settings.path(rule.path)
    rows = count_rows(path)
    baseline = last.data_rows if last is not None and last.data_rows is not None else 0
    grown = rows - baseline
    figures = {"path": str(path), "rows": rows, "since_last_job": baseline, "new_rows": grown, "needed": rule.rows}
    fires = grown >= rule.rows
    reason = (f"{path} has {rows} rows, {grown} more than at the last job ({baseline}); fires at {rule.rows}"
              if last is not None else f"{path} has {rows} rows and no job has run yet; fires at {rule.rows}")
    return TriggerFigures(trigger="new_data", fires=fires, reason=reason, figures=figures)


def count_rows(path: Path) -> int:
    """Rows of a file (.csv: lines after the header; .npy: the first dimension; else lines) or of the files of a
    directory (recursively, dot files left out); 0 when the path does not exist."""
    if path.is_dir():
        total = 0
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            total += sum(count_rows(Path(folder) / file) for file in files if not file.startswith("."))
        return total
    if not path.is_file():
        return 0
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return 0
        return int(array.shape[0]) if array.ndim else 0
    with open(path, "rb") as handle:
        data = handle.read()
    lines = sum(1 for line in data.splitlines() if line.strip())
    return max(lines - 1, 0) if path.suffix.lower() == ".csv" else lines
