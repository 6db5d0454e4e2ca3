"""Metrics that add up across workers: the snapshot files, their merge with a worker's live numbers, the app's hooks."""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.worker_metrics import flush_snapshots, merged_exposition, snapshot_path, write_snapshot
from modelstore.layout import Store
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
