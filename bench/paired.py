"""Paired comparison over HTTP: two endpoints' servers run at the same time, both pinned to core 0, each loaded by its
own wrk on core 1; the figure is the median, over repetitions, of the ratio of their CPU time per request.

Both sides see the same machine at the same moment, so a VM neighbour's noise, which moves sequential runs (run.py)
by +-10%, mostly cancels out: use this to price one change against another, and run.py for the report's figures.
The two sides may be two endpoints of one target (each side gets its own server).

Run (repo root): .venv/bin/python -m bench.paired "floor /predict" "gateway v2 infer" [--model lr --repeats 4]
(an installed peer's endpoint, e.g. "litserve /predict", pairs too)

One endpoint against itself with a different environment prices a switch, e.g. capture on against off:
.venv/bin/python -m bench.paired "gateway /predict" "gateway /predict" --env-b ONNXGATE_CAPTURE_RATE=1
(`--env-b PYTHONPATH=/tmp/variant` serves a modified copy of a package, for a variant that has no switch.)
`--drift` gives lr reference statistics (live drift counts every row), `--canary 10` starts the model again as a
10% canary (every request split, both versions judged): the gateway with every per-request feature on.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench.answers import bench_row, check_answer, expected_answer
from bench.loadgen import LoadgenError, LoadSpec, finish_wrk, require_wrk, run_wrk, start_wrk
from bench.make_models import BenchModels, build, canary_of, watch_drift
from bench.peer_targets import PEERS
from bench.run import CORE_TARGETS, make_target
from bench.servers import PREDICT_LUA, Endpoint, RunningServer, Target, env_pairs, free_port, running
from bench.train_sklearn import MODEL_KINDS
from modelstore.layout import Store

PAIRABLE = [name for name in CORE_TARGETS if name != "mlserver"]  # MLServer's repository is not built here


@dataclass(frozen=True)
class Side:
    label: str
    target: Target
    endpoint: Endpoint
    port: int


def side(label: str, models: BenchModels, workdir: Path, env: dict[str, str] | None = None) -> Side:
    """The server and endpoint behind an endpoint label such as "gateway v2 infer" (a fresh server and port), its
    server started with `env` added to its environment."""
    port = free_port()
    names = [*PAIRABLE, *(name for name, peer in PEERS.items() if peer.available())]
    targets = [make_target(name, models, port, workdir, None) for name in names]
    for target in targets:
        for endpoint in target.endpoints:
            if endpoint.label == label:
                if env:
                    target = replace(target, env={**target.env, **env})
                return Side(shown_side(label, env or {}), target, endpoint, port)
    known = [endpoint.label for target in targets for endpoint in target.endpoints]
    raise SystemExit(f"unknown endpoint {label!r}; choose from {', '.join(known)}")


def shown_side(label: str, env: dict[str, str]) -> str:
    return f"{label} [{' '.join(f'{key}={value}' for key, value in env.items())}]" if env else label


def cpu_us_per_request(servers: list[RunningServer], urls: list[str], sides: list[Side], spec: LoadSpec) -> list[float]:
    """Load both servers at once and return each one's server CPU µs per request over that window."""
    before = [server.cpu_seconds() for server in servers]
    processes = [start_wrk(url, s.endpoint.lua_script, spec) for url, s in zip(urls, sides, strict=True)]
    results = [finish_wrk(process, url, spec) for process, url in zip(processes, urls, strict=True)]
    after = [server.cpu_seconds() for server in servers]
    for result, url in zip(results, urls, strict=True):
        if not result.clean:
            raise LoadgenError(f"{url}: {result.non_2xx} non-2xx answers, {result.socket_errors} socket errors")
    return [(end - start) / result.requests * 1e6 for start, end, result in zip(before, after, results, strict=True)]


def canary_running(models: BenchModels, model: str) -> bool:
    return Store(models.store_root).registry.read().state.deployment(model, models.environment).canary is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help='the baseline endpoint, e.g. "floor /predict"')
    parser.add_argument("b", help='the endpoint compared with it, e.g. "gateway /predict"')
    parser.add_argument("--model", choices=MODEL_KINDS, default="lr")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--duration", type=int, default=5, help="seconds of measured load per repetition")
    parser.add_argument("--connections", type=int, default=8, help="per side")
    parser.add_argument("--drift", action="store_true", help="publish lr with reference statistics, so that the "
                        "gateway's live drift (on by default) counts every row it serves")
    parser.add_argument("--canary", type=float, default=None, metavar="WEIGHT",
                        help="start the model again as a canary at WEIGHT percent (the same answers), so that the "
                        "gateway splits every request and its rollout state judges both versions")
    parser.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE",
                        help="added to the environment of a's server (repeatable)")
    parser.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE",
                        help="added to the environment of b's server (repeatable)")
    args = parser.parse_args(argv)
    env_a, env_b = env_pairs(args.env_a), env_pairs(args.env_b)
    if args.a == args.b and env_a == env_b:
        parser.error("compare two different endpoints, or one endpoint with two environments")
    name_a, name_b = shown_side(args.a, env_a), shown_side(args.b, env_b)
    require_wrk()
    spec, warmup = LoadSpec(args.duration, args.connections), LoadSpec(1, args.connections)
    ratios = []
    with tempfile.TemporaryDirectory(prefix="onnxgate-paired-") as tmp:
        models = build(Path(tmp), None)
        if args.drift:
            watch_drift(models.store_root, models.onnx_paths["lr"])
        if args.canary is not None:
            canary_of(models.store_root, args.model, args.canary)
        expected = expected_answer(models.onnx_paths[args.model], bench_row(PREDICT_LUA))
        for repetition in range(args.repeats):
            sides = [side(args.a, models, Path(tmp), env_a), side(args.b, models, Path(tmp), env_b)]
            if repetition % 2:  # alternate which side starts first
                sides.reverse()
            with contextlib.ExitStack() as stack:
                servers = [stack.enter_context(running(s.target, s.port, Path(tmp) / f"{s.target.name}-{i}.log"))
                           for i, s in enumerate(sides)]
                urls = [server.base_url + s.endpoint.path(args.model) for server, s in zip(servers, sides, strict=True)]
                for url, s in zip(urls, sides, strict=True):
                    check_answer(url, s.endpoint, expected)
                    run_wrk(url, s.endpoint.lua_script, warmup)
                figures = dict(zip((s.label for s in sides), cpu_us_per_request(servers, urls, sides, spec),
                                   strict=True))
            if args.canary is not None and not canary_running(models, args.model):
                raise SystemExit(f"rep {repetition + 1}: the canary was rolled back during the run (see the "
                                 "gateway's log): the figures would not be of a split route")
            ratio = figures[name_b] / figures[name_a]
            ratios.append(ratio)
            print(f"rep {repetition + 1}: {name_a} {figures[name_a]:6.1f} µs/req, {name_b} {figures[name_b]:6.1f} "
                  f"µs/req, ratio {ratio:.3f}", flush=True)
    print(f"{args.model}: {name_b!r} uses {statistics.median(ratios):.3f}x the CPU per request of {name_a!r} "
          f"(median of {len(ratios)} paired runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
