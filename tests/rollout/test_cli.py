"""The rollout commands as a user runs them: a real `onnxgate` process per command, on a real store."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def onnxgate(store, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "onnxgate", *args, "--store", str(store.root)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def prod(store):
    return store.registry.read().state.deployment("tiny", "prod")


def test_canary_steps_promote_and_rollback(make_rollout_store):
    store = make_rollout_store()
    started = onnxgate(store, "canary", "tiny", "v1.1.0", "--env", "prod", "--steps", "5,25,50,100", "--interval", "10m",
                       "--max-error-rate", "0.02", "--window", "30s", "--actor", "alice", "--reason", "new features")
    assert started.returncode == 0, started.stderr
    assert "5% of traffic" in started.stdout and "every 600s" in started.stdout
    canary = prod(store).canary
    assert (canary.weight, canary.steps, canary.interval_s) == (5, [25, 50, 100], 600)
    assert (prod(store).slo.max_error_rate, prod(store).slo.window_s) == (0.02, 30)

    promoted = onnxgate(store, "promote", "tiny", "--env", "prod", "--bake", "1h", "--json")
    assert promoted.returncode == 0, promoted.stderr
    payload = json.loads(promoted.stdout)
    assert (payload["action"], payload["before"], payload["after"]) == ("promote", "v1.0.0", "v1.1.0")
    assert prod(store).version == "v1.1.0" and prod(store).bake.previous_version == "v1.0.0"

    rolled = onnxgate(store, "rollback", "tiny", "--env", "prod")
    assert rolled.returncode == 0 and "v1.1.0 -> v1.0.0" in rolled.stdout
    entries = store.registry.audit.entries()
    assert [e["action"] for e in entries[-3:]] == ["canary", "promote", "rollback"]
    assert (entries[-3]["actor"], entries[-3]["reason"]) == ("alice", "new features")


def test_rollback_with_a_canary_rolls_back_the_canary(make_rollout_store):
    store = make_rollout_store()
    assert onnxgate(store, "canary", "tiny", "latest", "--env", "prod", "--weight", "10").returncode == 0
    refused = onnxgate(store, "rollback", "tiny", "--env", "prod", "--to", "v1.2.0")
    assert refused.returncode == 1 and "roll it back first" in refused.stderr and refused.stderr.count("\n") == 1
    rolled = onnxgate(store, "rollback", "tiny", "--env", "prod")
    assert rolled.returncode == 0 and "rolled back the canary tiny v1.3.0" in rolled.stdout
    assert prod(store).canary is None and prod(store).version == "v1.0.0"


def test_shadow_start_and_stop(make_rollout_store):
    store = make_rollout_store()
    started = onnxgate(store, "shadow", "tiny", "v1.2.0", "--env", "prod", "--weight", "100")
    assert started.returncode == 0, started.stderr
    assert prod(store).shadow.version == "v1.2.0"
    assert onnxgate(store, "shadow", "tiny", "--env", "prod", "--stop").returncode == 0
    assert prod(store).shadow is None
    assert onnxgate(store, "shadow", "tiny", "--env", "prod", "--stop").returncode == 1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["canary", "tiny", "v1.1.0", "--env", "prod"], 2, "give --weight"),
    (["canary", "tiny", "v1.1.0", "--env", "prod", "--weight", "10", "--steps", "50", "--interval", "soon"], 2,
     "invalid duration"),
    (["canary", "tiny", "v1.1.0", "--env", "prod", "--weight", "120"], 2, "at most 100"),
    (["canary", "tiny", "v9.9.9", "--env", "prod", "--weight", "10"], 3, "no version"),
    (["promote", "tiny", "--env", "prod"], 1, "no canary"),
    (["shadow", "tiny", "--env", "prod"], 2, "give the VERSION"),
])
def test_errors_are_one_line_and_a_nonzero_exit(make_rollout_store, args, code, message):
    store = make_rollout_store()
    result = onnxgate(store, *args)
    assert result.returncode == code and message in result.stderr, result.stderr


def test_audit_replay_checks_the_registry_against_its_log_and_restores_a_lost_one(make_rollout_store):
    store = make_rollout_store()
    for command in (["canary", "tiny", "v1.1.0", "--env", "prod", "--weight", "10", "--window", "30s"],
                    ["promote", "tiny", "--env", "prod"], ["shadow", "tiny", "v1.3.0", "--env", "prod"],
                    ["rollback", "tiny", "--env", "prod", "--reason", "latency"]):
        assert onnxgate(store, *command).returncode == 0
    replayed = onnxgate(store, "audit", "replay")
    assert replayed.returncode == 0 and replayed.stdout.startswith("OK "), replayed.stderr
    original = store.registry_path.read_bytes()

    edited = json.loads(original)
    edited["deployments"]["tiny"]["prod"]["version"] = "v1.2.0"  # a change nobody logged
    store.registry_path.write_text(json.dumps(edited))
    mismatch = onnxgate(store, "audit", "replay", "--json")
    assert mismatch.returncode == 5 and json.loads(mismatch.stdout)["ok"] is False

    store.registry_path.unlink()
    missing = onnxgate(store, "status")
    assert missing.returncode == 5 and "is missing" in missing.stderr and "Traceback" not in missing.stderr
    assert onnxgate(store, "audit", "replay", "--restore").returncode == 0
    assert json.loads(store.registry_path.read_bytes()) == json.loads(original)
    assert onnxgate(store, "audit", "replay").returncode == 0


def test_canary_guardrail_flags_are_stored_as_the_deployments_slo(make_rollout_store):
    store = make_rollout_store()
    started = onnxgate(store, "canary", "tiny", "v1.1.0", "--env", "prod", "--weight", "10",
                       "--max-prediction-distance", "0.1", "--min-prediction-rows", "300", "--max-quality-drop", "0.05",
                       "--min-labels", "500")
    assert started.returncode == 0, started.stderr
    slo = prod(store).slo
    assert (slo.max_prediction_distance, slo.min_prediction_rows, slo.max_quality_drop, slo.min_labels) \
        == (0.1, 300, 0.05, 500)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--max-prediction-distance", "1.5", "max_prediction_distance must be above 0 and at most 1"),
    ("--min-prediction-rows", "0", "min_prediction_rows must be at least 1"),
    ("--max-quality-drop", "-0.1", "max_quality_drop must be between 0 and 1"),
    ("--min-labels", "0", "min_labels must be at least 1"),
])
def test_invalid_guardrail_values_are_a_clear_error_and_change_nothing(make_rollout_store, flag, value, message):
    store = make_rollout_store()
    result = onnxgate(store, "canary", "tiny", "v1.1.0", "--env", "prod", "--weight", "10", flag, value)
    assert result.returncode != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert prod(store).canary is None
