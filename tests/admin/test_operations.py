"""Every operation of the ops API against a real gateway over a real store (a file store, and the shared backends: the
registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket): the change is made through the transition
API (the registry, the audit log with the token's name as actor and the body's reason, and the gateway serving it),
dry runs change nothing, and mistakes get their status (400, 404, 409, 413, 422), never a 5xx."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.admin.conftest import OpsGateway, audit_entries, build_ops_store, ops_gateway
from tests.factories import BACKENDS, backend_store

pytestmark = pytest.mark.e2e
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
BASE = "/admin/v1/models/iris/environments"


@pytest.fixture(scope="module", params=BACKENDS)
def ops(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsGateway]:
    """The ops gateway of tests/admin/conftest.py over each backend."""
    root = tmp_path_factory.mktemp(f"ops-{request.param}")
    with (backend_store(request.param, root / "models", request) as store,
          ops_gateway(root, build_ops_store(root / "models", store)) as gateway):
        yield gateway


def wait_for_version(ops: OpsGateway, version: str, environment: str = "production", timeout_s: float = 60) -> None:
    """Until the gateway's data plane answers plain requests with `version` (it reloads on the registry's change)."""
    deadline = time.monotonic() + timeout_s
    with ops.client() as client:
        while True:
            answer = client.post("/predict/iris", json=ROW, headers={"X-Environment": environment})
            if answer.status_code == 200 and answer.headers["x-model-version"] == version:
                return
            assert time.monotonic() < deadline, f"the gateway still serves {answer.headers.get('x-model-version')}"
            time.sleep(0.05)


def stable(ops: OpsGateway, environment: str = "production"):
    return ops.store.registry.read().state.deployment("iris", environment)


def test_deploy_dry_run_then_deploy_audited_with_the_tokens_name_and_served(ops: OpsGateway) -> None:
    with ops.client("deploy") as client:
        revision = ops.store.registry.read().revision
        dry = client.post(f"{BASE}/staging/deploy", json={"version": "v2.0.0", "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert dry.json()["dry_run"] is True and dry.json()["after"] == "v2.0.0"
        assert ops.store.registry.read().revision == revision and stable(ops, "staging").version == "v1.0.0"
        done = client.post(f"{BASE}/staging/deploy", json={"version": "v2.0.0", "reason": "ticket 42"})
        assert done.status_code == 200, done.text
        assert (done.json()["action"], done.json()["before"], done.json()["after"]) == ("deploy", "v1.0.0", "v2.0.0")
    assert stable(ops, "staging").version == "v2.0.0"
    entry = audit_entries(ops.store, "deploy")[-1]
    assert (entry["actor"], entry["reason"], entry["environment"], entry["after"]) == ("deploy-bot", "ticket 42",
                                                                                      "staging", "v2.0.0")
    wait_for_version(ops, "v2.0.0", "staging")
    with ops.client("read") as client:
        rows = client.get("/admin/v1/status").json()["deployments"]
    assert {(r["environment"], r["version"]) for r in rows if r["model"] == "iris"} >= {("staging", "v2.0.0")}


def test_canary_promote_and_rollback(ops: OpsGateway) -> None:
    slo = {"max_error_rate": 0.05, "window_s": 30, "min_requests": 1000000}  # never judged here: too few requests
    with ops.client("deploy") as client:
        started = client.post(f"{BASE}/production/canary", json={"version": "v3.0.0", "weight": 10, "steps": [50, 100],
                                                                  "interval_s": 3600, "slo": slo, "reason": "try v3"})
        assert started.status_code == 200, started.text
        canary = stable(ops).canary
        assert (canary.version, canary.weight, canary.steps) == ("v3.0.0", 10, [50, 100])
        assert stable(ops).slo.max_error_rate == 0.05
        with ops.client("read") as reader:
            [row] = [r for r in reader.get("/admin/v1/status").json()["deployments"]
                     if (r["model"], r["environment"]) == ("iris", "production")]
            assert row["canary"] == "v3.0.0 (10%)"
            deadline = time.monotonic() + 60
            while True:  # the gateway's own view: once it has reloaded, its route carries the canary's rollout
                served = reader.get("/admin/v1/status").json()["gateway"]
                [route] = [m for m in served["models"] if (m["model"], m["environment"]) == ("iris", "production")]
                if route.get("rollout", {}).get("canary"):
                    break
                assert time.monotonic() < deadline, f"the gateway never reported the canary: {route}"
                time.sleep(0.05)
        promoted = client.post(f"{BASE}/production/promote", json={"bake_s": 0, "reason": "looks good"})
        assert promoted.status_code == 200, promoted.text
        assert stable(ops).version == "v3.0.0" and stable(ops).canary is None
        wait_for_version(ops, "v3.0.0")
        back = client.post(f"{BASE}/production/rollback", json={"reason": "pager"})
        assert back.status_code == 200, back.text
        assert (back.json()["before"], back.json()["after"]) == ("v3.0.0", "v1.0.0")
    assert stable(ops).version == "v1.0.0"
    wait_for_version(ops, "v1.0.0")
    actions = [(e["action"], e["actor"], e["reason"]) for e in audit_entries(ops.store)[-3:]]
    assert actions == [("canary", "deploy-bot", "try v3"), ("promote", "deploy-bot", "looks good"),
                       ("rollback", "deploy-bot", "pager")]


def test_shadow_start_and_stop(ops: OpsGateway) -> None:
    with ops.client("admin") as client:
        started = client.post(f"{BASE}/production/shadow", json={"version": "v2.0.0", "weight": 25})
        assert started.status_code == 200, started.text
        assert (stable(ops).shadow.version, stable(ops).shadow.weight) == ("v2.0.0", 25)
        stopped = client.post(f"{BASE}/production/shadow", json={"stop": True, "reason": "enough"})
        assert stopped.status_code == 200, stopped.text
    assert stable(ops).shadow is None
    entry = audit_entries(ops.store, "shadow_stop")[-1]
    assert (entry["actor"], entry["reason"]) == ("admin-bot", "enough")


def test_approvals_are_recorded_as_the_tokens_name(ops: OpsGateway) -> None:
    with ops.client("approve") as client:
        approved = client.post("/admin/v1/models/iris/versions/v3.0.0/approvals",
                               json={"environment": "production", "reason": "reviewed"})
        assert approved.status_code == 200, approved.text
        rejected = client.post("/admin/v1/models/iris/versions/v2.0.0/approvals",
                               json={"environment": "production", "reject": True})
        assert rejected.status_code == 200, rejected.text
        detail = client.get("/admin/v1/models/iris").json()
    record = ops.store.registry.read().state.models["iris"]["v3.0.0"]
    [decision] = record.approvals["production"]
    assert (decision.actor, decision.status, decision.reason) == ("approve-bot", "approved", "reviewed")
    versions = {row["version"]: row for row in detail["versions"]}
    assert versions["v3.0.0"]["approvals"]["production"]["deploy"]["decisions"] == {"approve-bot": "approved"}
    assert versions["v2.0.0"]["approvals"]["production"]["deploy"]["decisions"] == {"approve-bot": "rejected"}
    assert set(versions) == {"v1.0.0", "v2.0.0", "v3.0.0"} and versions["v3.0.0"]["latest"] is True
    assert versions["v1.0.0"]["task"] and "production" in versions["v1.0.0"]["environments"]


def test_snapshots_create_list_and_restore_with_dry_run(ops: OpsGateway) -> None:
    with ops.client("deploy") as client:
        created = client.post("/admin/v1/snapshots", json={"name": "before v2", "reason": "checkpoint"})
        assert created.status_code == 200, created.text
        snapshot_id = created.json()["after"]
        assert client.post(f"{BASE}/production/deploy", json={"version": "v2.0.0"}).status_code == 200
        listed = client.get("/admin/v1/snapshots").json()["snapshots"]
        assert [s["name"] for s in listed if s["id"] == snapshot_id] == ["before v2"]
        revision = ops.store.registry.read().revision
        plan = client.post(f"/admin/v1/snapshots/{snapshot_id}/restore", json={"dry_run": True})
        assert plan.status_code == 200, plan.text
        assert {"model": "iris", "environment": "production", "from": "v2.0.0", "to": "v1.0.0"} in \
            plan.json()["details"]["changes"]
        assert ops.store.registry.read().revision == revision and stable(ops).version == "v2.0.0"
        restored = client.post(f"/admin/v1/snapshots/{snapshot_id}/restore", json={"reason": "undo"})
        assert restored.status_code == 200, restored.text
    assert stable(ops).version == "v1.0.0"
    entry = audit_entries(ops.store, "snapshot_restore")[-1]
    assert (entry["actor"], entry["reason"]) == ("deploy-bot", "undo")


def test_history_filters(ops: OpsGateway) -> None:
    with ops.client("deploy") as client:
        assert client.post(f"{BASE}/staging/deploy", json={"version": "v3.0.0", "reason": "for history"}
                           ).status_code == 200
    with ops.client("read") as client:
        everything = client.get("/admin/v1/history", params={"limit": "10000"}).json()["entries"]
        staging = client.get("/admin/v1/history", params={"environment": "staging", "limit": "10000"}).json()["entries"]
        deploys = client.get("/admin/v1/history", params={"model": "iris", "event": "deployment_completed",
                                                          "limit": "2"}).json()["entries"]
        assert client.get("/admin/v1/history", params={"limit": "0"}).status_code == 400
        assert client.get("/admin/v1/history", params={"limit": "many"}).status_code == 400
    assert len(everything) == len(ops.store.registry.audit.entries())
    assert staging and all(e["environment"] == "staging" for e in staging) and len(staging) < len(everything)
    assert len(deploys) == 2 and deploys[-1]["reason"] == "for history"


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    (f"{BASE}/production/deploy", b"{not json", 400, "not JSON"),
    (f"{BASE}/production/deploy", b"[1]", 400, "JSON object"),
    (f"{BASE}/production/deploy", b'{"version": "v2.0.0", "colour": "red"}', 400, "colour"),
    (f"{BASE}/production/canary", b'{"version": "v2.0.0", "weight": 150}', 400, "weight"),
    (f"{BASE}/production/canary", b'{"version": "v2.0.0", "weight": 5, "slo": {"max_error_rate": 2}}', 422,
     "max_error_rate"),
    (f"{BASE}/production/canary", b'{"version": "v2.0.0", "weight": 5, "slo": {"latency": 1}}', 422, "latency"),
    (f"{BASE}/production/deploy", b'{"version": "v9.9.9"}', 404, "v9.9.9"),
    ("/admin/v1/models/nosuch/environments/production/deploy", b'{"version": "v1.0.0"}', 404, "nosuch"),
    (f"{BASE}/nowhere/promote", b"{}", 404, "nowhere"),
    (f"{BASE}/production/promote", b"{}", 409, "canary"),
    (f"{BASE}/production/canary", b'{"version": "v1.0.0", "weight": 5}', 409, "already the stable version"),
    ("/admin/v1/snapshots/999/restore", b"{}", 404, "no snapshot '999'"),
    ("/admin/v1/models/iris/versions/v1.0.0/approvals", b'{"environment": "prod uction"}', 404, "environment"),
    (f"{BASE}/production/deploy", b'{"reason": "' + b"x" * 70000 + b'"}', 413, "over the limit"),
])
def test_mistakes_get_their_status(ops: OpsGateway, path: str, body: bytes, status: int, message: str) -> None:
    revision = ops.store.registry.read().revision
    with ops.client("admin") as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert ops.store.registry.read().revision == revision


def test_unknown_model_is_404_on_reads(ops: OpsGateway) -> None:
    with ops.client("read") as client:
        assert client.get("/admin/v1/models/nosuch").status_code == 404
        assert client.get("/admin/v1/models/NOT_A_NAME").status_code == 404
        models = client.get("/admin/v1/models").json()
    assert {row["name"] for row in models["versions"]} == {"iris"}


def test_every_change_over_http_is_audited_with_the_tokens_name_and_reason(ops: OpsGateway) -> None:
    start = len(ops.store.registry.audit.entries())
    body = {"reason": "audit-check"}
    calls = [
        ("/admin/v1/snapshots", {"name": "audit-check"}),
        (f"{BASE}/production/shadow", {"version": "v2.0.0"}),
        (f"{BASE}/production/shadow", {"stop": True}),
        (f"{BASE}/production/canary", {"version": "v3.0.0", "weight": 5}),
        (f"{BASE}/production/promote", {"bake_s": 0}),
        (f"{BASE}/production/rollback", {}),
        (f"{BASE}/staging/deploy", {"version": "v1.0.0"}),
        ("/admin/v1/models/iris/versions/v3.0.0/approvals", {"environment": "staging", "reject": True}),
    ]
    with ops.client("admin") as client:
        for path, fields in calls:
            response = client.post(path, json={**fields, **body})
            assert response.status_code == 200, (path, response.text)
    entries = ops.store.registry.audit.entries()[start:]
    assert [e["action"] for e in entries] == ["snapshot_create", "shadow", "shadow_stop", "canary", "promote",
                                              "rollback", "deploy", "approval"]
    assert {(e["actor"], e["reason"]) for e in entries} == {("admin-bot", "audit-check")}
