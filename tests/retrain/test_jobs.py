"""Whole jobs as a user runs them: `onnxgate retrain run` in a real process, the real training script in a real
subprocess, a real export (parity) and the real challenge on the holdout. A job ending in a canary, one ending rejected,
and training commands that fail, hang and write nothing."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from modelstore.replay import replay, same_registry
from retrain.lock import model_lock
from retrain.records import JobStore, canonical_sha256
from tests.retrain.conftest import STRONG, WEAK, onnxgate, retrain_json, write_config

STEPS = ["pending", "running", "validation", "deploying"]


def events(store) -> list[dict]:
    return [entry for entry in store.registry.audit.entries() if entry["action"].startswith("retrain_")]


def run(store, *args: str) -> tuple[int, dict, str]:
    code, record, stderr = retrain_json(store, "run", "cancer", *args)
    return code, record, stderr


def test_a_job_that_wins_ends_in_a_canary_with_its_record(store, workdir):
    write_config(store, workdir, command=WEAK)
    code, first, stderr = run(store)
    assert code == 0, stderr
    assert first["status"] == "completed" and first["version"] == "v1.0.0" and first["decision"]["decision"] == "first"
    assert store.registry.read().state.deployment("cancer", "production").version == "v1.0.0"

    write_config(store, workdir, command=STRONG)
    code, record, stderr = run(store)

    assert code == 0, stderr
    assert [step["status"] for step in record["history"]] == [*STEPS, "completed"]
    assert record["trigger"]["trigger"] == "manual" and record["version"] == "v1.1.0"
    assert record["exit_code"] == 0 and record["command"][0] == sys.executable
    validation = record["validation"]
    assert validation["champion"]["version"] == "v1.0.0" and validation["challenger"]["version"] == "v1.1.0"
    assert validation["challenger"]["metrics"]["f1"] >= 1.05 * validation["champion"]["metrics"]["f1"]
    assert validation["parity"]["passed"] and validation["holdout"]["rows"] == 284
    assert record["validation_sha256"] == canonical_sha256(validation)
    assert record["decision"]["decision"] == "won" and record["decision"]["action"] == "canary"
    deployment = store.registry.read().state.deployment("cancer", "production")
    assert deployment.version == "v1.0.0" and deployment.canary.version == "v1.1.0" and deployment.canary.weight == 10
    assert "trained on" in Path(record["log"]).read_text()
    # every step an audit event, in order, naming the job; the registry is what its log says
    steps = [(e["event"], e["details"]["job"]) for e in events(store) if e["details"]["job"] == record["id"]]
    assert steps == [("retrain_requested", record["id"]), ("retrain_training", record["id"]),
                     ("retrain_validating", record["id"]), ("retrain_deploying", record["id"]),
                     ("retrain_completed", record["id"])]
    assert same_registry(replay(store.registry.audit.entries()), store.registry.read().state)
    # jobs newest first, and show
    code, listed, _ = retrain_json(store, "jobs", "cancer")
    assert code == 0 and [job["id"] for job in listed] == [record["id"], first["id"]]
    shown = onnxgate(store, "retrain", "show", record["id"])
    assert shown.returncode == 0 and "completed" in shown.stdout and "v1.1.0" in shown.stdout


def test_a_job_that_loses_ends_rejected_with_the_figures(store, workdir):
    write_config(store, workdir, command=STRONG)
    assert run(store)[0] == 0
    write_config(store, workdir, command=WEAK)

    code, record, stderr = run(store)

    assert code == 9 and "rejected" in stderr and len(stderr.strip().splitlines()) == 1
    assert [step["status"] for step in record["history"]] == [*STEPS, "rejected"]
    assert record["decision"]["decision"] == "rejected" and record["decision"]["action"] is None
    validation = record["validation"]
    assert validation["challenger"]["metrics"]["f1"] < validation["champion"]["metrics"]["f1"]
    assert "did not beat v1.0.0" in record["reason"]
    deployment = store.registry.read().state.deployment("cancer", "production")
    assert deployment.version == "v1.0.0" and deployment.canary is None
    assert [e["event"] for e in events(store)][-1] == "retrain_rejected"
    assert [e for e in store.registry.audit.entries() if e.get("event") == "challenge_decided"][-1]["details"][
        "decision"] == "rejected"


def failed(store, workdir, command: str, **config) -> dict:
    write_config(store, workdir, command=command, **config)
    code, record, stderr = run(store)
    assert code == 11 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert record["status"] == "failed" and record["version"] is None
    assert store.list_models() == []  # nothing exported
    return record


def test_a_failing_training_command_fails_the_job(store, workdir):
    record = failed(store, workdir, '{python} -c "import sys; print(\'bad data\'); sys.exit(3)"')
    assert record["exit_code"] == 3 and "exited with code 3" in record["reason"]
    assert "bad data" in Path(record["log"]).read_text()
    assert [step["status"] for step in record["history"]] == ["pending", "running", "failed"]


def test_a_training_command_that_writes_nothing_fails_the_job(store, workdir):
    record = failed(store, workdir, "{python} -c pass")
    assert record["exit_code"] == 0 and "wrote no model.joblib" in record["reason"]


def test_a_hanging_training_command_is_killed_with_its_process_group(store, workdir, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hang.py"
    script.write_text("import subprocess, sys, time\n"
                      "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                      f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                      "time.sleep(600)\n")
    started = time.monotonic()
    record = failed(store, workdir, f"{{python}} {script}", timeout="2s")
    assert time.monotonic() - started < 120
    assert record["exit_code"] is None and "time limit of 2s" in record["reason"]
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the training command's child outlived the job"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped by its dead parent's reaper yet) is gone for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_check_changes_nothing_and_shows_each_trigger(store, workdir):
    write_config(store, workdir, triggers='schedule = "0 0 * * 0"\nnew_data = { path = "data/window.csv", rows = 100 }\n')
    before = (store.root / "retrain.toml").stat().st_mtime, sorted(p.name for p in store.root.iterdir())
    code, result, stderr = retrain_json(store, "check", "cancer")
    assert code == 0, stderr
    assert result["fires"] == "schedule" and [t["trigger"] for t in result["triggers"]] == ["schedule", "new_data"]
    assert result["triggers"][1]["figures"]["rows"] == 285 and result["triggers"][1]["fires"]
    assert before == ((store.root / "retrain.toml").stat().st_mtime, sorted(p.name for p in store.root.iterdir()))
    assert json.loads(json.dumps(result)) == result


def test_a_job_is_refused_while_another_holds_the_models_lock(store, workdir):
    write_config(store, workdir)
    with model_lock(JobStore(store.root).lock_path("cancer")):
        result = onnxgate(store, "retrain", "run", "cancer")
    assert result.returncode == 13 and "is running" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert JobStore(store.root).jobs() == []


def test_a_winner_the_gates_refuse_ends_rejected_with_their_verdict(store, workdir):
    store.policy_path.write_text("[environments.production]\nmin_metrics = { accuracy = 0.999 }\n")
    write_config(store, workdir, command=STRONG)

    code, record, stderr = run(store)

    assert code == 9 and "gates refused" in stderr, stderr
    assert record["status"] == "rejected" and record["decision"]["decision"] == "first"
    refused = record["decision"]["refused"]
    assert refused is not None and refused["environment"] == "production"
    assert store.registry.read().state.deployment("cancer", "production") is None
    assert store.list_versions("cancer") == ["v1.0.0"]  # exported and registered, never deployed
