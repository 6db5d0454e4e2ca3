"""`onnxgate capture`: a deployment's capture rate, through the transition API (audited, replayable, kept across
redeploys), as a user runs it."""
from __future__ import annotations

import json

from modelstore.replay import replay, same_registry
from tests.cli.test_store_commands import onnxgate
from tests.factories import deploy_version, make_store, publish_classifier


def test_capture_rate_is_set_audited_replayed_and_kept_across_redeploys(tmp_path):
    store = make_store(tmp_path / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    deploy_version(store, "iris", "v1.0.0", "production")

    set_rate = onnxgate("capture", "iris", "--env", "production", "--rate", "0.25", "--actor", "ops", "--json",
                        store=store)
    assert set_rate.returncode == 0, set_rate.stderr
    assert json.loads(set_rate.stdout)["details"] == {"rate": 0.25, "previous_rate": None}
    again = onnxgate("capture", "iris", "--env", "production", "--rate", "0.25", store=store)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    deploy_version(store, "iris", "v2.0.0", "production")
    state = store.registry.read().state
    assert state.deployments["iris"]["production"].capture_rate == 0.25

    assert onnxgate("capture", "iris", "--env", "production", "--default", "--actor", "ops", store=store).returncode == 0
    assert store.registry.read().state.deployments["iris"]["production"].capture_rate is None

    entries = store.registry.audit.entries()
    captures = [(e["action"], e["event"], e["actor"], e["details"]["rate"]) for e in entries if e["action"] == "capture"]
    assert captures == [("capture", "capture_configured", "ops", 0.25), ("capture", "capture_configured", "ops", None)]
    assert same_registry(replay(entries), store.registry.read().state)
    assert onnxgate("audit", "replay", store=store).returncode == 0


def test_capture_refusals(tmp_path):
    store = make_store(tmp_path / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    deploy_version(store, "iris", "v1.0.0", "production")
    for args, code in ((["--rate", "1.5"], 2), (["--rate", "nan"], 2), ([], 2), (["--rate", "0.1", "--default"], 2)):
        result = onnxgate("capture", "iris", "--env", "production", *args, store=store)
        assert result.returncode == code, (args, result.stderr)
    not_deployed = onnxgate("capture", "iris", "--env", "staging", "--rate", "0.1", store=store)
    assert not_deployed.returncode == 3 and "staging" in not_deployed.stderr
    unknown = onnxgate("quality", "nosuch", "--env", "production", store=store)
    assert unknown.returncode == 3 and len(unknown.stderr.splitlines()) == 1
    empty = onnxgate("quality", "iris", "--env", "production", "--json", store=store)
    assert empty.returncode == 0 and json.loads(empty.stdout)["arms"] == []
