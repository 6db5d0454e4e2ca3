"""The HTTP edge's limits, against `onnxgate serve` itself (a subprocess on a loopback port, settings from ONNXGATE_*
variables): header size and count, header and body read timeouts, the connection cap, and big text requests decoded
off the event loop. Raw sockets send what no well-behaved client would."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelstore.layout import Store
from tests.factories import (
    deploy_version,
    free_port,
    make_store,
    publish_classifier,
    publish_text_classifier,
    stop_server,
    wait_ready,
)

DEADLINE_S = 90
ROW = [[5.1, 3.5, 1.4, 0.2]]
SHORT_TIMEOUT_S = 2  # header and body read timeouts of the `edge` server


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE_S)
        return sock


@contextlib.contextmanager
def onnxgate_serve(store: Store, log: Path, **settings: object) -> Iterator[Served]:
    """`onnxgate serve --env production` with ONNXGATE_<NAME> variables for `settings`, until the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env.update({f"ONNXGATE_{name.upper()}": str(value) for name, value in settings.items()})
    with log.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port",
                                    str(port), "--store", str(store.root)], env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    served = Served(process, port, log)
    try:
        wait_ready(served.url, process, timeout_s=DEADLINE_S)
        yield served
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = make_store(tmp_path_factory.mktemp("edge") / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_text_classifier(store, "sentiment")
    deploy_version(store, "iris", "v1.0.0", "production")
    deploy_version(store, "sentiment", "v1.0.0", "production")
    return store


@pytest.fixture(scope="module")
def edge(edge_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with short read timeouts (so that the tests see them fire) and default size limits."""
    with onnxgate_serve(edge_store, tmp_path_factory.mktemp("edge-log") / "serve.log",
                        header_timeout_s=SHORT_TIMEOUT_S, body_timeout_s=SHORT_TIMEOUT_S,
                        keep_alive_timeout_s=1) as served:
        yield served


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer counts as closed)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


def assert_serving(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=DEADLINE_S) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 200


# -- header size and count -----------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_50_mb_header_line_is_refused_early_and_memory_does_not_grow(edge: Served):
    assert_serving(edge)
    before = edge.rss_bytes()
    total = 50 * 1024 * 1024
    chunk = b"a" * (1024 * 1024)
    sent = 0
    with edge.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Big: ")
        try:
            while sent < total:
                sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert sent < total, "the server read the whole 50 MB header"
    if answer:  # the 431 is readable unless the close reset the connection first
        status, error = status_and_error(answer)
        assert status == 431 and "65536 bytes" in error
    grown = edge.rss_bytes() - before
    assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"
    assert_serving(edge)


@pytest.mark.e2e
@pytest.mark.parametrize("count", [101, 20_000])
def test_too_many_header_fields_are_refused(edge: Served, count: int):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    with edge.connect() as sock:
        # a first request answered on the same (keep-alive) connection: the refusal still gets its answer
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: edge\r\n\r\n")
        first = b""
        while not first.endswith(b'{"live":true}'):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {first!r}"
            first += chunk
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: edge\r\n" + headers + b"\r\n")
        answer = read_until_closed(sock)
    if count == 101:  # 101 short fields are well under the byte limit: refused for their number, and readable
        status, error = status_and_error(answer)
        assert status == 431 and "more than 100 request header fields" in error
    else:  # 20,000 (~200 KB) pass the byte limit first; the answer may be lost to the reset of the unread rest
        assert answer == b"" or status_and_error(answer)[0] == 431
    assert_serving(edge)


# -- read timeouts ---------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_slow_clients_block_nobody_and_are_closed_after_the_header_timeout(edge: Served):
    half_sent = [edge.connect() for _ in range(50)]
    idle = [edge.connect() for _ in range(5)]
    try:
        for sock in half_sent:
            sock.sendall(b"POST /predict/iris HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nX-Slow: ")
        # the 55 stalled connections take nothing from a client that sends whole requests
        with httpx.Client(base_url=edge.url, timeout=DEADLINE_S) as client:
            assert client.post("/predict/iris", json={"inputs": ROW}).json()["version"] == "v1.0.0"
            assert client.get("/health").status_code == 200
        # and the server closes each of them once the header timeout has passed, with a 408 it can still read
        for sock in half_sent + idle:
            status, error = status_and_error(read_until_closed(sock))
            assert status == 408 and f"request headers not received within {SHORT_TIMEOUT_S} s" in error
    finally:
        for sock in half_sent + idle:
            sock.close()
    assert_serving(edge)


@pytest.mark.e2e
def test_a_stalled_body_is_timed_out_and_an_idle_keep_alive_connection_closed(edge: Served):
    with edge.connect() as sock:
        sock.sendall(b"POST /predict/iris HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [[5.1,")
        status, error = status_and_error(read_until_closed(sock))
    assert status == 408 and f"request body not received within {SHORT_TIMEOUT_S} s" in error
    # a complete request answered, then nothing: the keep-alive timeout (1 s here) closes the connection
    with edge.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1


# -- the connection cap ----------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_connections_beyond_the_cap_get_a_json_503(edge_store: Store, tmp_path: Path):
    cap = 5
    with onnxgate_serve(edge_store, tmp_path / "serve.log", max_connections=cap, header_timeout_s=DEADLINE_S) as served:
        held = [served.connect() for _ in range(cap)]
        try:
            deadline = time.monotonic() + DEADLINE_S
            while True:  # until the server has accepted all the held connections: then a new one is over the cap
                with httpx.Client(base_url=served.url, timeout=DEADLINE_S) as client:
                    response = client.get("/health")
                if response.status_code == 503:
                    break
                assert response.status_code == 200 and time.monotonic() < deadline, "the cap was never reached"
                time.sleep(0.05)
            assert response.headers["content-type"] == "application/json"
            assert f"over {cap} open connections" in response.json()["error"]
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + DEADLINE_S
        while httpx.get(served.url + "/health", timeout=DEADLINE_S).status_code != 200:  # room again once they close
            assert time.monotonic() < deadline, "still refused after the held connections closed"
            time.sleep(0.05)


# -- decoding off the event loop -------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_big_text_request_does_not_stall_other_requests(edge: Served):
    """While ~1 MB of text is tokenized (seconds of CPU here; 8 MB took 3.4 s on the event loop before), /health keeps
    answering: several health answers arrive before the big request's answer. Order of events, not timings."""
    texts = ["good bad great " * 17_000] * 4  # ~1 MB of words; truncated to 8 tokens each
    body = json.dumps({"text": texts}).encode()
    events: list[str] = []
    with edge.connect() as sock:
        sock.sendall(b"POST /predict/sentiment HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        big: list[bytes] = []

        def read_big() -> None:
            big.append(read_until_closed(sock))
            events.append("big")

        reader = threading.Thread(target=read_big, daemon=True)
        reader.start()
        with httpx.Client(base_url=edge.url, timeout=DEADLINE_S) as client:
            deadline = time.monotonic() + DEADLINE_S
            while reader.is_alive():
                assert client.get("/health").status_code == 200
                events.append("health")
                assert time.monotonic() < deadline, "the big request got no answer"
        reader.join(DEADLINE_S)
    head, _, payload = big[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), big[0][:300]
    assert len(json.loads(payload)["outputs"]["label"]) == 4
    answered_first = events.index("big")
    assert answered_first >= 5, f"only {answered_first} health answers came before the big request's: {events[:20]}"
