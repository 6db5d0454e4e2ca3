"""Request ids, data capture, labelled feedback and live quality through a real gateway (uvicorn on a loopback port)
over a real store: the records land in the store's capture files, labels join the version that answered, and the CLI
reports the same figures as GET /quality."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.capture_rate import set_capture_rate
from modelstore.layout import Store
from modelstore.transitions import Change
from monitoring.capture import monitoring_dir, read_captures
from tests.factories import (
    IRIS_LABELS,
    classifier_expected,
    deploy_version,
    publish_classifier,
    publish_two_input,
    running_server,
)
from tests.gateway.conftest import MAX_BODY_BYTES, gateway_settings

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0
ROW = [[5.1, 3.5, 1.4, 0.2]]
NAMES = np.array(IRIS_LABELS)


@dataclass
class Served:
    url: str
    store: Store
    weights: dict[str, tuple[np.ndarray, np.ndarray]]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=DEADLINE_S)


@pytest.fixture
def served(fresh_store: Store) -> Iterator[Served]:
    """iris v1 in production (capture rate 1, set on the deployment) and staging (rate 0); pair in production (no rate
    of its own: the gateway's default, 0). iris v2 registered."""
    weights = {"v1.0.0": publish_classifier(fresh_store, "iris", "v1.0.0", seed=1),
               "v2.0.0": publish_classifier(fresh_store, "iris", "v2.0.0", seed=2)}
    publish_two_input(fresh_store, "pair")
    deploy_version(fresh_store, "iris", "v1.0.0", "production")
    deploy_version(fresh_store, "iris", "v1.0.0", "staging")
    deploy_version(fresh_store, "pair", "v1.0.0", "production")
    set_capture_rate(fresh_store, "iris", "production", 1.0, Change(actor="tests"))
    set_capture_rate(fresh_store, "iris", "staging", 0.0, Change(actor="tests"))
    app = create_app(gateway_settings(fresh_store, "production", "staging"), metrics_registry=CollectorRegistry())
    with running_server(app) as url:
        yield Served(url, fresh_store, weights)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def captured_ids(store: Store, model: str = "iris", environment: str = "production") -> set[str]:
    return {record["id"] for record in read_captures(store.root, model, environment)}


def predict(client: httpx.Client, row: list, **headers: str) -> httpx.Response:
    response = client.post("/predict/iris", json={"inputs": [row]}, headers=headers)
    assert response.status_code == 200, response.text
    return response


# -- request ids ---------------------------------------------------------------------------------------------------

def test_predict_answers_carry_a_request_id_made_or_kept(served: Served):
    with served.client() as client:
        first, second = predict(client, ROW[0]), predict(client, ROW[0])
        for response in (first, second):
            assert response.json()["id"] == response.headers["x-request-id"] and response.json()["id"]
        assert first.json()["id"] != second.json()["id"]
        kept = predict(client, ROW[0], **{"X-Request-Id": "order-42/line:7"})
        assert kept.json()["id"] == kept.headers["x-request-id"] == "order-42/line:7"
        for bad in ("has space", "x" * 129, "tab\there", "é"):
            response = client.post("/predict/iris", json={"inputs": ROW},
                                   headers=[("X-Request-Id", bad.encode("latin-1") if bad != "é" else b"\xc3\xa9")])
            assert response.status_code == 400 and "X-Request-Id" in response.json()["error"]
        twice = client.post("/predict/iris", json={"inputs": ROW}, headers=[("X-Request-Id", "a"), ("X-Request-Id", "b")])
        assert twice.status_code == 400


def test_v2_answers_keep_the_body_id_else_the_header_else_make_one(served: Served):
    infer = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    with served.client() as client:
        from_body = client.post("/v2/models/iris/infer", json={**infer, "id": "req-7"},
                                headers={"X-Request-Id": "ignored-header"})
        assert from_body.json()["id"] == from_body.headers["x-request-id"] == "req-7"
        from_header = client.post("/v2/models/iris/infer", json=infer, headers={"X-Request-Id": "hdr-1"})
        assert from_header.json()["id"] == from_header.headers["x-request-id"] == "hdr-1"
        made = client.post("/v2/models/iris/infer", json=infer)
        assert made.status_code == 200 and made.json()["id"] == made.headers["x-request-id"]
        assert made.json()["id"] not in ("req-7", "hdr-1")
        bad = client.post("/v2/models/iris/infer", json={**infer, "id": "a b"})
        assert bad.status_code == 400 and '"id"' in bad.json()["error"]
    wait_for(lambda: {"req-7", "hdr-1", made.json()["id"]} <= captured_ids(served.store), "v2 answers captured")


# -- capture -------------------------------------------------------------------------------------------------------

def test_rate_one_captures_every_answer_and_rate_zero_none(served: Served):
    with served.client() as client:
        assert client.post("/predict/pair", json={"inputs": {"a": [[1, 2]], "b": [[3, 4]]}}).status_code == 200
        assert predict(client, ROW[0], **{"X-Environment": "staging"}).json()["environment"] == "staging"
        ids = [predict(client, [float(i), 1.0, 2.0, 3.0]).json()["id"] for i in range(5)]
        # the writer is first in, first out: once the last answer is written, the earlier ones were handled
        wait_for(lambda: set(ids) <= captured_ids(served.store), "the captured answers")
        metrics = client.get("/metrics").text
    records = {r["id"]: r for r in read_captures(served.store.root, "iris", "production")}
    assert len(records) == 5
    record = records[ids[2]]
    v1 = served.weights["v1.0.0"]
    expected_label = NAMES[classifier_expected(v1, np.array([[2.0, 1.0, 2.0, 3.0]], np.float32))[0]].tolist()
    assert {k: record[k] for k in ("model", "environment", "version", "arm", "task")} == {
        "model": "iris", "environment": "production", "version": "v1.0.0", "arm": "stable", "task": "classification"}
    assert record["inputs"] == {"X": [[2.0, 1.0, 2.0, 3.0]]}
    assert record["outputs"]["label"] == expected_label and record["prediction"] == expected_label
    assert not monitoring_dir(served.store.root, "pair", "production").exists()
    assert not monitoring_dir(served.store.root, "iris", "staging").exists()
    assert 'capture_records_total{environment="production",model="iris",outcome="written"} 5.0' in metrics


# -- feedback and quality ------------------------------------------------------------------------------------------

def served_version(client: httpx.Client) -> str:
    return predict(client, ROW[0]).json()["version"]


def test_labels_join_the_version_that_answered_and_the_cli_reports_the_same(served: Served):
    rng = np.random.default_rng(11)
    rows = {"v1.0.0": rng.normal(size=(25, 4)).astype(np.float32), "v2.0.0": rng.normal(size=(25, 4)).astype(np.float32)}
    ids: dict[str, list[str]] = {}
    with served.client() as client:
        ids["v1.0.0"] = [predict(client, row.tolist()).json()["id"] for row in rows["v1.0.0"]]
        deploy_version(served.store, "iris", "v2.0.0", "production")
        wait_for(lambda: served_version(client) == "v2.0.0", "the gateway to serve v2")
        answers = [predict(client, row.tolist()).json() for row in rows["v2.0.0"]]
        assert {answer["version"] for answer in answers} == {"v2.0.0"}
        ids["v2.0.0"] = [answer["id"] for answer in answers]
        wait_for(lambda: set(ids["v1.0.0"] + ids["v2.0.0"]) <= captured_ids(served.store), "the captured answers")

        # the truth, for every row: what v1 predicts. v1 is then right on every row, v2 where it agrees with v1
        truth = {version: NAMES[classifier_expected(served.weights["v1.0.0"], rows[version])[0]] for version in rows}
        labels = [{"id": i, "label": str(label)} for version in rows for i, label in zip(ids[version], truth[version],
                                                                                          strict=True)]
        response = client.post("/feedback/iris", json=[*labels, {"id": "nobody-asked", "label": "setosa"},
                                                       {"id": "nor-this", "label": 2}])
        assert response.status_code == 200, response.text
        assert response.json() == {"model": "iris", "environment": "production", "received": 52, "matched": 50,
                                   "unknown": 2}
        quality = client.get("/quality/iris", params={"since": "1d"})
        assert quality.status_code == 200, quality.text
        week = client.get("/quality/iris").json()
    report = quality.json()
    v2_predicted = NAMES[classifier_expected(served.weights["v2.0.0"], rows["v2.0.0"])[0]]
    v2_accuracy = float(np.mean(v2_predicted == truth["v2.0.0"]))
    assert 0 < v2_accuracy < 1  # the rows tell the versions apart
    assert report["unknown_ids"] == 2 and report["labels"] == 52 and report["matched"] == 50
    assert report["arms"] == [
        {"version": "v1.0.0", "arm": "stable", "labelled_rows": 25, "accuracy": 1.0},
        {"version": "v2.0.0", "arm": "stable", "labelled_rows": 25, "accuracy": pytest.approx(v2_accuracy)},
    ]

    cli = subprocess.run([sys.executable, "-m", "onnxgate", "quality", "iris", "--env", "production", "--json",
                          "--store", str(served.store.root)], capture_output=True, text=True, timeout=DEADLINE_S)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == week


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", "application/json"), (b'{"id": "a", "label": 1}', "application/json"),
    (b'[{"id": "a b", "label": 1}]', "application/json"), (b'[{"id": "a", "label": 1, "value": 2}]', "application/json"),
    (b'[{"id": "a"}]', "application/json"), (b"", "application/json"),
])
def test_malformed_feedback_is_a_400_and_writes_nothing(served: Served, body: bytes, content_type: str):
    with served.client() as client:
        response = client.post("/feedback/iris", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    assert not monitoring_dir(served.store.root, "iris", "production").exists()


def test_feedback_and_quality_refusals(served: Served):
    item = [{"id": "a", "label": "setosa"}]
    with served.client() as client:
        assert client.post("/feedback/nosuch", json=item).status_code == 404
        assert client.post("/feedback/iris", json=item, headers={"X-Environment": "qa"}).status_code == 404
        oversized = client.post("/feedback/iris", json=[{"id": f"i{n}", "label": "setosa"}
                                                        for n in range(MAX_BODY_BYTES // 20)])
        assert oversized.status_code == 413 and "error" in oversized.json()
        wrong_type = client.post("/feedback/iris", content=json.dumps(item), headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        assert client.get("/quality/nosuch").status_code == 404
        bad_since = client.get("/quality/iris", params={"since": "a week"})
        assert bad_since.status_code == 400 and "since" in bad_since.json()["error"]
        assert client.post("/feedback/iris", json=item).json()["matched"] == 0  # an unknown id: counted, not an error
