"""What live drift costs: CPU per request on the benchmark's logistic regression, drift on against drift off.

The bench store (make_models.py) is built, and `lr` is published again with reference statistics of its training
rows (the breast cancer data), so that the gateway watches it. Two `onnxgate serve` run at once on that store, one with
ONNXGATE_DRIFT_ENABLED=false and one with it on (defaults otherwise: a 10,000-row window, one worker, so no flush
timer), both pinned to core 0, each loaded by its own wrk on core 1 with bench/wrk/predict.lua (paired.py's way); the
figure is the median, over repetitions, of the ratio of their CPU time per request. The drift-on server's counting runs
in the same process, so it is in the figure; nothing reads /metrics during the load, so the gauges' report is not.

Run (repo root): .venv/bin/python -m bench.drift_cost [--repeats 6 --duration 5 --connections 8]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import httpx

from bench.answers import bench_row, check_answer, expected_answer
from bench.loadgen import LoadSpec, require_wrk, run_wrk
from bench.make_models import BenchModels, build, watch_drift
from bench.paired import Side, cpu_us_per_request
from bench.servers import PREDICT_LUA, Endpoint, free_port, gateway_target, running

MODEL = "lr"
LABELS = {False: "drift off", True: "drift on"}


def side(models: BenchModels, drift: bool) -> Side:
    """`onnxgate serve` on the bench store (paired.py's gateway target), with drift on or off."""
    port = free_port()
    endpoint = Endpoint(LABELS[drift], "/predict/{model}", PREDICT_LUA, "probabilities")
    target = gateway_target(models, port)
    target = replace(target, name=f"gateway-drift-{'on' if drift else 'off'}", endpoints=[endpoint],
                     env={**target.env, "ONNXGATE_DRIFT_ENABLED": "true" if drift else "false"})
    return Side(LABELS[drift], target, endpoint, port)


def drift_rows(base_url: str) -> int:
    """The drift-on server's window rows (proof that it counted the load)."""
    report = httpx.get(f"{base_url}/drift/{MODEL}", headers={"X-Environment": "bench"}, timeout=10).json()
    return int(report.get("window_rows", 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--duration", type=int, default=5, help="seconds of measured load per repetition")
    parser.add_argument("--connections", type=int, default=8, help="per side")
    args = parser.parse_args(argv)
    require_wrk()
    spec, warmup = LoadSpec(args.duration, args.connections), LoadSpec(1, args.connections)
    ratios = []
    with tempfile.TemporaryDirectory(prefix="onnxgate-drift-cost-") as tmp:
        models = build(Path(tmp), None)
        watch_drift(models.store_root, models.onnx_paths[MODEL])
        expected = expected_answer(models.onnx_paths[MODEL], bench_row(PREDICT_LUA))
        for repetition in range(args.repeats):
            sides = [side(models, False), side(models, True)]
            if repetition % 2:  # alternate which side starts first
                sides.reverse()
            with contextlib.ExitStack() as stack:
                servers = [stack.enter_context(running(s.target, s.port, Path(tmp) / f"{s.target.name}.log"))
                           for s in sides]
                urls = [server.base_url + s.endpoint.path(MODEL) for server, s in zip(servers, sides, strict=True)]
                for url, s in zip(urls, sides, strict=True):
                    check_answer(url, s.endpoint, expected)
                    run_wrk(url, s.endpoint.lua_script, warmup)
                figures = dict(zip((s.label for s in sides), cpu_us_per_request(servers, urls, sides, spec),
                                   strict=True))
                on = next(server for server, s in zip(servers, sides, strict=True) if s.label == LABELS[True])
                rows = drift_rows(on.base_url)
            if rows == 0:
                raise SystemExit("the drift-on gateway counted no rows: is lr watched?")
            ratio = figures[LABELS[True]] / figures[LABELS[False]]
            ratios.append(ratio)
            print(f"rep {repetition + 1}: off {figures[LABELS[False]]:6.1f} µs/req, on {figures[LABELS[True]]:6.1f} "
                  f"µs/req, ratio {ratio:.3f} (window rows {rows})", flush=True)
    print(f"{MODEL}: drift on uses {statistics.median(ratios):.3f}x the CPU per request of drift off (median of "
          f"{len(ratios)} paired runs: {', '.join(f'{r:.3f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
