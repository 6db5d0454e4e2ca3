"""What a canary failing every request costs clients, and how fast it is out: the issue's measurement, reproduced.

A real `onnxgate serve` (one worker, default SLO, rollout tick 1 s) serves a tabular classifier; client threads send
single-row /predict requests as fast as they can, each with a routing key of its own (many users behind a proxy);
then a canary that fails every request (onnxruntime FAIL at run time) starts at 30%. Printed: the canary's requests
before it was withheld, the seconds from its first answer to the withhold and to the recorded rollback, the client
errors, and the total requests (during the canary, and overall).

Before the early test and the retry on stable, the issue measured: rolled back 20 s after the canary's first answer,
7,994 of 30,719 requests (26%) answered with errors.

Run (repo root): .venv/bin/python -m bench.failing_canary [--weight 30 --threads 4 --after-s 2]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelstore.deployments import Change
from modelstore.rollout import start_canary
from tests.factories import deploy_version, make_store, poison, publish_classifier
from tests.rollout.gateway_fixtures import serve_store

ROW = [5.1, 3.5, 1.4, 0.2]
DEADLINE_S = 120.0


@dataclass(frozen=True)
class Reply:
    started: float
    finished: float
    status: int
    retried_from: str | None


def client(url: str, keys: itertools.count, replies: list[Reply], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = http.post("/predict/iris", json={"inputs": [ROW]},
                                     headers={"X-Routing-Key": f"user-{next(keys)}"})
                status, retried = response.status_code, response.json().get("retried_from")
            except httpx.HTTPError:
                status, retried = 0, None
            replies.append(Reply(started, time.monotonic(), status, retried))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--after-s", type=float, default=2.0, help="load kept after the rollback is recorded")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxgate-failing-canary-") as tmp:
        store = make_store(Path(tmp) / "store")
        publish_classifier(store, "iris", "v1.0.0", seed=1)
        publish_classifier(store, "iris", "v1.1.0", seed=2, noise=poison(-1e30))  # every row is "poisoned"
        deploy_version(store, "iris", "v1.0.0")
        replies: list[Reply] = []
        stop, keys = threading.Event(), itertools.count()
        with serve_store(store, tick_s=1.0) as url:
            threads = [threading.Thread(target=client, args=(url, keys, replies, stop), daemon=True)
                       for _ in range(args.threads)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            started_at = time.monotonic()
            start_canary(store, "iris", "v1.1.0", "production", args.weight, change=Change(actor="bench"))
            deadline = time.monotonic() + DEADLINE_S
            while store.registry.read().state.deployment("iris", "production").canary is not None:
                if time.monotonic() > deadline:
                    print("the canary was not rolled back in time", file=sys.stderr)
                    return 1
                time.sleep(0.01)
            recorded_at = time.monotonic()
            time.sleep(args.after_s)
            stop.set()
            for thread in threads:
                thread.join(30)
        record = store.registry.read().state.deployment("iris", "production").last_rollback
    canary = [r for r in replies if r.retried_from == "v1.1.0"]
    errors = [r for r in replies if r.status != 200]
    during = [r for r in replies if started_at <= r.started <= recorded_at]
    if not canary:
        print("the canary never answered", file=sys.stderr)
        return 1
    first, last = canary[0], max(canary, key=lambda r: r.finished)
    figures = record.get("figures", {})
    print(f"canary at {args.weight:g}%, single-row requests, default SLO, {args.threads} client threads")
    print(f"canary requests before withhold:          {len(canary)}")
    print(f"seconds, first canary answer -> withhold: {last.finished - first.started:.3f}")
    print(f"seconds, first canary answer -> recorded: {recorded_at - first.started:.3f}")
    print(f"client errors:                            {len(errors)}")
    print(f"requests from canary start to record:     {len(during)}")
    print(f"total requests:                           {len(replies)}")
    print(f"rollback: causes {record.get('causes')}, decided {figures.get('decided')}, "
          f"statistic {figures.get('sequential_statistic')} >= {figures.get('sequential_threshold')}, "
          f"{figures.get('candidate_errors')} failures in {figures.get('candidate_requests')} canary requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
