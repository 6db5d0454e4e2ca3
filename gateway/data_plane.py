"""The data plane's HTTP side: `POST /predict/{model}` and the v2 infer routes as plain ASGI callables, and the match
that lets the application send those requests straight to them.

Measured over HTTP (bench/README.md), Starlette's per-request machinery (its error and exception middleware, the
router's regex walk, a Request and a Response per call) costs a small model's request about a third of its CPU: the
benchmark's floor takes 127-135 µs a request as a Starlette endpoint, 93-94 µs as a plain ASGI app. The data plane
therefore skips it: `match` recognises the two POST shapes from the path alone, and the
endpoint reads the body, answers, and maps errors through `gateway.errors` itself. Every other request (and any
method or path the match does not take) goes through Starlette's router as usual, where the same endpoints are also
mounted, so `GET /predict/x` still gets Starlette's 405.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway.errors import InvalidInput, PayloadTooLarge, error_answer
from gateway.request_ids import checked_request_id
from gateway.service import Answer

PREDICT_PREFIX = "/predict/"
V2_MODELS_PREFIX = "/v2/models/"


class DataPlaneHeaders(NamedTuple):
    environment: str | None
    routing_key: str | None
    content_length: bytes | None
    source: str | None = None
    """Who sent the request, for judging a rollout per source: the routing key when there is one, else the client's
    address (None when the server does not say)."""
    content_type: bytes | None = None
    inference_header_length: bytes | None = None
    """Inference-Header-Content-Length: the body is a binary tensor data request (gateway.v2_binary); None: JSON."""
    request_id: str | None = None
    """The caller's X-Request-Id, checked (gateway.request_ids); None when it sent none."""
    chunked_or_forwarded: bool = False
    """Transfer-Encoding or X-Forwarded-For was sent: a body framed in chunks, or a client a proxy names (for uvicorn's
    proxy headers to apply). The HTTP protocol's direct path leaves such requests to uvicorn."""


class RoutingHeader(NamedTuple):
    """The one header trusted for the routing key: named by the operator (its proxy or auth layer sets it), already
    lowercased; None trusts no header, and the split is then random. A client's own X-Routing-Key is just another
    header unless the operator named it."""

    name: bytes | None = None
    max_bytes: int = 256


READ_HEADERS = frozenset((b"content-length", b"content-type", b"x-environment", b"inference-header-content-length",
                          b"x-request-id", b"transfer-encoding", b"x-forwarded-for"))


def data_plane_headers(scope: Scope, routing: RoutingHeader = RoutingHeader()) -> DataPlaneHeaders:
    """X-Environment, the trusted routing header, Content-Length, Content-Type, Inference-Header-Content-Length,
    X-Request-Id, and whether Transfer-Encoding or X-Forwarded-For came, in one pass over the raw headers (ASGI
    lowercases names; any other header costs one set lookup). A routing key sent twice (a proxy that appended its
    value to the client's) or longer than the limit is refused (400), as are a second Inference-Header-Content-Length
    or X-Request-Id and an invalid X-Request-Id; an empty routing key counts as absent."""
    environment = routing_key = length = content_type = inference_header = request_id = None
    chunked_or_forwarded = False
    trusted = routing.name
    for key, value in scope["headers"]:
        if key == trusted:
            if routing_key is not None:
                raise InvalidInput(f"header {trusted.decode()} was sent more than once")
            if len(value) > routing.max_bytes:
                raise InvalidInput(f"header {trusted.decode()} is {len(value)} bytes, over the limit of "
                                   f"{routing.max_bytes}")
            routing_key = value.decode("latin-1")
        elif key not in READ_HEADERS:
            continue
        elif key == b"content-length":
            length = value
        elif key == b"content-type":
            content_type = value
        elif key == b"x-environment":
            environment = value.decode("latin-1")
        elif key == b"inference-header-content-length":
            if inference_header is not None:  # two framings of one body: neither can be trusted
                raise InvalidInput("header Inference-Header-Content-Length was sent more than once")
            inference_header = value
        elif key == b"x-request-id":
            if request_id is not None:
                raise InvalidInput("header X-Request-Id was sent more than once")
            request_id = checked_request_id(value.decode("latin-1"), "header X-Request-Id")
        else:  # transfer-encoding or x-forwarded-for
            chunked_or_forwarded = True
    # made by tuple.__new__ (every field given): a NamedTuple's own constructor is a Python function, ~0.1 µs more
    if routing_key:
        return tuple.__new__(DataPlaneHeaders, (environment, routing_key, length, routing_key, content_type,
                                                inference_header, request_id, chunked_or_forwarded))
    client = scope.get("client")
    return tuple.__new__(DataPlaneHeaders, (environment, None, length, client[0] if client else None, content_type,
                                            inference_header, request_id, chunked_or_forwarded))


