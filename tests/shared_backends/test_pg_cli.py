"""The CLI with its registry in PostgreSQL (--registry URL, or ONNXGATE_REGISTRY_URL): a rollout's commands through
the real entry point in subprocesses, the audit chain they leave, and the one-line errors of a registry that cannot be
used. The versions' files stay in the store directory, which then holds no registry.json or audit.log."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from modelstore.layout import AUDIT_FILE, REGISTRY_FILE, Store
from tests.factories import deploy_version, free_port, publish_classifier


def onnxgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    return subprocess.run([sys.executable, "-m", "onnxgate", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def test_a_rollout_through_the_cli_is_recorded_in_postgres(pg_store: Store, registry_url: str):
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    publish_classifier(pg_store, "iris", "v2.0.0", seed=2)
    where = ["--store", str(pg_store.root), "--registry", registry_url]
    steps = [
        ["deploy", "iris", "v1.0.0", "--env", "production", "--actor", "ana", "--reason", "first"],
        ["canary", "iris", "v2.0.0", "--env", "production", "--weight", "10"],
        ["promote", "iris", "--env", "production", "--bake", "0"],
        ["rollback", "iris", "--env", "production", "--reason", "bad numbers"],
    ]
    for step in steps:
        done = onnxgate(*step, *where)
        assert done.returncode == 0, (step, done.stderr)

    deployment = pg_store.registry.read().state.deployments["iris"]["production"]
    assert deployment.version == "v1.0.0" and deployment.canary is None
    history = onnxgate("history", "iris", "--json", *where)
    assert history.returncode == 0, history.stderr
    actions = [e["action"] for e in json.loads(history.stdout)]
    assert actions[-4:] == ["deploy", "canary", "promote", "rollback"], actions
    verified = onnxgate("audit", "verify", "--json", *where)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["anchored"] and report["lines"] == report["anchored_lines"] == len(actions)
    replayed = onnxgate("audit", "replay", "--json", *where)
    assert replayed.returncode == 0 and json.loads(replayed.stdout)["ok"], replayed.stderr
    assert not (pg_store.root / REGISTRY_FILE).exists() and not (pg_store.root / AUDIT_FILE).exists()


def test_the_registry_url_comes_from_the_environment_too(pg_store: Store, registry_url: str):
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    deploy_version(pg_store, "iris", "v1.0.0", "staging")
    status = onnxgate("status", "--json", "--store", str(pg_store.root), env={"ONNXGATE_REGISTRY_URL": registry_url})
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert (row["model"], row["environment"], row["version"]) == ("iris", "staging", "v1.0.0")
    file_store = onnxgate("status", "--json", "--store", str(pg_store.root))
    assert file_store.returncode == 0 and json.loads(file_store.stdout) == []


def test_a_registry_that_cannot_be_used_is_one_line_and_an_exit_code(pg_store: Store):
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    lost = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/gone"
    for args, message in ((["deploy", "iris", "v1.0.0", "--env", "production", "--registry", lost], "cannot be reached"),
                          (["status", "--registry", "mysql://somewhere/db"], "not supported")):
        done = onnxgate(*args, "--store", str(pg_store.root))
        assert done.returncode == 1, done
        [line] = done.stderr.strip().splitlines()
        assert message in line and "hunter2" not in line and "Traceback" not in line
