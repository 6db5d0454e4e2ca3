"""Python bytecodes the gateway executes for one /predict request, per function: a count that does not move with the
machine's load, to see what a change to the request path removes before pricing it over HTTP (bench/paired.py).

A real `onnxgate serve` stack (the gateway's app and its HTTP protocol, gateway/server.py) runs in this process on a
loopback port; a client thread sends the benchmark's LR request (bench/wrk/predict.lua) on one keep-alive connection,
warms up, then one request is traced with `sys.settrace` opcode events inside `GatewayProtocol.data_received`, which
on the direct path (gateway/direct_http.py) runs everything from parsing to writing the answer. Over HTTP an opcode
costs ~20 ns of CPU on the 2-core machine (caches are cold between requests), ~5x what it does in a tight loop, so
~100 opcodes are ~2 µs, ~3% of the LR request (bench/README.md). What an answer leaves to count (metrics, live drift,
the rollout windows) is counted when the answer ledger settles (gateway/answer_ledger.py): the settle of the answers
of the next requests is traced too, and reported per answer.

Run (repo root): .venv/bin/python -m bench.opcodes [--drift] [--canary 10] [--top 40] [--lines]
"""
from __future__ import annotations

import argparse
import collections
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import uvicorn

from bench.answers import lua_body
from bench.make_models import ENVIRONMENT, build_onnx_store, canary_of, watch_drift
from bench.servers import PREDICT_LUA, free_port
from gateway.answer_ledger import LEDGER_ENTRIES
from gateway.app import create_app
from gateway.server import GatewayProtocol, uvicorn_options
from gateway.settings import GatewaySettings

WARMUP_REQUESTS = 2000


class OpcodeCounter:
    def __init__(self, by_line: bool) -> None:
        self.by_line = by_line
        self.counts: collections.Counter[str] = collections.Counter()

    def trace(self, frame: FrameType, event: str, _arg: object) -> object:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            where = f"{os.path.basename(code.co_filename)}:{frame.f_lineno}" if self.by_line else \
                os.path.basename(code.co_filename)
            self.counts[f"{code.co_qualname} ({where})"] += 1
        return self.trace


def request_bytes(port: int) -> bytes:
    body = lua_body(PREDICT_LUA)
    return (b"POST /predict/lr HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request and read its whole answer (framed by Content-Length); the status line."""
    sock.sendall(request)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head.split(b"\r\n", 1)[0]


class Traced(NamedTuple):
    status: bytes
    request: collections.Counter[str]  # the traced request's opcodes, per function (or line)
    settle: collections.Counter[str]  # the ledger's settle of `settled` answers, per function (or line)
    settled: int


def count_one_request(store_root: Path, by_line: bool) -> Traced:
    """One request traced after the answer ledger was settled (so that it is an ordinary request, not one of the
    1-in-LEDGER_ENTRIES that settle), then the settle of the answers of the requests after it. The judge does not
    tick meanwhile (its tick settles the ledger too)."""
    settings = GatewaySettings(store=store_root, environments=[ENVIRONMENT], rollout_tick_s=3600)
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            **uvicorn_options(settings))
    server = uvicorn.Server(config)
    counter, settle_counter = OpcodeCounter(by_line), OpcodeCounter(by_line)
    tracing, settling = threading.Event(), threading.Event()
    settled: list[int] = []
    untraced = GatewayProtocol.data_received

    def data_received(protocol: GatewayProtocol, data: bytes) -> None:
        ledger = app.state.service.ledger
        if settling.is_set():  # on the event loop's thread, where the ledger is settled
            settled.append(len(ledger.entries))
            sys.settrace(settle_counter.trace)
            try:
                ledger.settle()
            finally:
                sys.settrace(None)
        if not tracing.is_set():
            return untraced(protocol, data)
        ledger.settle()
        sys.settrace(counter.trace)
        try:
            return untraced(protocol, data)
        finally:
            sys.settrace(None)

    result: list[bytes] = []

    def client() -> None:
        try:
            while not server.started:
                time.sleep(0.05)
            request = request_bytes(port)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for _ in range(WARMUP_REQUESTS):
                    exchange(sock, request)
                tracing.set()
                result.append(exchange(sock, request))
                tracing.clear()
                for _ in range(LEDGER_ENTRIES - 2):
                    exchange(sock, request)
                settling.set()
                exchange(sock, request)
                settling.clear()
        finally:
            server.should_exit = True

    GatewayProtocol.data_received = data_received  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        server.run()
        thread.join()
    finally:
        GatewayProtocol.data_received = untraced  # type: ignore[method-assign]
    if not result or not settled:
        raise SystemExit("the traced requests got no answer")
    return Traced(result[0], counter.counts, settle_counter.counts, settled[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drift", action="store_true", help="publish lr with reference statistics (live drift counts)")
    parser.add_argument("--canary", type=float, default=None, metavar="WEIGHT",
                        help="serve lr again as a canary at WEIGHT percent (the traced request may take either arm)")
    parser.add_argument("--top", type=int, default=40, help="functions (or lines) listed")
    parser.add_argument("--lines", action="store_true", help="count per source line, not per function")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxgate-opcodes-") as tmp:
        store_root, onnx_paths = build_onnx_store(Path(tmp))
        if args.drift:
            watch_drift(store_root, onnx_paths["lr"])
        if args.canary is not None:
            canary_of(store_root, "lr", args.canary)
        traced = count_one_request(store_root, args.lines)
    print(f"{traced.status.decode()}: {sum(traced.request.values())} opcodes in GatewayProtocol.data_received for one "
          "LR /predict")
    for where, count in traced.request.most_common(args.top):
        print(f"{count:6d}  {where}")
    settle = sum(traced.settle.values())
    print(f"the answer ledger's settle: {settle} opcodes for {traced.settled} answers, "
          f"{settle / max(traced.settled, 1):.0f} an answer")
    for where, count in traced.settle.most_common(args.top):
        print(f"{count:6d}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
