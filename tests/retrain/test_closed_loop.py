"""The closed loop through a real gateway: `onnxgate serve`'s app under uvicorn on a loopback port with capture on,
drifted traffic sent to /predict, `onnxgate retrain check` seeing the drift in what was captured, `onnxgate retrain
watch --once` training, exporting and challenging, and the gateway answering from the new version as a canary."""
from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from tests.factories import running_server
from tests.gateway.conftest import gateway_settings
from tests.retrain.conftest import STRONG, WEAK, onnxgate, retrain_json, write_config

DEADLINE_S = 120.0
DRIFT = 'drift = { share = 0.3, min_rows = 200, window = "1h" }\n'


@pytest.mark.e2e
def test_drifted_traffic_in_a_new_version_serving_as_canary_out(store, workdir, cancer):
    write_config(store, workdir, command=WEAK, weight=50)
    code, first, stderr = retrain_json(store, "run", "cancer")
    assert code == 0 and first["decision"]["decision"] == "first", stderr
    write_config(store, workdir, command=STRONG, triggers=DRIFT, cooldown="1s", weight=50)
    time.sleep(1.1)  # past the first job's cooldown
    x_hold = cancer[2]
    drifted = (x_hold * 1.8 + x_hold.std(axis=0)).astype(np.float32)
    settings = gateway_settings(store, "production", capture_rate=1.0)

    with running_server(create_app(settings, metrics_registry=CollectorRegistry())) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(drifted), 10):
            answer = client.post("/predict/cancer", json={"inputs": drifted[start:start + 10].tolist()})
            assert answer.status_code == 200 and answer.json()["version"] == "v1.0.0", answer.text
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the capture writer appends in the background
            code, checked, stderr = retrain_json(store, "check", "cancer")
            assert code == 0, stderr
            if checked["fires"] == "drift" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert checked["fires"] == "drift", checked
        drift = checked["triggers"][0]["figures"]
        assert drift["rows"] == len(drifted) and drift["drifted_share"] >= 0.3

        watched = onnxgate(store, "retrain", "watch", "--once")
        assert watched.returncode == 0, watched.stderr
        assert "check cancer: drift fires" in watched.stderr and "completed v1.1.0" in watched.stderr

        seen = set()
        deadline = time.monotonic() + DEADLINE_S
        while not {("v1.1.0", "canary"), ("v1.0.0", "stable")} <= seen and time.monotonic() < deadline:
            answer = client.post("/predict/cancer", json={"inputs": x_hold[:5].tolist()}).json()
            seen.add((answer["version"], answer["arm"]))
        assert ("v1.1.0", "canary") in seen and ("v1.0.0", "stable") in seen

    [job, _] = retrain_json(store, "jobs", "cancer")[1]
    assert job["trigger"]["trigger"] == "drift" and job["trigger"]["figures"]["rows"] == len(drifted)
    assert job["status"] == "completed" and job["decision"]["action"] == "canary"
