"""The gateway's v2 infer over gRPC beside the same over HTTP, in one run of one server: `onnxgate serve --grpc-port`
pinned to core 0, this process's load generators (async_loadgen.py) pinned to core 1, and beside them
bench/grpc_floor.py, the least a grpc.aio server does to answer (what gRPC itself costs in Python). The three take
turns, the one that goes first changing each repetition; each measurement is a warm-up then a measured window (<= 20 s
in all). The figures are medians over repetitions of ratios taken within the same repetition: requests/s, and the
server's CPU time per request (utime+stime of its process group, which the client's own cost does not move).

Both send the same row as bench/wrk/v2_infer.lua (`--rows N`: N copies of it): HTTP as that JSON body, gRPC as a
ModelInferRequest with the rows in raw_input_contents (what tritonclient.grpc sends). Each answer is checked against
onnxruntime first.

Run (repo root): .venv/bin/python -m bench.grpc_vs_http [--model lr] [--repeats 3] [--duration 8] [--warmup 2]
                 [--rate R: the same offered requests/s for all, instead of as fast as the clients go]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.answers import TOLERANCE, WrongAnswer, bench_row, contains_run, expected_answer, flat_numbers, lua_body, post
from bench.async_loadgen import LoadResult, load_grpc, load_http
from bench.grpc_floor import running_floor
from bench.loadgen import LOADGEN_CPU
from bench.make_models import build
from bench.servers import HOST, PREDICT_LUA, V2_INFER_LUA, RunningServer, free_port, gateway_target, running
from bench.train_sklearn import MODEL_KINDS

MAX_RUN_S = 20
PROTOCOLS = ("http", "grpc", "grpc-floor")  # the gateway over HTTP and gRPC; bench/grpc_floor.py over gRPC
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The gateway's v2 infer over gRPC against HTTP, same server, same run.")
    parser.add_argument("--model", choices=MODEL_KINDS, default="lr")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per protocol and repetition")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers (HTTP: one connection each)")
    parser.add_argument("--rows", type=int, default=1, help="the bench row repeated this many times per request "
                        "(1: the very body of bench/wrk/v2_infer.lua)")
    parser.add_argument("--rate", type=float, default=None,
                        help="offered requests/s for both protocols (default: as fast as the clients go); a rate "
                        "both sustain compares the server's CPU per request at the same load")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.duration + args.warmup > MAX_RUN_S:
        parser.error(f"--warmup + --duration must stay within {MAX_RUN_S} s per run")
    return args


def infer_request(model: str, row: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, raw_input_contents=[row.astype("<f4").tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=row.shape)
    return request


def json_body(rows: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                                   "data": rows.ravel().tolist()}]}).encode()


def check_http_answer(url: str, body: bytes, probabilities: list[float]) -> None:
    if not contains_run(flat_numbers(post(url, body)), probabilities):
        raise WrongAnswer(f"HTTP {url}: probabilities {probabilities} not in the answer")


def check_grpc_answer(address: str, request: service_pb2.ModelInferRequest, probabilities: list[float]) -> None:
    with grpc.insecure_channel(address) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    outputs = dict(zip((o.name for o in response.outputs), response.raw_output_contents, strict=True))
    got = np.frombuffer(outputs["probabilities"], dtype="<f4")[:len(probabilities)]  # the first row's
    if not np.allclose(got, probabilities, atol=TOLERANCE, rtol=0):
        raise WrongAnswer(f"gRPC {address}: probabilities {got.tolist()}, expected {probabilities}")


def measure(protocol: str, load: Callable[[float], Coroutine[None, None, LoadResult]], server: RunningServer,
            warmup_s: float, duration_s: float) -> dict:
    asyncio.run(load(warmup_s))
    before = server.cpu_seconds()
    result = asyncio.run(load(duration_s))
    cpu_s = server.cpu_seconds() - before
    if not result.clean:
        raise WrongAnswer(f"{protocol}: {result.errors} failed requests (first: {result.first_error})")
    return {"protocol": protocol, **result.as_dict(), "cpu_us_per_request": cpu_s / result.requests * 1e6}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(LOADGEN_CPU)})  # before grpc starts its threads: they inherit it
    model = args.model
    row = bench_row(PREDICT_LUA)
    rows = np.repeat(row, args.rows, axis=0)
    body = lua_body(V2_INFER_LUA) if args.rows == 1 else json_body(rows)
    request = infer_request(model, rows)
    with tempfile.TemporaryDirectory(prefix="onnxgate-bench-grpc-") as tmp:
        workdir = Path(tmp)
        print("building the bench models ...", flush=True)
        models = build(workdir / "models", None)
        expected = expected_answer(models.onnx_paths[model], row)
        port, grpc_port = free_port(), free_port()
        target = gateway_target(models, port)
        target = dataclasses.replace(target, command=[*target.command, "--grpc-port", str(grpc_port)])
        v2_endpoint = next(e for e in target.endpoints if e.label == "gateway v2 infer")
        floor_port = free_port()
        runs: list[dict] = []
        with running(target, port, workdir / "gateway.log") as server, \
                running_floor({model: models.onnx_paths[model]}, floor_port, workdir / "floor.log") as floor:
            check_http_answer(f"{server.base_url}{v2_endpoint.path(model)}", body, expected.probabilities)
            check_grpc_answer(f"{HOST}:{grpc_port}", request, expected.probabilities)
            check_grpc_answer(f"{HOST}:{floor_port}", request, expected.probabilities)
            loads = {
                "http": (server, lambda s: load_http(HOST, port, v2_endpoint.path(model), body, args.clients, s,
                                                     args.rate)),
                "grpc": (server, lambda s: load_grpc(HOST, grpc_port, request, args.clients, s, args.rate)),
                "grpc-floor": (floor, lambda s: load_grpc(HOST, floor_port, request, args.clients, s, args.rate)),
            }
            protocols = list(loads)
            for repetition in range(args.repeats):
                order = protocols[repetition % 3:] + protocols[:repetition % 3]  # each goes first in turn
                for protocol in order:
                    target_server, load = loads[protocol]
                    run = measure(protocol, load, target_server, args.warmup, args.duration)
                    runs.append({"repetition": repetition, **run})
                    print(f"  rep {repetition} {protocol:10}: {run['requests_per_s']:8,.0f} req/s  p50 "
                          f"{run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms  server CPU "
                          f"{run['cpu_us_per_request']:,.0f} µs/req", flush=True)
    summary = summarize(runs, args.repeats)
    print_summary(model, summary)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"grpc-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "summary": summary,
                               "loadavg": os.getloadavg()}, indent=2) + "\n")
    print(f"raw runs: {out}")
    return 0


def summarize(runs: list[dict], repeats: int) -> dict:
    """Per protocol the medians; and the medians of the per-repetition gRPC / HTTP ratios."""
    by = {(run["repetition"], run["protocol"]): run for run in runs}
    summary: dict = {}
    for protocol in PROTOCOLS:
        mine = [run for run in runs if run["protocol"] == protocol]
        summary[protocol] = {key: statistics.median(run[key] for run in mine)
                             for key in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us_per_request")}
    summary["grpc_over_http"] = {
        "requests_per_s": statistics.median(by[r, "grpc"]["requests_per_s"] / by[r, "http"]["requests_per_s"]
                                            for r in range(repeats)),
        "cpu_us_per_request": statistics.median(by[r, "grpc"]["cpu_us_per_request"] / by[r, "http"]["cpu_us_per_request"]
                                                for r in range(repeats)),
    }
    summary["grpc_over_floor_cpu"] = statistics.median(
        by[r, "grpc"]["cpu_us_per_request"] / by[r, "grpc-floor"]["cpu_us_per_request"] for r in range(repeats))
    return summary


def print_summary(model: str, summary: dict) -> None:
    print("\n| model | protocol | req/s | p50 ms | p99 ms | server CPU µs/req |\n|---|---|--:|--:|--:|--:|")
    for protocol in PROTOCOLS:
        s = summary[protocol]
        print(f"| {model} | {protocol} | {s['requests_per_s']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['cpu_us_per_request']:,.0f} |")
    ratio = summary["grpc_over_http"]
    print(f"\ngRPC / HTTP (median of per-repetition ratios): requests/s {ratio['requests_per_s']:.2f}, server CPU per "
          f"request {ratio['cpu_us_per_request']:.2f}; gateway gRPC / gRPC floor, server CPU per request "
          f"{summary['grpc_over_floor_cpu']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