async def read_body(receive: Receive, declared_length: bytes | None, limit: int) -> bytes:
    """The whole body straight from `receive`, refused (413) over `limit` bytes: at once from Content-Length, else by
    counting what arrives (chunked bodies)."""
    if declared_length is not None and (not declared_length.isdigit() or int(declared_length) > limit):
        raise PayloadTooLarge(f"request body of {declared_length.decode('latin-1')} bytes is over the limit of "
                              f"{limit} bytes")
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_VERSION_LINES: dict[str, bytes] = {}


class Response(NamedTuple):
    """A data-plane answer, for any HTTP path to write: its header fields as HTTP/1.1 lines (`name: value\r\n` each),
    which the direct path writes as they are; `mirror`: the shadow run, for after it is sent. Every value in them is
    checked where it is made (request ids, version names) or is the gateway's own."""

    status: int
    head: bytes
    body: bytes
    mirror: Callable[[], Awaitable[None]] | None = None

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        return [tuple(line.split(b": ", 1)) for line in self.head.split(b"\r\n")[:-1]]  # type: ignore[misc]


def json_response(status: int, body: bytes, version: str | None = None, request_id: str | None = None,
                  mirror: Callable[[], Awaitable[None]] | None = None) -> Response:
    """A JSON answer; X-Request-Id, and X-Model-Version when a version answered (its line cached)."""
    version_line = b""
    if version is not None:
        version_line = _VERSION_LINES.get(version)
        if version_line is None:
            version_line = _VERSION_LINES[version] = b"x-model-version: %s\r\n" % version.encode("latin-1")
    id_line = b"" if request_id is None else b"x-request-id: %s\r\n" % request_id.encode("latin-1")
    return tuple.__new__(Response, (status, b"content-type: application/json\r\ncontent-length: %d\r\n%s%s"
                                    % (len(body), id_line, version_line), body, mirror))  # see data_plane_headers


class BinaryBody(NamedTuple):
    """An answer in the binary tensor data form: a JSON header, then the raw tensors it announces, in its order."""

    header: bytes
    tensors: list[bytes]


def binary_response(body: BinaryBody, answer: Answer) -> Response:
    """A binary tensor data answer, framed as Triton frames it: Content-Type application/octet-stream, and
    Inference-Header-Content-Length giving where the JSON header ends."""
    content = b"".join((body.header, *body.tensors))
    head = (b"content-type: application/octet-stream\r\ncontent-length: %d\r\ninference-header-content-length: %d\r\n"
            % (len(content), len(body.header)))
    if answer.request_id is not None:
        head += b"x-request-id: %s\r\n" % answer.request_id.encode("latin-1")
    head += b"x-model-version: %s\r\n" % answer.version.encode("latin-1")
    return Response(200, head, content, answer.mirror)


def answer_response(payload: dict | BinaryBody, answer: Answer) -> Response:
    if type(payload) is BinaryBody:
        return binary_response(payload, answer)
    return json_response(200, orjson.dumps(payload), answer.version, answer.request_id, answer.mirror)


