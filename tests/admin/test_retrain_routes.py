"""The ops API's retraining routes on a real gateway, with retraining as `onnxgate serve` provides it (retrain/ops.py)
and a real retrain.toml: a job started over HTTP (202, its id and Location) runs in the background the way `onnxgate
retrain run` runs one, audited as the token's name; jobs listed and read; triggers checked as the CLI checks them; a
second job of the model while one runs is a conflict (409); a gateway that stops abandons its running job; roles."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.layout import Store
from tests.admin.conftest import DEADLINE_S, OpsGateway, audit_entries, build_ops_store, make_tokens, ops_gateway
from tests.factories import running_server, wait_until
from tests.gateway.conftest import gateway_settings
from tests.retrain.conftest import write_config

pytestmark = pytest.mark.e2e
FAILS = '{python} -c "import sys; print(\'no data today\'); sys.exit(3)"'
SLEEPS = '{python} -c "import time; time.sleep(600)"'


def configure(store: Store, tmp_path: Path, command: str) -> None:
    workdir = tmp_path / "work"
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    write_config(store, workdir, command=command, name="iris")


def job_when(client: httpx.Client, job_id: str, statuses: set[str]) -> dict:
    found: dict = {}

    def reached() -> bool:
        answer = client.get(f"/admin/v1/retrain/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        found.update(answer.json())
        return found["status"] in statuses

    wait_until(reached, DEADLINE_S, f"job {job_id} to reach {statuses}")
    return found


@pytest.fixture
def retrain_ops(tmp_path: Path):
    store = build_ops_store(tmp_path / "models")
    configure(store, tmp_path, FAILS)
    with ops_gateway(tmp_path, store) as gateway:
        yield gateway


def test_a_job_started_over_http_runs_in_the_background_audited_as_the_token(retrain_ops: OpsGateway) -> None:
    with retrain_ops.client("deploy") as deploy:
        started = deploy.post("/admin/v1/models/iris/retrain/run", json={"reason": "JIRA-7"})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        assert started.headers["location"] == f"/admin/v1/retrain/jobs/{job_id}"
        assert started.json()["model"] == "iris" and started.json()["status"] in ("pending", "running", "failed")
        assert started.json()["trigger"] == {"trigger": "manual", "fires": True, "figures": {},
                                             "reason": "requested through the ops API by deploy-bot: JIRA-7"}
        record = job_when(deploy, job_id, {"failed"})
    assert record["exit_code"] == 3 and "exited with code 3" in record["reason"]
    assert "no data today" in Path(record["log"]).read_text()
    steps = [entry for entry in audit_entries(retrain_ops.store) if entry["details"].get("job") == job_id]
    assert [entry["action"] for entry in steps] == ["retrain_pending", "retrain_running", "retrain_failed"]
    assert {entry["actor"] for entry in steps} == {"deploy-bot"}

    with retrain_ops.client("read") as read:
        listed = read.get("/admin/v1/retrain/jobs", params={"model": "iris"})
        assert listed.status_code == 200 and [job["id"] for job in listed.json()["jobs"]] == [job_id]
        assert read.get("/admin/v1/retrain/jobs").json() == listed.json()
        assert read.get("/admin/v1/retrain/jobs", params={"model": "pair"}).json() == {"jobs": []}
        assert read.get(f"/admin/v1/retrain/jobs/{job_id}").json() == record

        # the check answers what `onnxgate retrain check --json` prints: no trigger configured, a cooldown after the job
        checked = read.post("/admin/v1/models/iris/retrain/check")
        assert checked.status_code == 200, checked.text
        cli = subprocess.run([sys.executable, "-m", "onnxgate", "retrain", "check", "iris", "--json", "--store",
                              str(retrain_ops.store.root)], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert checked.json() == json.loads(cli.stdout)
        assert checked.json()["last_job"] == job_id and checked.json()["cooldown_until"] is not None


def test_roles_and_mistakes(retrain_ops: OpsGateway) -> None:
    for role in ("read", "approve"):
        with retrain_ops.client(role) as client:
            refused = client.post("/admin/v1/models/iris/retrain/run", json={})
            assert refused.status_code == 403 and f"{role}-bot" in refused.json()["error"]
    with retrain_ops.client("approve") as approve:
        assert approve.post("/admin/v1/models/iris/retrain/check").status_code == 200
    assert audit_entries(retrain_ops.store, "retrain_pending") == []
    with retrain_ops.client("admin") as admin:
        for method, path, status, message in (
            ("POST", "/admin/v1/models/nosuch/retrain/run", 404, "retrain.toml has no [models.nosuch] table"),
            ("POST", "/admin/v1/models/nosuch/retrain/check", 404, "retrain.toml has no [models.nosuch] table"),
            ("GET", "/admin/v1/retrain/jobs/iris-20260101-000000-abcdef", 404, "no retraining job"),
            ("GET", "/admin/v1/retrain/jobs/not%20an%20id", 404, "not an id"),
            ("GET", "/admin/v1/retrain/jobs?model=bad%20name", 404, ""),
        ):
            answer = admin.request(method, path)
            assert answer.status_code == status, (path, answer.text)
            assert message in answer.json()["error"]
        bad = admin.post("/admin/v1/models/iris/retrain/run", json={"reason": "x", "dry_run": True})
        assert bad.status_code == 400 and "dry_run" in bad.json()["error"]
        assert admin.post("/admin/v1/models/iris/retrain/check", json={"any": 1}).status_code == 400
    assert audit_entries(retrain_ops.store, "retrain_pending") == []


def test_one_job_at_a_time_and_a_stopping_gateway_abandons_it(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    configure(store, tmp_path, SLEEPS)
    with ops_gateway(tmp_path, store) as gateway, gateway.client("deploy") as deploy:
        started = deploy.post("/admin/v1/models/iris/retrain/run", json={})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        job_when(deploy, job_id, {"running"})
        again = deploy.post("/admin/v1/models/iris/retrain/run", json={})
        assert again.status_code == 409 and "is running" in again.json()["error"]
    record = json.loads((store.root / ".retrain" / "jobs" / f"{job_id}.json").read_text())
    assert record["status"] == "abandoned" and record["signal"] == "abandoned"
    assert [entry["action"] for entry in audit_entries(store) if entry["details"].get("job") == job_id][-1] == \
        "retrain_abandoned"


def test_a_gateway_without_retraining_answers_503(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    tokens = tmp_path / "tokens.toml"
    secrets = make_tokens(tokens, ("admin",))
    app = create_app(gateway_settings(store, admin_tokens=tokens), metrics_registry=CollectorRegistry())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_S,
                                                  headers={"Authorization": f"Bearer {secrets['admin']}"}) as client:
        for method, path in (("GET", "/admin/v1/retrain/jobs"), ("POST", "/admin/v1/models/iris/retrain/run"),
                             ("POST", "/admin/v1/models/iris/retrain/check")):
            answer = client.request(method, path)
            assert answer.status_code == 503 and "retraining is not available" in answer.json()["error"]
