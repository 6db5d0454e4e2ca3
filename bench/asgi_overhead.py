"""What the gateway's application code costs per request over the floor's, with no server and no sockets.

The apps (bench/floor_app.py in both its forms, Starlette and plain ASGI, and the gateway, metrics on) are called
directly in one process, on the same models and rows, in interleaved rounds; the figure is the median µs per request
of each and the gateway's ratio to the Starlette floor. This isolates the part of the HTTP benchmark (bench/run.py)
the apps' own code decides, from uvicorn's parsing and the kernel's loopback, and is steady enough to compare one
change with the next. It understates what a cost weighs over HTTP, where caches are cold between requests: a numpy
reduction of ~1 µs here cost ~15 µs a request there (bench/README.md). `--profile` prints where the
gateway's time goes (cProfile, sorted by own time).

Run (repo root): .venv/bin/python -m bench.asgi_overhead [--requests 20000 --rounds 5] [--profile]
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench import floor_app
from bench.answers import lua_body
from bench.make_models import ENVIRONMENT, build_onnx_store
from bench.servers import PREDICT_LUA, V2_INFER_LUA
from gateway.app import create_app
from gateway.settings import GatewaySettings


def http_scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


def caller(app: Callable, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> Callable:
    scope = http_scope(path, body, headers)
    request = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict:
        return request

    async def call() -> int:
        status = 0

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(scope), receive, send)
        return status

    return call


async def per_request_us(call: Callable, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await call()
    return (time.perf_counter() - started) / requests * 1e6


async def measure(args: argparse.Namespace, work: Path) -> None:
    store_root, onnx_paths = build_onnx_store(work)
    floor = floor_app.create_app(onnx_paths)
    asgi_floor = floor_app.create_asgi_app(onnx_paths)
    gateway = create_app(GatewaySettings(store=store_root, environments=[ENVIRONMENT]),
                         metrics_registry=CollectorRegistry())
    body, v2_body = lua_body(PREDICT_LUA), lua_body(V2_INFER_LUA)  # the bytes the HTTP benchmark sends
    async with gateway.router.lifespan_context(gateway):
        for model in args.models:
            calls = {
                "floor /predict": caller(floor, f"/predict/{model}", body, []),
                "floor-asgi /predict": caller(asgi_floor, f"/predict/{model}", body, []),
                "gateway /predict": caller(gateway, f"/predict/{model}", body, []),
                "gateway v2 infer": caller(gateway, f"/v2/models/{model}/infer", v2_body, []),
            }
            for name, call in calls.items():
                assert await call() == 200, f"{name} {model} did not answer 200"
                await per_request_us(call, 500)  # warm-up
            figures: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    figures[name].append(await per_request_us(call, args.requests))
            floor_us = statistics.median(figures["floor /predict"])
            for name, values in figures.items():
                median = statistics.median(values)
                ratio = "" if name.startswith("floor") else (f"  floor/gateway throughput {floor_us / median:.0%}, "
                                                             f"+{median - floor_us:.1f} µs")
                print(f"{model} {name:19} median {median:6.1f} µs/request over {args.rounds} rounds{ratio}")
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await per_request_us(calls["gateway /predict"], args.requests)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round and target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["lr", "rf"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxgate-asgi-") as work:
        asyncio.run(measure(args, Path(work)))


if __name__ == "__main__":
    main()
