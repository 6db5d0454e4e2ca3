"""Data-plane requests answered by the HTTP protocol itself (gateway/server.py), without uvicorn's ASGI cycle.

Measured over HTTP (bench/README.md), uvicorn's per-request ASGI machinery (the cycle and its event, a task, the
receive and send messages, a regex check of every response header) is about half of what the plain ASGI floor spends
on a small model's request. So for a POST the data plane takes, with a small body of declared length, the protocol
keeps the body itself and, once it is complete, starts the same endpoint coroutine eagerly (gateway/eager.py) with a
the answer written straight to the transport. An endpoint that has to wait (a run on a thread, a batch, a
version loaded on demand) is handed at that point to a task and to a uvicorn cycle made for it, so pipelined requests
queue behind it and its answer goes out through uvicorn as usual.

The answer's headers are the data plane's own (content type and length, and X-Request-Id and X-Model-Version, which
are checked where they are made), so they are written without uvicorn's per-header checks.
"""
from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, NamedTuple

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from gateway.data_plane import DataPlane, DataPlaneEndpoint, DataPlaneHeaders, Response

if TYPE_CHECKING:
    from gateway.server import GatewayProtocol

DATA_PLANE_STATE = "onnxgate.data_plane"
"""The key under which the application's lifespan state offers its DataPlane to the protocol."""

MAX_DIRECT_BODY_BYTES = 64 * 1024
"""Larger bodies take uvicorn's path, with its flow control: their decoding outweighs what the direct path saves."""


MAX_DIRECT_TARGETS = 1024
"""URLs kept parsed per data plane; a client sending ever new URLs empties the table rather than growing it."""


def data_plane_of(app_state: dict) -> DataPlane | None:
    plane = app_state.get(DATA_PLANE_STATE)
    return plane if isinstance(plane, DataPlane) else None


class DirectTarget(NamedTuple):
    """Where a request URL leads: the scope's path (the root path included) and query string, the endpoint and its
    path parameters (read only: shared by every request of the URL)."""

    path: str
    query_string: bytes
    endpoint: DataPlaneEndpoint
    path_params: dict[str, str]


def direct_target(plane: DataPlane, url: bytes, root_path: str) -> DirectTarget | None:
    """The data-plane endpoint a POST to `url` goes to, None for none; parsed as uvicorn parses it, once per URL
    (kept in `plane.direct_targets`): clients send the same few URLs, and parsing one cost ~4% CPU per request over
    HTTP on the benchmark's logistic regression (bench/README.md)."""
    targets = plane.direct_targets
    target = targets.get(url)
    if target is not None:
        return target  # type: ignore[return-value]
    parsed = httptools.parse_url(url)
    path = parsed.path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    routed = plane.route(path)
    if routed is None:
        return None
    if len(targets) >= MAX_DIRECT_TARGETS:
        targets.clear()
    target = targets[url] = DirectTarget(root_path + path, parsed.query or b"", *routed)
    return target


_default_header_bytes: tuple[object, bytes] = (None, b"")


def default_header_bytes(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (server, date) as bytes, kept until the server replaces the list (once a second)."""
    global _default_header_bytes
    cached_for, encoded = _default_header_bytes
    if cached_for is not default_headers:
        encoded = b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in default_headers)
        _default_header_bytes = (default_headers, encoded)
    return encoded


class DirectExchange:
    """One request the protocol answers itself: its scope, endpoint, headers and body as it arrives."""

    __slots__ = ("protocol", "scope", "endpoint", "headers", "body", "keep_alive", "cycle", "answered")

    def __init__(self, protocol: GatewayProtocol, scope: dict, endpoint: DataPlaneEndpoint, headers: DataPlaneHeaders,
                 keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.endpoint = endpoint
        self.headers = headers
        self.body: list[bytes] = []
        self.keep_alive = keep_alive
        self.cycle: RequestResponseCycle | None = None  # made when the endpoint has to wait before answering
        self.answered = False

    async def run(self) -> None:
        """Answer, then run the shadow version if there is one."""
        body = self.body
        response = await self.endpoint.respond_direct(self.scope, self.headers,
                                                      body[0] if len(body) == 1 else b"".join(body))
        cycle = self.cycle
        if cycle is None:
            self.answered = True
            self.protocol.write_answer(self.response_bytes(response), self.keep_alive)
        else:
            await cycle.send({"type": "http.response.start", "status": response.status,
                              "headers": response.asgi_headers()})
            await cycle.send({"type": "http.response.body", "body": response.body})
        if response.mirror is not None:
            await response.mirror()

    def response_bytes(self, response: Response) -> bytes:
        return b"".join((STATUS_LINE[response.status], default_header_bytes(self.protocol.server_state.default_headers),
                         response.head, b"" if self.keep_alive else b"connection: close\r\n", b"\r\n", response.body))

    def hand_to_cycle(self) -> RequestResponseCycle:
        """The endpoint has to wait before answering: from now on a uvicorn cycle carries the request, as if uvicorn
        had started it (pipelined requests queue behind it; a disconnect, shutdown or slow reader is handled there)."""
        protocol = self.protocol
        cycle = RequestResponseCycle(
            scope=self.scope, transport=protocol.transport, flow=protocol.flow, logger=protocol.logger,
            access_logger=protocol.access_logger, access_log=protocol.access_log,
            default_headers=protocol.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=False, keep_alive=self.keep_alive, on_response=protocol.on_response_complete)
        cycle.more_body = False
        self.cycle = cycle
        return cycle
