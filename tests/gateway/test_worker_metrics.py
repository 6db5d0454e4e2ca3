"""Metrics that add up across workers: the snapshot files, their merge with a worker's live numbers, the app's hooks,
and `onnxgate serve --workers 2` end to end."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.worker_metrics import flush_snapshots, merged_exposition, snapshot_path, write_snapshot
from modelstore.layout import Store
from tests.factories import deploy_version, free_port, make_store, publish_classifier, stop_server, wait_ready
from tests.gateway.conftest import gateway_settings

ROW = [[5.1, 3.5, 1.4, 0.2]]
OTHER_PID = 1  # never this test process: its snapshot is always "another worker's"

Samples = dict[tuple[str, frozenset], float]


def parsed(text: str | bytes) -> Samples:
    if isinstance(text, bytes):
        text = text.decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def worker_registry(hits: dict[str, int], observations: list[float], loaded: int, weight: float) -> CollectorRegistry:
    """One worker's registry with a labelled counter, a histogram and two gauges."""
    registry = CollectorRegistry()
    counter = Counter("hits", "Hits", ["model"], registry=registry)
    for model, count in hits.items():
        counter.labels(model).inc(count)
    histogram = Histogram("latency_seconds", "Latency", buckets=(0.1, 1.0), registry=registry)
    for seconds in observations:
        histogram.observe(seconds)
    Gauge("loaded", "Loaded", registry=registry).set(loaded)
    Gauge("weight", "Weight", registry=registry).set(weight)
    return registry


def test_merge_adds_counters_and_histograms_keeps_the_largest_gauge_and_the_earliest_created(tmp_path: Path):
    other = worker_registry({"a": 3, "b": 1}, [0.05, 0.5], loaded=2, weight=30)
    mine = worker_registry({"a": 4, "c": 2}, [0.05, 5.0], loaded=5, weight=10)
    write_snapshot(tmp_path, other.collect(), OTHER_PID)
    assert os.listdir(tmp_path) == ["worker-1.json"]  # no temporary file left behind
    other_samples, my_samples = parsed(generate_latest(other)), parsed(generate_latest(mine))

    merged = parsed(merged_exposition(list(mine.collect()), tmp_path, os.getpid()))

    def value(name: str, **labels: str) -> float:
        return merged[(name, frozenset(labels.items()))]

    assert (value("hits_total", model="a"), value("hits_total", model="b"), value("hits_total", model="c")) == (7, 1, 2)
    assert [value("latency_seconds_bucket", le=le) for le in ("0.1", "1.0", "+Inf")] == [2, 3, 4]
    assert value("latency_seconds_count") == 4 and value("latency_seconds_sum") == pytest.approx(0.05 + 0.5 + 0.05 + 5.0)
    assert value("loaded") == 5 and value("weight") == 30
    for key in [key for key in merged if key[0].endswith("_created") and key in other_samples and key in my_samples]:
        assert merged[key] == min(other_samples[key], my_samples[key])
    assert merged[("hits_created", frozenset({("model", "b")}))] == other_samples[("hits_created", frozenset({("model", "b")}))]
    assert set(merged) == set(other_samples) | set(my_samples)


def test_an_exited_workers_counters_still_add_up_but_its_gauges_are_left_out(tmp_path: Path):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                            check=True)
    dead_pid = int(exited.stdout)
    write_snapshot(tmp_path, worker_registry({"a": 3}, [0.5], loaded=9, weight=50).collect(), dead_pid)
    mine = worker_registry({"a": 4}, [0.05], loaded=2, weight=0)

    merged = parsed(merged_exposition(list(mine.collect()), tmp_path, os.getpid()))

    assert merged[("hits_total", frozenset({("model", "a")}))] == 7
    assert merged[("latency_seconds_count", frozenset())] == 2
    assert (merged[("loaded", frozenset())], merged[("weight", frozenset())]) == (2, 0)


