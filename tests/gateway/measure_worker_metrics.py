"""Measure what the several-worker metrics cost: one snapshot (collect on the event loop, then encode and write off
it) and one merged scrape, for a registry with about 50 series, next to plain generate_latest.

Not a test (pytest does not collect it). Run: `.venv/bin/python -m tests.gateway.measure_worker_metrics`.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import GatewayMetrics
from gateway.worker_metrics import merged_exposition, write_snapshot

MODELS = 5  # each: 5 outcomes + 1 latency histogram + 3 classes + other + 2 gauges = 12 series
REPEATS = 2000


def gateway_registry(requests: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    for index in range(MODELS):
        meta = SimpleNamespace(name=f"model{index}", version="v1.0.0", labels=["a", "b", "c"], label_output="label")
        series = metrics.for_model(meta, "production")
        for request in range(requests):
            series.record("ok", 0.0001 * (request % 100))
        metrics.model_load_seconds.labels(meta.name, meta.version).set(0.01)
        metrics.canary_weight.labels(meta.name, "production").set(0)
    metrics.models_loaded.set(MODELS)
    metrics.reloads.inc()
    return registry


def median_us(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    registry = gateway_registry(1000)
    families = list(registry.collect())
    series = len({(family.name, *sorted((k, v) for k, v in s.labels.items() if k != "le"))
                  for family in families for s in family.samples if not s.name.endswith("_created")})
    samples = sum(len(family.samples) for family in families)
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        write_snapshot(directory, gateway_registry(500).collect(), 1)  # another worker's
        size = (directory / "worker-1.json").stat().st_size
        collect = median_us(lambda: list(registry.collect()))
        write = median_us(lambda: write_snapshot(directory, families, os.getpid()))
        plain = median_us(lambda: generate_latest(registry))
        merged = median_us(lambda: merged_exposition(list(registry.collect()), directory, os.getpid()))
    print(f"{series} series ({samples} samples), snapshot {size} bytes; medians of {REPEATS} runs:")
    print(f"  snapshot: collect on the event loop {collect:.0f} us, encode + write + replace off it {write:.0f} us")
    print(f"  scrape: generate_latest alone {plain:.0f} us, merged with one other worker's snapshot {merged:.0f} us")


if __name__ == "__main__":
    main()
