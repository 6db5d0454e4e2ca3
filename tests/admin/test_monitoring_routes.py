"""The ops API's drift and quality routes answer what the data plane's GET /drift and GET /quality answer (the same
code), for the environment in the path, on a real gateway with live drift and data capture on."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from modelstore.capture_rate import set_capture_rate
from modelstore.transitions import Change
from monitoring.capture import read_captures
from tests.admin.conftest import DEADLINE_S, OpsGateway, ops_gateway
from tests.factories import (
    IRIS_LABELS,
    classifier_expected,
    deploy_version,
    make_store,
    publish_watched_classifier,
    training_rows,
    wait_until,
)

pytestmark = pytest.mark.e2e
ROWS = 600
DRIFT = "/admin/v1/models/watched/environments/{environment}/drift"
QUALITY = "/admin/v1/models/watched/environments/{environment}/quality"


@pytest.fixture(scope="module")
def watched_ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpsGateway, tuple]]:
    root = tmp_path_factory.mktemp("ops-monitoring")
    store = make_store(root / "models")
    weights = publish_watched_classifier(store, "watched", seed=1)
    publish_watched_classifier(store, "watched", "v2.0.0", seed=2)
    for environment in ("production", "staging"):
        deploy_version(store, "watched", "v1.0.0", environment)
    set_capture_rate(store, "watched", "production", 1.0, Change(actor="tests"))
    with ops_gateway(root, store, drift_enabled=True, drift_flush_s=0.2) as gateway:
        yield gateway, weights


def served_rows(gateway: OpsGateway, rows, environment: str = "production") -> list[str]:
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=DEADLINE_S) as client:
        for start in range(0, len(rows), 50):
            answer = client.post("/predict/watched", json={"inputs": rows[start:start + 50].tolist()},
                                 headers={"X-Environment": environment})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
    return ids


def test_drift_is_the_data_planes_report(watched_ops: tuple[OpsGateway, tuple]) -> None:
    gateway, _ = watched_ops
    served_rows(gateway, training_rows(seed=7, rows=ROWS), "staging")
    with httpx.Client(base_url=gateway.url, timeout=DEADLINE_S) as plane, gateway.client("read") as ops, \
            gateway.client("read", admin_port=True) as ops_port:
        def plane_report(**params: str) -> dict:
            answer = plane.get("/drift/watched", headers={"X-Environment": "staging"}, params=params)
            assert answer.status_code == 200, answer.text
            return answer.json()

        wait_until(lambda: plane_report()["window_rows"] >= ROWS, DEADLINE_S, "the staging window")
        for client in (ops, ops_port):
            answer = client.get(DRIFT.format(environment="staging"))
            assert answer.status_code == 200, answer.text
            assert answer.json() == plane_report()
            assert (answer.json()["environment"], answer.json()["version"]) == ("staging", "v1.0.0")
            assert answer.json()["window_rows"] >= ROWS and answer.json()["status"] == "ok"
            pinned = client.get(DRIFT.format(environment="staging"), params={"version": "v2.0.0"})
            assert pinned.status_code == 200 and pinned.json() == plane_report(version="v2.0.0")
        assert ops.get("/admin/v1/models/nosuch/environments/staging/drift").status_code == 404
        unserved = ops.get(DRIFT.format(environment="qa"))
        assert unserved.status_code == 404 and "not served here" in unserved.json()["error"]
        assert ops.get(DRIFT.format(environment="staging"), params={"version": "v9.9.9"}).status_code == 404


def test_quality_is_the_data_planes_report(watched_ops: tuple[OpsGateway, tuple]) -> None:
    gateway, weights = watched_ops
    rows = training_rows(seed=8, rows=40)
    with httpx.Client(base_url=gateway.url, timeout=DEADLINE_S) as plane:
        ids = [plane.post("/predict/watched", json={"inputs": [row.tolist()]}).json()["id"] for row in rows]
        wait_until(lambda: set(ids) <= {r["id"] for r in read_captures(gateway.store.root, "watched", "production")},
                   DEADLINE_S, "the captured answers")
        truth, _ = classifier_expected(weights, rows)
        truth[:10] = (truth[:10] + 1) % len(IRIS_LABELS)  # ten answers wrong
        labels = [{"id": i, "label": IRIS_LABELS[label]} for i, label in zip(ids, truth, strict=True)]
        assert plane.post("/feedback/watched", json=labels).status_code == 200
        expected = plane.get("/quality/watched", params={"since": "1h"}).json()
    with gateway.client("read") as ops:
        answer = ops.get(QUALITY.format(environment="production"), params={"since": "1h"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == expected
        (arm,) = answer.json()["arms"]
        assert (arm["version"], arm["labelled_rows"], arm["accuracy"]) == ("v1.0.0", 40, 0.75)
        bad = ops.get(QUALITY.format(environment="production"), params={"since": "soon"})
        assert bad.status_code == 400 and "since" in bad.json()["error"]
        assert ops.get("/admin/v1/models/nosuch/environments/production/quality").status_code == 404


def test_reads_need_a_token(watched_ops: tuple[OpsGateway, tuple]) -> None:
    gateway, _ = watched_ops
    with gateway.client() as anonymous:
        for path in (DRIFT, QUALITY):
            answer = anonymous.get(path.format(environment="production"))
            assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
