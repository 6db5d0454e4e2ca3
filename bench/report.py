"""Medians over repetitions, the gateway's ratios to the floor, MLServer and the peers, and the printed tables."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.loadgen import WrkResult
from bench.peer_targets import PEERS
from onnxgate.output import print_table

FLOOR_ENDPOINT = "floor /predict"
ASGI_FLOOR_ENDPOINT = "floor-asgi /predict"  # no goal: shows what skipping Starlette gives the gateway
MLSERVER_ENDPOINT = "mlserver v2 infer"
PEER_ENDPOINTS = {name: f"{name} /predict" for name in PEERS}
GATEWAY_PREFIX = "gateway "
GOAL_OF_FLOOR = 0.85
GOAL_OVER_MLSERVER = 6.0


@dataclass(frozen=True)
class Measurement:
    repetition: int
    endpoint: str
    model: str
    result: WrkResult
    server_cpu_s: float
    load_average: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(self.result.requests, 1) * 1e6

    def as_dict(self) -> dict:
        return {"repetition": self.repetition, "endpoint": self.endpoint, "model": self.model, **self.result.as_dict(),
                "server_cpu_s": round(self.server_cpu_s, 3), "cpu_us_per_request": round(self.cpu_us_per_request, 1),
                "load_average_1m": self.load_average}


@dataclass(frozen=True)
class Summary:
    endpoint: str
    model: str
    runs: int
    clean_runs: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Ratio:
    """The gateway's requests/s over the floor's and MLServer's; the `_cpu` variants compare server CPU time per
    request instead (inverted, so higher is better for the gateway either way). `of_asgi_floor` compares with the
    floor as a plain ASGI app, for information; `over_peers` holds, per peer measured, the gateway's requests/s over
    the peer's ("rate") and the peer's CPU per request over the gateway's ("cpu")."""

    model: str
    endpoint: str
    of_floor: float | None
    over_mlserver: float | None
    of_floor_cpu: float | None
    over_mlserver_cpu: float | None
    of_asgi_floor: float | None = None
    over_peers: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**self.__dict__, "meets_floor_goal": _meets(self.of_floor, GOAL_OF_FLOOR),
                "meets_mlserver_goal": _meets(self.over_mlserver, GOAL_OVER_MLSERVER)}


def summarize(measurements: list[Measurement]) -> list[Summary]:
    """Median requests/s, p50 and p99 per (endpoint, model), each over that pair's repetitions, in first-seen order."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for measurement in measurements:
        groups.setdefault((measurement.endpoint, measurement.model), []).append(measurement)
    return [
        Summary(endpoint, model, len(runs), sum(m.result.clean for m in runs),
                statistics.median(m.result.requests_per_s for m in runs),
                statistics.median(m.result.p50_ms for m in runs),
                statistics.median(m.result.p99_ms for m in runs),
                statistics.median(m.cpu_us_per_request for m in runs))
        for (endpoint, model), runs in groups.items()
    ]


def ratios(summaries: list[Summary]) -> list[Ratio]:
    by_key = {(s.endpoint, s.model): s for s in summaries}
    found = []
    for summary in summaries:
        if not summary.endpoint.startswith(GATEWAY_PREFIX):
            continue
        floor = by_key.get((FLOOR_ENDPOINT, summary.model))
        mlserver = by_key.get((MLSERVER_ENDPOINT, summary.model))
        asgi_floor = by_key.get((ASGI_FLOOR_ENDPOINT, summary.model))
        found.append(Ratio(
            summary.model, summary.endpoint,
            summary.requests_per_s / floor.requests_per_s if floor else None,
            summary.requests_per_s / mlserver.requests_per_s if mlserver else None,
            floor.cpu_us_per_request / summary.cpu_us_per_request if floor else None,
            mlserver.cpu_us_per_request / summary.cpu_us_per_request if mlserver else None,
            summary.requests_per_s / asgi_floor.requests_per_s if asgi_floor else None,
            {name: {"rate": summary.requests_per_s / peer.requests_per_s,
                    "cpu": peer.cpu_us_per_request / summary.cpu_us_per_request}
             for name, endpoint in PEER_ENDPOINTS.items() if (peer := by_key.get((endpoint, summary.model)))},
        ))
    return found


def print_report(summaries: list[Summary], found_ratios: list[Ratio]) -> None:
    rows = [
        (s.model, s.endpoint, f"{s.requests_per_s:,.0f}", f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}",
         f"{s.cpu_us_per_request:,.0f}", _runs(s))
        for s in sorted(summaries, key=lambda s: s.model)
    ]
    print_table(["model", "endpoint", "req/s", "p50 ms", "p99 ms", "server CPU us/req", "runs"], rows)
    if found_ratios:
        print()
        headers = ["model", "endpoint", f"gateway/floor req/s (goal >= {GOAL_OF_FLOOR:.0%})", "by CPU/req",
                   f"gateway/MLServer req/s (goal >= {GOAL_OVER_MLSERVER:g}x)", "by CPU/req",
                   "gateway/ASGI floor req/s"]
        print_table(
            headers,
            [(r.model, r.endpoint, _percent(r.of_floor, GOAL_OF_FLOOR), _percent(r.of_floor_cpu, GOAL_OF_FLOOR),
              _times(r.over_mlserver, GOAL_OVER_MLSERVER), _times(r.over_mlserver_cpu, GOAL_OVER_MLSERVER),
              "n/a" if r.of_asgi_floor is None else f"{r.of_asgi_floor:.0%}")
             for r in sorted(found_ratios, key=lambda r: r.model)],
        )
    peer_rows = [(r.model, r.endpoint, name, f"{over['rate']:.1f}x", f"{over['cpu']:.1f}x")
                 for r in sorted(found_ratios, key=lambda r: r.model) for name, over in r.over_peers.items()]
    if peer_rows:
        print()
        print_table(["model", "endpoint", "peer", "gateway/peer req/s", "by CPU/req"], peer_rows)


def _runs(summary: Summary) -> str:
    errors = summary.runs - summary.clean_runs
    return f"{summary.runs}" if not errors else f"{summary.runs} ({errors} with errors)"


def _meets(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _percent(value: float | None, goal: float) -> str:
    return "n/a" if value is None else f"{value:.0%} {'ok' if value >= goal else 'BELOW'}"


def _times(value: float | None, goal: float) -> str:
    return "n/a" if value is None else f"{value:.1f}x {'ok' if value >= goal else 'BELOW'}"
