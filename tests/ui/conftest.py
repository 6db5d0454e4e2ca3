"""Dashboard fixtures: the ops API's gateway (tests/admin/conftest.py) with a judge that reads one-second windows, so
that its charts fill within seconds, and a thread that sends it traffic."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from modelstore.slo import SloPolicy
from tests.admin.conftest import DEADLINE_S, OpsGateway, ops_gateway

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


@contextlib.contextmanager
def ui_gateway(root: Path, **overrides: object) -> Iterator[OpsGateway]:
    overrides = {"slo": SloPolicy(window_s=1.0, min_requests=5), "rollout_tick_s": 0.2, **overrides}
    with ops_gateway(root, **overrides) as gateway:
        yield gateway


@contextlib.contextmanager
def traffic(url: str, environment: str = "production") -> Iterator[None]:
    """Predictions sent one after another until the block ends."""
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
            while not stop.is_set():
                client.post("/predict/iris", json=ROW, headers={"X-Environment": environment})
                stop.wait(0.01)

    thread = threading.Thread(target=send, name="ui-traffic", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(DEADLINE_S)