def error_response(exc: Exception, scope: Scope) -> Response:
    status, message = error_answer(exc, scope["method"], scope["path"])
    return json_response(status, orjson.dumps({"error": message}))


AnswerFunction = Callable[[Scope, DataPlaneHeaders, bytes], Awaitable[tuple[dict | BinaryBody, Answer]]]


class DataPlaneEndpoint:
    """One data-plane route: read the body, answer, send. Errors become their JSON answer here, through the one
    mapping in gateway.errors, so the endpoint behaves the same whether `match`, Starlette's router or the HTTP
    protocol's direct path (`respond_direct`, gateway/direct_http.py) called it. After the answer is sent, the
    shadow version (if any) runs on the same request."""

    def __init__(self, answer: AnswerFunction, max_body_bytes: int, routing: RoutingHeader = RoutingHeader()) -> None:
        self.answer = answer
        self.max_body_bytes = max_body_bytes
        self.routing = routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            headers = data_plane_headers(scope, self.routing)
            body = await read_body(receive, headers.content_length, self.max_body_bytes)
            payload, answer = await self.answer(scope, headers, body)
        except ClientDisconnect:
            return
        except Exception as exc:  # noqa: BLE001 - every failure gets its JSON answer; unexpected ones are logged
            response = error_response(exc, scope)
        else:
            response = answer_response(payload, answer)
        await send({"type": "http.response.start", "status": response.status, "headers": response.asgi_headers()})
        await send({"type": "http.response.body", "body": response.body})
        if response.mirror is not None:
            await response.mirror()

    async def respond_direct(self, scope: Scope, headers: DataPlaneHeaders, body: bytes) -> Response:
        """The answer to a request whose headers the server has read (`data_plane_headers`) and whose whole body it
        has read; the server sends it, then runs its mirror."""
        try:
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(f"request body of {len(body)} bytes is over the limit of {self.max_body_bytes} "
                                      "bytes")
            payload, answer = await self.answer(scope, headers, body)
        except Exception as exc:  # noqa: BLE001 - as in __call__
            return error_response(exc, scope)
        return answer_response(payload, answer)


class DataPlane:
    """The two data-plane endpoints, and `match`: which of them (if either) takes a request, from its method and
    path alone, with the path parameters Starlette's router would have set."""

    def __init__(self, predict: DataPlaneEndpoint, v2_infer: DataPlaneEndpoint) -> None:
        self.predict = predict
        self.v2_infer = v2_infer
        # the HTTP protocol's direct path: request URLs already parsed and matched (gateway/direct_http.py)
        self.direct_targets: dict[bytes, object] = {}

    def match(self, scope: Scope) -> DataPlaneEndpoint | None:
        """`/predict/{model}`, `/v2/models/{model}/infer` or `/v2/models/{model}/versions/{version}/infer` for a
        POST (a parameter is one non-empty path segment, as in Starlette's `{name}`); None for anything else."""
        if scope["method"] != "POST":
            return None
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root):]
        routed = self.route(path)
        if routed is None:
            return None
        endpoint, scope["path_params"] = routed
        return endpoint

    def route(self, path: str) -> tuple[DataPlaneEndpoint, dict[str, str]] | None:
        """`match` for a POST, from its path within the application (the root path taken off): the endpoint and its
        path parameters."""
        if path.startswith(PREDICT_PREFIX):
            model = path[len(PREDICT_PREFIX):]
            if model and "/" not in model:
                return self.predict, {"model": model}
            return None
        if path.startswith(V2_MODELS_PREFIX):
            parts = path[len(V2_MODELS_PREFIX):].split("/")
            if len(parts) == 2 and parts[1] == "infer" and parts[0]:
                return self.v2_infer, {"model": parts[0]}
            if len(parts) == 4 and parts[1] == "versions" and parts[3] == "infer" and parts[0] and parts[2]:
                return self.v2_infer, {"model": parts[0], "version": parts[2]}
        return None
