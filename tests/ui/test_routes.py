"""The dashboard's routes against a real gateway: no page or fragment without a token with the read role (walked from
the application's own routes, on the gateway's port and the ops API's); the login form's cookie and its flags; what the
pages show, escaped; GET /admin/v1/rollouts with the judge's windows; /ui absent without tokens, open when public."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from gateway.admin.tokens import secret_digest
from gateway.app import create_app
from modelstore.capture_rate import set_capture_rate
from modelstore.transitions import Change
from monitoring.capture import read_captures
from retrain.records import JobRecord, JobStore, TriggerFigures
from tests.admin.conftest import DEADLINE_S, OpsGateway, build_ops_store
from tests.factories import deploy_version, publish_watched_classifier, running_server, training_rows
from tests.gateway.conftest import gateway_settings
from tests.ui.conftest import traffic, ui_gateway

pytestmark = pytest.mark.e2e
PATH_VALUES = {"model": "iris", "version": "v2.0.0"}
OPEN_PATHS = ("/ui/login", "/ui/logout", "/ui/static/{name}")  # the form, and files that hold no data


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsGateway]:
    with ui_gateway(tmp_path_factory.mktemp("ui")) as gateway:
        yield gateway


def guarded_paths(tmp_path) -> list[str]:
    """Every GET /ui route that shows data, from the application's own routes."""
    tokens = tmp_path / "walk-tokens.json"
    tokens.write_text('{"tokens": []}')
    app = create_app(gateway_settings(build_ops_store(tmp_path / "walk"), admin_tokens=tokens),
                     metrics_registry=CollectorRegistry())
    return [re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], route.path) for route in app.routes
            if isinstance(route, Route) and route.path.startswith("/ui") and route.path not in OPEN_PATHS]


def test_no_ui_route_shows_data_without_a_read_token(ops: OpsGateway, tmp_path) -> None:
    paths = guarded_paths(tmp_path)
    sha256 = ops.store.read_metadata("iris", "v2.0.0").model_sha256
    assert set(paths) == {"/ui", "/ui/fragments/overview", "/ui/models/iris/versions/v2.0.0"}
    wrong = [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"},
             {"Authorization": f"Bearer {secret_digest(ops.secrets['admin']).hex()}"},
             {"Cookie": "onnxgate_ui=not-a-token"}, {"Cookie": f"onnxgate_ui={secret_digest(ops.secrets['read']).hex()}"},
             {"Cookie": f"other={ops.secrets['read']}"}]
    for base in (ops.url, ops.admin_url):
        with httpx.Client(base_url=base, timeout=DEADLINE_S) as client:
            for path in paths:
                for headers in wrong:
                    response = client.get(path, headers=headers)
                    assert response.status_code == 401, (base, path, headers)
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    # the login form sends the viewer back to the path asked for; no data of the store's
                    assert not {"v1.0.0", sha256, 'class="deployment"', "audit"} & set(
                        re.findall(r'v1\.0\.0|[0-9a-f]{64}|class="deployment"|audit', response.text)), (path, headers)
                    if "/fragments/" in path:
                        assert "error" in response.json()
                    else:
                        assert 'id="login"' in response.text and 'name="token"' in response.text


def test_every_role_reads_the_dashboard_with_a_bearer_token(ops: OpsGateway) -> None:
    for role, secret in ops.secrets.items():
        for base in (ops.url, ops.admin_url):
            response = httpx.get(base + "/ui", headers={"Authorization": f"Bearer {secret}"}, timeout=DEADLINE_S)
            assert response.status_code == 200, (role, base)
            assert f"{role}-bot · {role}" in response.text
            assert 'data-model="iris" data-environment="production"' in response.text


def test_login_sets_a_strict_http_only_cookie_for_ui_pages_only(ops: OpsGateway) -> None:
    with httpx.Client(base_url=ops.url, timeout=DEADLINE_S) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200 and 'type="password"' in form.text
        response = client.post("/ui/login", data={"token": ops.secrets["read"], "next": "/ui/models/iris/versions/v1.0.0"})
        assert response.status_code == 303 and response.headers["location"] == "/ui/models/iris/versions/v1.0.0"
        cookie = response.headers["set-cookie"]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags, cookie
        assert "secure" not in flags, "plain http on loopback: a Secure cookie would never be sent back"
        assert client.get("/ui").status_code == 200
        assert client.get("/ui/fragments/overview").status_code == 200
        assert client.get("/admin/v1/status").status_code == 401, "the cookie is the dashboard's, not the ops API's"
        logout = client.post("/ui/logout")
        assert logout.status_code == 303 and 'max-age=0' in logout.headers["set-cookie"].lower()
        assert client.get("/ui").status_code == 401


