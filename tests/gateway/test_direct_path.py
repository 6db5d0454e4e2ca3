"""The HTTP protocol's direct path (gateway/direct_http.py): data-plane requests answered without uvicorn's ASGI cycle,
against `onnxgate serve` itself over raw sockets. What a client must not be able to tell: answers in request order on
a pipelined connection (also when one request waits on a thread and is handed to a cycle), Connection: close and
HTTP/1.0, idle keep-alive connections closed, body read deadlines and size limits, and the requests the direct path
leaves to uvicorn (chunked bodies, X-Forwarded-For, other methods) answered as before."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from modelstore.layout import Store
from tests.factories import deploy_version, make_store, publish_classifier, publish_text_classifier
from tests.gateway.test_limits import DEADLINE_S, ROW, Served, onnxgate_serve, read_until_closed, status_and_error

BODY_TIMEOUT_S = 2
MAX_BODY_BYTES = 20_000  # below the direct path's own bound (64 KiB): the body limit is checked there too


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store: Store = make_store(tmp_path_factory.mktemp("direct") / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_text_classifier(store, "sentiment")
    deploy_version(store, "iris", "v1.0.0", "production")
    deploy_version(store, "sentiment", "v1.0.0", "production")
    with onnxgate_serve(store, tmp_path_factory.mktemp("direct-log") / "serve.log", body_timeout_s=BODY_TIMEOUT_S,
                        keep_alive_timeout_s=1, max_body_bytes=MAX_BODY_BYTES,
                        inline_decode_max_bytes=1024) as server:
        yield server


def post(path: str, body: bytes, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return (b"POST " + path.encode() + b" " + version + b"\r\nHost: direct\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class AnswerReader:
    """Answers read in order off one keep-alive connection, framed by their Content-Length. Bytes of a later answer
    that arrive with an earlier one are kept for it (a loaded server may send two answers in one segment)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def receive(self, where: str) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed {where}"
        self.buffer += chunk

    def raw(self) -> tuple[bytes, bytes]:
        """The next answer's head and body."""
        while b"\r\n\r\n" not in self.buffer:
            self.receive("before an answer's head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(header(head, b"content-length"))
        while len(self.buffer) < length:
            self.receive("inside an answer")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    def json(self, count: int) -> list[tuple[bytes, dict]]:
        """The next `count` answers, their bodies parsed."""
        return [(head, json.loads(body)) for head, body in (self.raw() for _ in range(count))]


def read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, dict]]:
    """`count` JSON answers (head, parsed body) off a connection nothing else is read from."""
    return AnswerReader(sock).json(count)


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


IRIS = json.dumps({"inputs": ROW}).encode()


@pytest.mark.e2e
def test_pipelined_answers_keep_their_order_when_one_waits_on_a_thread(served: Served):
    """Three requests in one write: the middle one's text body is over the inline decode limit, so it is decoded on
    a thread (the direct path hands it to a cycle), and the third, answerable at once, must still come last."""
    text = json.dumps({"text": ["good bad great " * 100]}).encode()
    assert 1024 < len(text) < MAX_BODY_BYTES
    with served.connect() as sock:
        sock.sendall(post("/predict/iris", IRIS, b"X-Request-Id: first")
                     + post("/predict/sentiment", text, b"X-Request-Id: second")
                     + post("/predict/iris", IRIS, b"X-Request-Id: third"))
        answers = read_answers(sock, 3)
        assert [header(head, b"x-request-id") for head, _ in answers] == [b"first", b"second", b"third"]
        assert [body["id"] for _, body in answers] == ["first", "second", "third"]
        assert all(head.startswith(b"HTTP/1.1 200") for head, _ in answers), [head for head, _ in answers]
        assert answers[1][1]["model"] == "sentiment" and answers[0][1]["model"] == answers[2][1]["model"] == "iris"
        # the connection is still usable after the handed-over request
        sock.sendall(post("/predict/iris", IRIS))
        [(head, body)] = read_answers(sock, 1)
        assert head.startswith(b"HTTP/1.1 200") and header(head, b"x-model-version") == b"v1.0.0"


@pytest.mark.e2e
def test_many_pipelined_direct_answers_arrive_whole_and_in_order(served: Served):
    with served.connect() as sock:
        sock.sendall(b"".join(post("/predict/iris", IRIS, b"X-Request-Id: r%d" % index) for index in range(50)))
        answers = read_answers(sock, 50)
    assert [body["id"] for _, body in answers] == [f"r{index}" for index in range(50)]
    head = answers[0][0]
    assert header(head, b"content-type") == b"application/json" and header(head, b"date") is not None
    assert header(head, b"server") is not None