def test_alone_a_workers_exposition_is_exactly_what_prometheus_client_writes(tmp_path: Path):
    """Its own snapshot is skipped (its live numbers are newer) and nothing else changes a byte."""
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    series = metrics.for_model(SimpleNamespace(name="m", version="v1", labels=["a"], label_output="y"), "prod")
    series.record("ok", 0.002)
    metrics.models_loaded.set(3)
    metrics.reloads.inc()
    write_snapshot(tmp_path, registry.collect(), os.getpid())
    series.record("ok", 0.004)  # newer than the snapshot

    assert merged_exposition(list(registry.collect()), tmp_path, os.getpid()) == generate_latest(registry)


def test_unreadable_snapshots_are_skipped(tmp_path: Path):
    write_snapshot(tmp_path, worker_registry({"a": 3}, [], loaded=1, weight=0).collect(), OTHER_PID)
    snapshot_path(tmp_path, 2).write_bytes(b'[{"name": "hits", "type": "coun')  # cut short
    snapshot_path(tmp_path, 3).write_bytes(b"")
    snapshot_path(tmp_path, 4).write_text('{"name": "hits"}')  # JSON, not a snapshot
    snapshot_path(tmp_path, 5).write_text('[{"name": "hits", "type": "nonsense", "documentation": "", "unit": "", '
                                          '"samples": []}]')
    snapshot_path(tmp_path, 6).write_bytes(b"\xff\xfe")
    (tmp_path / ".worker-7-abc.tmp").write_bytes(b"half a snapsh")  # a write in progress
    mine = worker_registry({"a": 4}, [], loaded=2, weight=0)

    merged = parsed(merged_exposition(list(mine.collect()), tmp_path, os.getpid()))

    assert merged[("hits_total", frozenset({("model", "a")}))] == 7 and merged[("loaded", frozenset())] == 2