def test_login_refuses_wrong_tokens_other_sites_and_redirects_away(ops: OpsGateway) -> None:
    with httpx.Client(base_url=ops.url, timeout=DEADLINE_S) as client:
        wrong = client.post("/ui/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers
        foreign = client.post("/ui/login", data={"token": ops.secrets["read"]},
                              headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        for target in ("https://evil.example/ui", "//evil.example/ui", "/admin/v1/status", "/ui/../admin"):
            response = client.post("/ui/login", data={"token": ops.secrets["read"], "next": target})
            assert response.status_code == 303 and response.headers["location"] in ("/ui", target), target
            assert not response.headers["location"].startswith(("//", "http", "/admin")), target
        huge = client.post("/ui/login", content=b"token=" + b"a" * 10_000,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert huge.status_code == 413


def test_the_pages_escape_what_users_wrote(tmp_path) -> None:
    with ui_gateway(tmp_path) as ops:
        reason = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
        started = ops.client("deploy").post("/admin/v1/models/iris/environments/production/canary",
                                            json={"version": "v2.0.0", "weight": 20, "reason": reason})
        assert started.status_code == 200, started.text
        with ops.client("read") as client:
            for path in ("/ui/fragments/overview", "/ui/models/iris/versions/v2.0.0"):
                page = client.get(path).text
                assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in page
                assert "<script>alert" not in page and "<img src=x" not in page


def test_the_version_page_shows_metadata_signature_parity_evaluation_approvals_and_history(tmp_path) -> None:
    with ui_gateway(tmp_path) as ops:
        approved = ops.client("approve").post("/admin/v1/models/iris/versions/v2.0.0/approvals",
                                              json={"environment": "production", "reason": "looked at it"})
        assert approved.status_code == 200, approved.text
        assert ops.client("deploy").post("/admin/v1/models/iris/environments/staging/deploy",
                                         json={"version": "v2.0.0", "reason": "try it"}).status_code == 200
        with ops.client("read") as client:
            page = client.get("/ui/models/iris/versions/v2.0.0")
            assert page.status_code == 200
            text = page.text
            metadata = ops.store.read_metadata("iris", "v2.0.0")
            for section in ("metadata", "signature", "parity", "evaluation", "approvals", "history"):
                assert f'id="{section}"' in text, section
            assert metadata.model_sha256 in text and metadata.parity.reference in text
            assert "<td>X</td><td>float32</td>" in text and "<td>probabilities</td><td>float32</td>" in text
            assert "approved by <b>approve-bot</b>" in text and "looked at it" in text
            assert "staging: stable" in text and "try it" in text and "v1.0.0 → v2.0.0" in text
            for path in ("/ui/models/iris/versions/v9.9.9", "/ui/models/nosuch/versions/v1.0.0",
                         "/ui/models/a%3Cb%3E/versions/v1.0.0"):
                missing = client.get(path)
                assert missing.status_code in (400, 404), (path, missing.status_code)
                assert "text/html" in missing.headers["content-type"] and "<b>" not in missing.text


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def test_the_judges_windows_are_served_and_charted(tmp_path) -> None:
    with ui_gateway(tmp_path) as ops:
        started = ops.client("deploy").post("/admin/v1/models/iris/environments/production/canary",
                                            json={"version": "v2.0.0", "weight": 50, "reason": "half",
                                                  "slo": {"max_latency_ratio": 50, "breaches_to_rollback": 1000}})
        assert started.status_code == 200, started.text
        with traffic(ops.url), ops.client("read") as client:
            def canary_windows() -> list[dict]:
                rollouts = client.get("/admin/v1/rollouts").json()["rollouts"]
                [route] = [r for r in rollouts if (r["model"], r["environment"]) == ("iris", "production")]
                return [w for w in route["windows"] if w["arms"].get("canary", {}).get("requests")]

            windows = wait_for(lambda: len(canary_windows()) >= 2 and canary_windows(), "two judged canary windows")
            window = windows[-1]
            assert window["arms"]["canary"]["version"] == "v2.0.0" and window["arms"]["stable"]["version"] == "v1.0.0"
            assert window["arms"]["canary"]["latency_ms"] > 0 and window["max_error_rate"] == 0.01
            assert window["verdict"] in ("healthy", "inconclusive", "breach")
            fragment = client.get("/ui/fragments/overview").text
            assert fragment.count('<polyline class="line line-canary"') == 2, "a latency and an error-rate line"
            assert "p95 latency (ms)" in fragment and "at <b class=\"weight\">50%</b>" in fragment


def test_no_ui_without_tokens_and_an_open_one_when_public(tmp_path) -> None:
    store = build_ops_store(tmp_path / "models")
    for public in (False, True):
        app = create_app(gateway_settings(store, "production", ui_public=public), metrics_registry=CollectorRegistry())
        with running_server(app) as url:
            page = httpx.get(url + "/ui", timeout=DEADLINE_S)
            if public:
                assert page.status_code == 200 and "public · public" in page.text and "Log out" not in page.text
                assert httpx.get(url + "/ui/fragments/overview", timeout=DEADLINE_S).status_code == 200
                assert httpx.get(url + "/admin/v1/status", timeout=DEADLINE_S).status_code == 404
            else:
                assert page.status_code == 404 and "error" in page.json()
                assert httpx.get(url + "/ui/login", timeout=DEADLINE_S).status_code == 404


def test_the_overview_shows_drift_live_quality_and_retraining_jobs(tmp_path) -> None:
    store = build_ops_store(tmp_path / "models")
    publish_watched_classifier(store, "watched")
    deploy_version(store, "watched", "v1.0.0", "production")
    set_capture_rate(store, "iris", "production", 1.0, Change(actor="tests"))
    job = JobRecord(id="watched-20260101-000000-abc123", model="watched", status="rejected", started_epoch=time.time(),
                    trigger=TriggerFigures(trigger="drift", fires=True, reason="2 of 4 features drifted"),
                    reason="the challenger's accuracy 0.81 is below the champion's 0.9")
    JobStore(store.root).write(job)
    with ui_gateway(tmp_path, store=store, drift_enabled=True, drift_flush_s=0.2) as ops, ops.client("read") as client:
        rows = training_rows(seed=7, rows=1000)
        for feature in (0, 2):  # half the features drift: over the default 30% share
            rows[:, feature] += 3 * rows[:, feature].std()
        with httpx.Client(base_url=ops.url, timeout=DEADLINE_S) as data:
            for start in range(0, len(rows), 100):
                assert data.post("/predict/watched", json={"inputs": rows[start:start + 100].tolist()}).status_code == 200
            answers = [data.post("/predict/iris", json={"inputs": [[5.1, 3.5, 1.4, float(i)]]}).json() for i in range(4)]
            ids = [answer["id"] for answer in answers]
            wait_for(lambda: set(ids) <= {r["id"] for r in read_captures(store.root, "iris", "production")},
                     "the captured answers")
            labels = [{"id": answer["id"], "label": answer["outputs"]["label"][0] if i else "nonsense-class"}
                      for i, answer in enumerate(answers)]
            assert data.post("/feedback/iris", json=labels).status_code == 200

        def drift_row() -> str | None:
            fragment = client.get("/ui/fragments/overview").text
            return fragment if 'class="drift-drift"' in fragment else None

        fragment = wait_for(drift_row, "the drift panel to show the watched model drifting")
        drift = fragment[fragment.index('id="drift"'):fragment.index('id="quality"')]
        assert "<td>watched</td><td>production</td><td>drift</td><td>1000</td>" in drift
        assert '<span class="feature over"' in drift and drift.count("feature over") == 2
        assert ">length " in drift and ">width " in drift and ">depth " in drift and "Prediction PSI" in drift
        quality = fragment[fragment.index('id="quality"'):fragment.index('id="retrain"')]
        assert "<td>iris</td><td>production</td>" in quality
        assert "v1.0.0 (stable): 4 rows, accuracy 75.0%" in quality
        retrain = fragment[fragment.index('id="retrain"'):fragment.index('id="audit"')]
        assert job.id in retrain and "rejected" in retrain and "below the champion" in retrain
