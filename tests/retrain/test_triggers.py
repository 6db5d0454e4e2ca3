"""Each trigger firing and not firing, on real files: a real exported model deployed in a real store, traffic written
by the real capture writer with the model's real answers, labels by the real feedback writer; a fixed clock for the
schedule. And retrain.toml refused with the line and field."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from exporters.publish import PublishOptions, export_sklearn
from governance.offline_drift import drift_from_file
from modelstore.deployments import deploy
from modelstore.rollout import start_canary
from modelstore.transitions import Change
from monitoring.drift import DriftThresholds
from retrain.config import parse_config
from retrain.errors import InvalidRetrainConfig
from retrain.records import JobRecord, TriggerFigures
from retrain.triggers import check, count_rows
from tests.governance.conftest import holdout_csv
from tests.retrain.conftest import NAMES, capture, label, onnxgate, write_config

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday
HOUR = 3600.0


def job(started: float, data_rows: int | None = None) -> JobRecord:
    return JobRecord(id="cancer-previous", model="cancer", status="completed", started_epoch=started,
                     trigger=TriggerFigures(trigger="manual", fires=True, reason="test"), data_rows=data_rows)


def settings(store, workdir, triggers: str, cooldown: str = "1h"):
    write_config(store, workdir, triggers=triggers, cooldown=cooldown)
    return parse_config((store.root / "retrain.toml").read_bytes(), "retrain.toml").model("cancer")


def fired(store, workdir, triggers: str, last: JobRecord | None = None, now: float = NOW) -> TriggerFigures:
    result = check(store, "cancer", settings(store, workdir, triggers), last, now)
    [trigger] = result.triggers
    return trigger


@pytest.fixture
def deployed(store, cancer):
    """v1.0.0 exported with the holdout rows as its reference, deployed to production."""
    x_train, y_train, x_hold, _ = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_train, y_train)
    export_sklearn(store, model, name="cancer", version="v1.0.0", sample=x_hold, labels=NAMES,
                   options=PublishOptions(check_node=False))
    deploy(store, "cancer", "v1.0.0", "production")
    return store


# -- schedule ------------------------------------------------------------------------------------------------------

def test_schedule_fires_when_a_scheduled_time_passed_since_the_last_job(store, workdir):
    sunday = datetime(2026, 11, 29, 0, 0, tzinfo=UTC).timestamp()
    weekly = 'schedule = "0 0 * * 0"'
    before = fired(store, workdir, weekly, job(sunday - HOUR), now=NOW)
    assert before.fires and before.figures["last_scheduled"] == "2026-11-29T00:00:00.000Z"
    after = fired(store, workdir, weekly, job(sunday + HOUR), now=NOW)
    assert not after.fires and "not after the last job" in after.reason
    next_sunday = datetime(2026, 12, 6, 0, 1, tzinfo=UTC).timestamp()
    assert fired(store, workdir, weekly, job(sunday + HOUR), now=next_sunday).fires


def test_schedule_before_any_job_counts_from_the_deployment(deployed, workdir):
    deployed_at = datetime.fromisoformat(deployed.registry.read().state.deployment("cancer", "production").deployed_at)
    yearly = 'schedule = "0 0 1 1 *"'
    soon = fired(deployed, workdir, yearly, now=deployed_at.timestamp() + 1)
    assert not soon.fires and "the deployment to production" in soon.reason
    assert fired(deployed, workdir, yearly, now=deployed_at.timestamp() + 367 * 24 * HOUR).fires


# -- new_data ------------------------------------------------------------------------------------------------------

def test_new_data_fires_when_the_rows_grew_by_n_since_the_last_job(store, workdir, cancer):
    path = workdir / "data" / "new.csv"
    x, y = cancer[0], cancer[1]
    holdout_csv(path, x[:150], [NAMES[v] for v in y[:150]], label="diagnosis")
    rule = 'new_data = { path = "data/new.csv", rows = 100 }'
    assert count_rows(path) == 150
    first = fired(store, workdir, rule)
    assert first.fires and first.figures["new_rows"] == 150
    later = fired(store, workdir, rule, job(NOW - 2 * HOUR, data_rows=100))
    assert not later.fires and later.figures == {**later.figures, "rows": 150, "new_rows": 50, "needed": 100}
    holdout_csv(path, x[:250], [NAMES[v] for v in y[:250]], label="diagnosis")
    assert fired(store, workdir, rule, job(NOW - 2 * HOUR, data_rows=100)).fires


def test_new_data_counts_the_rows_of_a_directory(store, workdir, cancer):
    folder = workdir / "data" / "batches"
    folder.mkdir()
    np.save(folder / "a.npy", cancer[0][:60])
    holdout_csv(folder / "b.csv", cancer[0][:50], ["benign"] * 50, label="diagnosis")
    (folder / ".hidden.csv").write_text("a\n1\n2\n")
    assert count_rows(folder) == 110
    assert fired(store, workdir, 'new_data = { path = "data/batches", rows = 110 }').fires
    assert not fired(store, workdir, 'new_data = { path = "data/batches", rows = 111 }').fires


# -- drift ---------------------------------------------------------------------------------------------------------

def test_drift_fires_on_drifted_captured_traffic_with_the_figures_of_onnxgate_drift(deployed, workdir, cancer, tmp_path):
    x_hold = cancer[2]
    drifted = x_hold * 1.8 + x_hold.std(axis=0)
    capture(deployed, "cancer", "v1.0.0", drifted, NOW - HOUR)
    trigger = fired(deployed, workdir, "drift = { share = 0.3, min_rows = 200 }")
    assert trigger.fires and trigger.figures["rows"] == len(x_hold) and trigger.figures["status"] == "drift"
    # the same rows through `onnxgate drift`'s library function give the same share
    np.save(tmp_path / "drifted.npy", drifted)
    offline = drift_from_file(deployed, "cancer", "v1.0.0", tmp_path / "drifted.npy",
                              DriftThresholds(drifted_share=0.3, min_rows=200))
    assert offline.drifted_share == trigger.figures["drifted_share"] >= 0.3


def test_drift_does_not_fire_on_the_reference_distribution_or_too_few_rows(deployed, workdir, cancer):
    x_hold = cancer[2]
    capture(deployed, "cancer", "v1.0.0", x_hold, NOW - HOUR)
    same = fired(deployed, workdir, "drift = { share = 0.3, min_rows = 200 }")
    assert not same.fires and same.figures["status"] == "ok" and same.figures["rows"] == len(x_hold)
    few = fired(deployed, workdir, f"drift = {{ share = 0.3, min_rows = {len(x_hold) + 1} }}")
    assert not few.fires and few.figures["status"] == "insufficient data"
    # rows captured before the last job started do not count again
    after_job = fired(deployed, workdir, "drift = { share = 0.01, min_rows = 1 }", job(NOW - HOUR / 2))
    assert not after_job.fires and after_job.figures["rows"] == 0


# -- degradation ---------------------------------------------------------------------------------------------------

def test_degradation_fires_when_live_accuracy_falls_below_the_bound(deployed, workdir, cancer):
    x_hold, y_hold = cancer[2], cancer[3]
    records = capture(deployed, "cancer", "v1.0.0", x_hold[:150], NOW - HOUR)
    rule = 'degradation = { metric = "accuracy", below = 0.9, min_labels = 100 }'
    label(deployed, "cancer", records, [NAMES[v] for v in y_hold[:150]], NOW - HOUR)
    good = fired(deployed, workdir, rule)
    assert not good.fires and good.figures["labelled_rows"] == 150 and good.figures["value"] > 0.9
    # the world changed: the true labels are now the opposite of what the model answers
    flipped = [NAMES[1 - NAMES.index(record["prediction"][0])] for record in records]
    label(deployed, "cancer", records, flipped, NOW - HOUR / 2)
    bad = fired(deployed, workdir, rule)
    assert bad.fires and bad.figures["value"] == 0.0 and "below 0.9" in bad.reason


def test_degradation_needs_min_labels(deployed, workdir, cancer):
    records = capture(deployed, "cancer", "v1.0.0", cancer[2][:50], NOW - HOUR)
    label(deployed, "cancer", records, ["malignant" if r["prediction"][0] == "benign" else "benign" for r in records],
          NOW - HOUR)
    trigger = fired(deployed, workdir, 'degradation = { metric = "accuracy", below = 0.9, min_labels = 51 }')
    assert not trigger.fires and trigger.figures["labelled_rows"] == 50 and "fewer than 51" in trigger.reason


# -- cooldown and the file -----------------------------------------------------------------------------------------

def test_the_cooldown_holds_back_a_firing_trigger(store, workdir):
    rule = 'schedule = "* * * * *"'
    fresh = check(store, "cancer", settings(store, workdir, rule, cooldown="1h"), job(NOW - 10 * 60), NOW)
    assert fresh.triggers[0].fires and fresh.firing is None and fresh.cooldown_until == NOW - 10 * 60 + HOUR
    old = check(store, "cancer", settings(store, workdir, rule, cooldown="1h"), job(NOW - 2 * HOUR), NOW)
    assert old.firing is not None and old.firing.trigger == "schedule"


@pytest.mark.parametrize(("edit", "expected"), [
    ('cooldwn = "1h"\n', "line 7: models.cancer.cooldwn: unknown field (did you mean 'cooldown'?)"),
    ('\n[models.cancer.triggers]\nschedule = "every sunday"\n', "line 13: models.cancer.triggers.schedule: not a cron"),
    ('\n[models.cancer.triggers]\ndrift = { share = 3 }\n', "line 13: models.cancer.triggers.drift.share"),
    ('\n[models.cancer.triggers]\nnew_data = { path = "x", rowz = 3 }\n',
     "line 13: models.cancer.triggers.new_data.rowz: unknown field (did you mean 'rows'?)"),
])
def test_a_bad_retrain_toml_is_refused_naming_the_line_and_field(store, workdir, edit, expected):
    write_config(store, workdir)
    text = (store.root / "retrain.toml").read_text().splitlines(keepends=True)
    if edit.startswith("\n"):
        text.append(edit)
    else:
        text.insert(6, edit)
    (store.root / "retrain.toml").write_text("".join(text))
    with pytest.raises(InvalidRetrainConfig, match=re.escape(f"retrain.toml: {expected}")):
        parse_config((store.root / "retrain.toml").read_bytes(), "retrain.toml")
    result = onnxgate(store, "retrain", "check", "cancer")
    assert result.returncode == 12 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expected.split(": ", 1)[1][:20] in result.stderr


def test_a_running_canary_holds_every_trigger_back(deployed, workdir, cancer):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(cancer[0], cancer[1])
    export_sklearn(deployed, model, name="cancer", version="v1.1.0", sample=cancer[2], labels=NAMES,
                   options=PublishOptions(check_node=False))
    start_canary(deployed, "cancer", "v1.1.0", "production", 10, [], None, Change())
    result = check(deployed, "cancer", settings(deployed, workdir, 'schedule = "* * * * *"'), job(NOW - 2 * HOUR), NOW)
    assert result.triggers[0].fires and result.firing is None and result.canary == "v1.1.0"
