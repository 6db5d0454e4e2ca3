"""The governance gates through the ops API: a refused deploy is a 409 carrying every check with the same figures the
CLI's refusal records, audited as deployment_denied with the token's name; approvals made over HTTP count, and a
deployer's own approval does not."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.admin.conftest import OpsGateway, audit_entries, ops_gateway
from tests.governance.gate_fixtures import GATE_EXIT, governed_store, onnxgate

pytestmark = pytest.mark.e2e
GOOD = {"metrics": {"accuracy": 0.91, "f1": 0.88}, "training_samples": 500}
WEAK = {"metrics": {"accuracy": 0.64, "f1": 0.50}, "training_samples": 8}
TINY = "/admin/v1/models/tiny"


@pytest.fixture
def governed(tmp_path) -> Iterator[OpsGateway]:
    store = governed_store(tmp_path / "store", {"v1.0.0": GOOD, "v1.1.0": WEAK})
    with ops_gateway(tmp_path, store) as gateway:
        yield gateway


def comparable(checks: list[dict]) -> list[dict]:
    """A verdict's checks without what names who asked (the approvals check counts the actor's own approval)."""
    return [{k: v for k, v in check.items() if k not in ("actor",)} for check in checks]


def test_a_refused_deploy_is_409_with_the_same_figures_as_the_cli(governed: OpsGateway) -> None:
    store = governed.store
    with governed.client("deploy") as client:
        assert client.post(f"{TINY}/environments/staging/deploy", json={"version": "v1.1.0"}).status_code == 200
        deployments = store.registry.read().state.deployments
        refused = client.post(f"{TINY}/environments/production/deploy", json={"version": "v1.1.0", "reason": "try"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert "refused by policy" in body["error"] and "accuracy = 0.64 (given), needs >= 0.7" in body["error"]
    verdict = body["verdict"]
    failing = {c["check"]: (c["value"], c["limit"]) for c in verdict["checks"] if not c["passed"]}
    assert failing["accuracy"] == (0.64, ">= 0.7") and failing["training_samples"] == (8, ">= 10")
    assert "approvals" in failing
    assert store.registry.read().state.deployments == deployments
    [denied] = audit_entries(store, "deployment_denied")
    assert (denied["actor"], denied["reason"], denied["environment"]) == ("deploy-bot", "try", "production")
    assert denied["details"] == verdict

    cli = onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "production", "--actor", "deploy-bot")
    assert cli.returncode == GATE_EXIT, cli.stderr
    cli_verdict = audit_entries(store, "deployment_denied")[-1]["details"]
    assert comparable(cli_verdict["checks"]) == comparable(verdict["checks"])
    assert cli.stderr.strip().endswith(body["error"])


def test_approvals_over_http_open_the_gate(governed: OpsGateway) -> None:
    store = governed.store
    with governed.client("deploy") as deployer, governed.client("approve") as reviewer, \
            governed.client("admin") as admin:
        assert deployer.post(f"{TINY}/environments/staging/deploy", json={"version": "v1.0.0"}).status_code == 200
        dry = deployer.post(f"{TINY}/environments/production/deploy", json={"version": "v1.0.0", "dry_run": True})
        assert dry.status_code == 409 and "approvals = pending" in dry.json()["error"]
        # the admin token approves, then deploys: its own approval does not count (self_approval = false)
        assert admin.post(f"{TINY}/versions/v1.0.0/approvals", json={"environment": "production"}).status_code == 200
        own = admin.post(f"{TINY}/environments/production/deploy", json={"version": "v1.0.0"})
        assert own.status_code == 409 and "approvals = pending" in own.json()["error"], own.text
        assert reviewer.post(f"{TINY}/versions/v1.0.0/approvals",
                             json={"environment": "production", "reason": "LGTM"}).status_code == 200
        done = deployer.post(f"{TINY}/environments/production/deploy", json={"version": "v1.0.0"})
        assert done.status_code == 200, done.text
    checks = {c["check"]: c for verdict in done.json()["checks"] for c in verdict["checks"]}
    assert checks["accuracy"]["passed"] and checks["approvals"]["passed"]
    assert store.registry.read().state.deployment("tiny", "production").version == "v1.0.0"
    assert [(e["action"], e["actor"]) for e in audit_entries(store)[-3:]] == [
        ("approval", "approve-bot"), ("gates_passed", "deploy-bot"), ("deploy", "deploy-bot")]
