"""Hot-path cost of the canary split and the windows, and of one judge tick (not collected by pytest).

Run: .venv/bin/python tests/rollout/bench_hot_path.py
"""
from __future__ import annotations

import random
import statistics
import time

from gateway.judge import RolloutJudge
from gateway.traffic import ArmWindows, choose_arm
from modelstore.registry import CanaryState, Deployment

REQUESTS = 200_000
T0 = 1_700_000_000.0


def per_call_us(calls: int, started: float) -> float:
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    deployment = Deployment(version="v1.0.0", deployed_at="2025-01-01T00:00:00Z", canary=CanaryState(
        version="v1.1.0", weight=10, started_at="2025-01-01T00:00:00Z", step_started_at="2025-01-01T00:00:00Z"),
        routing_salt="5f1c0e9a7b3d42c8a1e6f0b2d4c8e9a7")
    rng = random.Random(0)
    keys = [f"user-{i}" for i in range(REQUESTS)]
    started = time.perf_counter()
    for key in keys:
        choose_arm(deployment, key, rng)
    keyed = per_call_us(REQUESTS, started)
    started = time.perf_counter()
    for _ in range(REQUESTS):
        choose_arm(deployment, None, rng)
    unkeyed = per_call_us(REQUESTS, started)

    windows = ArmWindows()
    latencies = [rng.lognormvariate(-5.5, 0.5) for _ in range(REQUESTS)]
    started = time.perf_counter()
    for index, latency in enumerate(latencies):
        windows.record("stable", "v1.0.0", latency, True, T0 + index * 10 / REQUESTS)
    record = per_call_us(REQUESTS, started)
    sourced = ArmWindows()
    started = time.perf_counter()
    for index, (latency, key) in enumerate(zip(latencies, keys, strict=True)):
        sourced.record("stable", "v1.0.0", latency, True, T0 + index * 10 / REQUESTS, key)
    record_sourced = per_call_us(REQUESTS, started)
    for index, latency in enumerate(latencies[:20_000]):
        windows.record("canary", "v1.1.0", latency, True, T0 + index * 10 / 20_000)

    ticks = []
    for _ in range(200):
        judge = RolloutJudge("tiny", "prod")
        judge.tick(deployment, windows, T0)
        started = time.perf_counter()
        judge.tick(deployment, windows, T0 + 10)
        ticks.append(time.perf_counter() - started)
    print(f"choose_arm keyed {keyed:.2f} us, unkeyed {unkeyed:.2f} us; window record {record:.2f} us, "
          f"with a source each {record_sourced:.2f} us; "
          f"judge tick over 220k observations: median {statistics.median(ticks) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