def test_flush_writes_at_once_then_once_more_when_stopped(tmp_path: Path):
    registry = CollectorRegistry()
    counter = Counter("hits", "Hits", registry=registry)
    path = snapshot_path(tmp_path / "metrics", os.getpid())  # the directory is created by the first write

    def hits() -> float:
        [family] = [f for f in json.loads(path.read_bytes()) if f["name"] == "hits"]
        return next(value for name, _, value in family["samples"] if name == "hits_total")

    async def scenario() -> tuple[float, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(flush_snapshots(registry, tmp_path / "metrics", 3600, stop))
        deadline = time.monotonic() + 30
        while not path.exists():
            assert time.monotonic() < deadline, "no first snapshot"
            await asyncio.sleep(0.01)
        first = hits()
        counter.inc(5)
        stop.set()  # wakes the hour-long wait
        await task
        return first, hits()

    assert asyncio.run(scenario()) == (0, 5)


def test_app_merges_other_workers_snapshots_and_writes_its_own_at_shutdown(served_store: tuple[Store, dict],
                                                                           tmp_path: Path):
    store, _ = served_store
    labels = frozenset({"model": "iris", "version": "v1.0.0", "environment": "production", "outcome": "ok"}.items())
    other = CollectorRegistry()
    other_series = GatewayMetrics(other).for_model(
        SimpleNamespace(name="iris", version="v1.0.0", labels=[], label_output=None), "production")
    for _ in range(3):
        other_series.record("ok", 0.001)
    write_snapshot(tmp_path, other.collect(), OTHER_PID)
    app = create_app(gateway_settings(store, "production", metrics_dir=tmp_path), metrics_registry=CollectorRegistry())

    with TestClient(app) as client:
        for _ in range(2):
            assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 200
        response = client.get("/metrics")
        assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
        assert parsed(response.text)[("requests_total", labels)] == 5

    own = json.loads(snapshot_path(tmp_path, os.getpid()).read_bytes())
    [requests] = [family for family in own if family["name"] == "requests"]
    assert [value for _, sample_labels, value in requests["samples"] if frozenset(sample_labels.items()) == labels] == [2]


def served_iris(tmp_path: Path) -> str:
    store = make_store(tmp_path / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    deploy_version(store, "iris", "v1.0.0", "production")
    return str(store.root)


def start_serve(root: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--workers", "2",
                                 "--port", str(port), "--store", root], env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def iris_requests(families: list[dict]) -> float:
    return sum(value for family in families if family["name"] == "requests"
               for name, labels, value in family["samples"] if name == "requests_total" and labels["model"] == "iris")


def fresh_connections(url: str) -> httpx.Client:
    """A client that opens a new connection for every request, so that the workers share them."""
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def scraped_totals(client: httpx.Client) -> tuple[float, float]:
    """requests_total and request_latency_seconds_count of model iris, from one scrape."""
    text = client.get("/metrics").text
    totals = {"requests_total": 0.0, "request_latency_seconds_count": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals and sample.labels.get("model") == "iris":
                totals[sample.name] += sample.value
    return totals["requests_total"], totals["request_latency_seconds_count"]


def settled_snapshots(metrics_dir: Path, requests_sent: int) -> list[int]:
    """Each worker's count of iris requests, once the snapshots hold every request sent (within metrics_flush_s, 1 s;
    a generous deadline, since the machine may be loaded)."""
    deadline = time.monotonic() + 30
    while True:
        per_worker = [iris_requests(json.loads(path.read_bytes())) for path in metrics_dir.glob("worker-*.json")]
        if sum(per_worker) == requests_sent:
            return per_worker
        assert time.monotonic() < deadline, f"snapshots hold {per_worker} requests, not {requests_sent}"
        time.sleep(0.1)


@pytest.mark.e2e
def test_serve_with_two_workers_scrapes_every_workers_requests(tmp_path: Path):
    root = served_iris(tmp_path)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env["ONNXGATE_METRICS_DIR"] = str(metrics_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_serve(root, port, env, tmp_path / "serve.log")
    try:
        wait_ready(url, process)
        with fresh_connections(url) as client:
            # Which worker accepts a connection is the kernel's choice, and on a loaded machine one worker may take a
            # long run of them: send in rounds until two have answered some, then check every scrape adds up.
            requests_sent = 0
            per_worker: list[int] = []
            deadline = time.monotonic() + 90
            while sum(1 for count in per_worker if count) < 2:
                assert time.monotonic() < deadline, f"after {requests_sent} requests the workers hold {per_worker}"
                for _ in range(100):
                    assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 200
                requests_sent += 100
                per_worker = settled_snapshots(metrics_dir, requests_sent)

            deadline = time.monotonic() + 30
            while (totals := scraped_totals(client)) != (requests_sent, requests_sent):
                assert totals[0] <= requests_sent and time.monotonic() < deadline, totals
                time.sleep(0.1)
            for _ in range(10):
                assert scraped_totals(client) == (requests_sent, requests_sent)
    finally:
        stop_server(process)
    assert process.returncode == 0, (tmp_path / "serve.log").read_text()
    assert len(list(metrics_dir.glob("worker-*.json"))) >= 2  # left to its owner (a replaced worker adds one)


@pytest.mark.e2e
def test_serve_with_two_workers_makes_and_removes_its_own_metrics_directory(tmp_path: Path):
    root = served_iris(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env["TMPDIR"] = str(temp)  # where tempfile.mkdtemp puts it
    port = free_port()
    process = start_serve(root, port, env, tmp_path / "serve.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        [made] = temp.glob("onnxgate-metrics-*")
        deadline = time.monotonic() + 30
        while len(list(made.glob("worker-*.json"))) < 2:
            assert time.monotonic() < deadline, "the two workers wrote no snapshots"
            time.sleep(0.1)
    finally:
        stop_server(process)
    assert process.returncode == 0, (tmp_path / "serve.log").read_text()
    assert not made.exists()