@pytest.mark.e2e
def test_connection_close_and_http_1_0_are_answered_then_closed(served: Served):
    for request in (post("/predict/iris", IRIS, b"Connection: close"), post("/predict/iris", IRIS, version=b"HTTP/1.0")):
        with served.connect() as sock:
            sock.sendall(request)
            answer = read_until_closed(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"200", answer[:300]
        assert header(head, b"connection") == b"close"
        assert json.loads(body)["model"] == "iris"


@pytest.mark.e2e
def test_an_idle_keep_alive_connection_is_closed(served: Served):
    with served.connect() as sock:
        sock.sendall(post("/predict/iris", IRIS))
        assert read_answers(sock, 1)[0][0].startswith(b"HTTP/1.1 200")
        assert read_until_closed(sock) == b""  # closed by the server (keep-alive timeout 1 s), nothing sent


@pytest.mark.e2e
def test_a_body_that_stops_arriving_gets_408(served: Served):
    with served.connect() as sock:
        request = post("/predict/iris", IRIS)
        sock.sendall(request[:-5])  # the body's last bytes never come
        status, error = status_and_error(read_until_closed(sock))
    assert status == 408 and "request body" in error


@pytest.mark.e2e
def test_a_body_over_the_limit_gets_413_and_the_server_keeps_serving(served: Served):
    body = json.dumps({"inputs": [[0.5] * 4] * 2_000}).encode()
    assert MAX_BODY_BYTES < len(body) < 64 * 1024
    with served.connect() as sock:
        sock.sendall(post("/predict/iris", body) + post("/predict/iris", IRIS))
        (first_head, first), (second_head, second) = read_answers(sock, 2)
    assert first_head.split(b" ", 2)[1] == b"413" and "over the limit" in first["error"]
    assert second_head.startswith(b"HTTP/1.1 200") and second["model"] == "iris"


@pytest.mark.e2e
def test_errors_on_the_direct_path_are_json_with_their_status(served: Served):
    with served.connect() as sock:
        sock.sendall(post("/predict/iris", b"{not json") + post("/predict/nope", IRIS)
                     + post("/predict/iris", IRIS, b"X-Request-Id: has space"))
        answers = read_answers(sock, 3)
    assert [head.split(b" ", 2)[1] for head, _ in answers] == [b"400", b"404", b"400"]
    assert all("error" in body for _, body in answers)


@pytest.mark.e2e
def test_each_url_leads_to_its_own_model_however_often_it_comes(served: Served):
    """The direct path keeps each URL it has parsed: the same URLs again, percent-encoded paths, query strings and
    unknown models must still lead where uvicorn's parsing would, on one connection, in any order."""
    text = json.dumps({"text": ["good"]}).encode()
    requests = [("/predict/iris", IRIS, "iris"), ("/predict/sentiment", text, "sentiment"),
                ("/predict/ir%69s", IRIS, "iris"), ("/predict/iris?explain=no", IRIS, "iris"),
                ("/predict/nope", IRIS, None), ("/predict/sentiment", text, "sentiment"), ("/predict/iris", IRIS, "iris")]
    with served.connect() as sock:
        for _ in range(2):  # the second round finds every URL already parsed
            sock.sendall(b"".join(post(path, body) for path, body, _ in requests))
            answers = read_answers(sock, len(requests))
            assert [body.get("model") for _, body in answers] == [model for _, _, model in requests]
            assert [head.split(b" ", 2)[1] for head, _ in answers] == [b"200"] * 4 + [b"404"] + [b"200"] * 2


@pytest.mark.e2e
def test_requests_left_to_uvicorn_are_answered_as_before(served: Served):
    with httpx.Client(base_url=served.url, timeout=DEADLINE_S) as client:
        chunked = client.post("/predict/iris", content=iter([IRIS[:10], IRIS[10:]]),
                              headers={"Content-Type": "application/json"})
        forwarded = client.post("/predict/iris", content=IRIS, headers={"Content-Type": "application/json",
                                                                         "X-Forwarded-For": "10.1.2.3"})
        wrong_method = client.get("/predict/iris")
    assert chunked.status_code == 200 and chunked.json()["model"] == "iris"
    assert forwarded.status_code == 200 and forwarded.headers["x-model-version"] == "v1.0.0"
    assert wrong_method.status_code == 405


@pytest.mark.e2e
def test_v2_infer_json_and_binary_answers_on_the_direct_path(served: Served):
    infer = json.dumps({"id": "v2-json", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                                     "data": ROW[0]}]}).encode()
    binary = json.dumps({"id": "v2-binary", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                                       "data": ROW[0]}],
                         "parameters": {"binary_data_output": True}}).encode()
    with served.connect() as sock:
        sock.sendall(post("/v2/models/iris/infer", infer) + post("/v2/models/iris/versions/v1.0.0/infer", binary))
        answers = AnswerReader(sock)
        [(head, body)] = answers.json(1)
        assert head.startswith(b"HTTP/1.1 200") and body["id"] == "v2-json" and body["model_version"] == "v1.0.0"
        head, content = answers.raw()
    json_length = int(header(head, b"inference-header-content-length"))
    assert header(head, b"content-type") == b"application/octet-stream"
    answer = json.loads(content[:json_length])
    assert answer["id"] == "v2-binary"
    assert sum(output["parameters"]["binary_data_size"] for output in answer["outputs"]) == len(content) - json_length


@pytest.mark.e2e
def test_the_server_keeps_answering_after_a_client_leaves_mid_body(served: Served):
    for _ in range(3):
        with served.connect() as sock:
            sock.sendall(post("/predict/iris", IRIS)[:-10])
        time.sleep(0.05)
    with httpx.Client(base_url=served.url, timeout=DEADLINE_S) as client:
        assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 200
