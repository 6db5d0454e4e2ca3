"""Measure what request ids and data capture cost a /predict request, in process CPU time (event loop and capture
writer thread together), driving the real application in-process (no HTTP, so the difference is not lost in noise).

Not a test (pytest does not collect it). Run: `.venv/bin/python -m tests.gateway.measure_capture`. Prints the median
over repetitions (interleaved: off, rate 1, off, ...) of CPU µs per request, for capture off and capture rate 1.
"""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.capture_rate import set_capture_rate
from tests.factories import deploy_version, make_store, publish_classifier
from tests.gateway.conftest import gateway_settings

REQUESTS = 3000
REPEATS = 7
BODY = orjson.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]})


async def drive(app: object, model: str, count: int) -> tuple[float, float]:
    """(CPU µs per request of the whole process, of the event loop's thread alone)."""
    scope = {"type": "http", "method": "POST", "path": f"/predict/{model}", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
             "client": ("127.0.0.1", 1)}
    message = {"type": "http.request", "body": BODY, "more_body": False}
    statuses = []

    async def receive() -> dict:
        return message

    async def send(event: dict) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    started, loop_started = time.process_time(), time.thread_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    loop_spent = time.thread_time() - loop_started
    app.state.service.capture.join()  # the writer's CPU counts too
    spent = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return spent / count * 1e6, loop_spent / count * 1e6


async def main() -> None:
    store = make_store(Path(tempfile.mkdtemp()) / "models")
    publish_classifier(store, "off")
    publish_classifier(store, "on")
    deploy_version(store, "off", "v1.0.0")
    deploy_version(store, "on", "v1.0.0")
    set_capture_rate(store, "on", "production", 1.0)
    app = create_app(gateway_settings(store, capture_file_max_bytes=1 << 20, capture_total_max_bytes=8 << 20),
                     metrics_registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        await drive(app, "off", 500)
        await drive(app, "on", 500)
        figures: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for _ in range(REPEATS):
            for model in ("off", "on"):
                figures[model].append(await drive(app, model, REQUESTS))
    for index, what in ((0, "whole process"), (1, "event loop thread (the request path)")):
        off = statistics.median(f[index] for f in figures["off"])
        on = statistics.median(f[index] for f in figures["on"])
        print(f"{REPEATS} x {REQUESTS} requests, in-process ASGI, CPU µs per request (median), {what}: capture off "
              f"{off:.1f}, capture rate 1 {on:.1f} (+{on - off:.1f} µs, {100 * (on - off) / off:+.0f}%)")


if __name__ == "__main__":
    asyncio.run(main())
