"""The HTTP server's edge: what one client may take of a worker before the application sees a request.

uvicorn's httptools protocol (the one `http="auto"` picks here) bounds nothing: httptools keeps appending to a header
value until its line ends (one 200 MiB header line held ~230 MB), takes any number of headers, and waits forever for
a request's headers or body once a connection is open. `GatewayProtocol` is that protocol with these limits, each
answered with a JSON `{"error": ...}` and `connection: close`:

- header bytes (request line included) over `max_header_bytes`, or more than `max_headers` fields: 431. Bytes are
  counted as they arrive, so at most one read (uvloop reads 256 KiB at a time) past the limit is ever buffered.
- headers not complete within `header_timeout_s` of the connection opening or the request's first byte, or a body not
  complete within `body_timeout_s` of its headers: 408 (or just a close once the response has started). One timer per
  connection checks this a few times per timeout, so a request pays for no timer of its own.
- more than `max_connections` open connections in this worker: 503 to requests arriving beyond it.

- a keep-alive connection idle for `keep_alive_timeout_s` after an answer: closed, as uvicorn's `timeout_keep_alive`
  does, but by that same per-connection check rather than a timer armed and cancelled for every request.

Data-plane requests are also answered here, without uvicorn's ASGI cycle: see gateway/direct_http.py.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway import eager
from gateway.data_plane import data_plane_headers
from gateway.direct_http import MAX_DIRECT_BODY_BYTES, DirectExchange, data_plane_of, direct_target
from gateway.errors import InvalidInput
from gateway.settings import GatewaySettings

log = logging.getLogger("onnxgate.gateway")


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    keep_alive_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> EdgeLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s,
                   settings.body_timeout_s, settings.max_connections, settings.keep_alive_timeout_s)

    @property
    def check_interval_s(self) -> float:
        """How often a connection's read deadlines are checked: a timeout fires at most this late."""
        return min(1.0, self.header_timeout_s / 4, self.body_timeout_s / 4, self.keep_alive_timeout_s / 4)


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config that put these limits on every worker (picklable, so
    `--workers N` hands them to its spawned workers)."""
    return {"http": functools.partial(GatewayProtocol, limits=EdgeLimits.from_settings(settings)),
            "timeout_keep_alive": settings.keep_alive_timeout_s,
            "timeout_worker_healthcheck": settings.worker_healthcheck_timeout_s}


class Refusal(Exception):
    """Raised inside a parser callback to stop parsing and answer `status` (httptools wraps it; see data_received)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def refusal_bytes(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
                     str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body])


class GatewayProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: EdgeLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.reading_headers = True  # from the connection's (or a request's) first byte until its headers are parsed
        self.idle = False  # answered, and nothing of the next request has arrived
        self.header_bytes = 0
        self.refused = False
        self.requests_read = 0  # requests whose headers were parsed: names the header read under way
        self.watched: object = None  # the read being timed: ("headers", requests_read) or the body's cycle, else None
        self.watched_since = 0.0
        self.deadline_check: asyncio.TimerHandle | None = None
        # The direct path (gateway/direct_http.py): the application's data plane, and the request it is reading
        self.data_plane = None if self.access_log or self.limit_concurrency is not None else data_plane_of(app_state)
        self.direct: DirectExchange | None = None

    # -- connection --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.check_deadlines()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline_check is not None:
            self.deadline_check.cancel()
            self.deadline_check = None
        self.direct = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self.direct is not None:  # its body is still arriving: answer it, then close
            self.direct.keep_alive = False
            return
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the header byte count and refusals raised from callbacks (httptools reports any callback
        exception as an HttpParserCallbackError whose __context__ is the original)."""
        if self.refused:  # answered and closing: whatever else arrives is dropped
            return
        self.idle = False
        if self.reading_headers:
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, Refusal):
                self.refuse(exc.__context__.status, str(exc.__context__))
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.refuse(400, "invalid HTTP request")
            return
        if self.reading_headers and self.header_bytes > self.limits.max_header_bytes:
            self.refuse(431, f"request headers are over the limit of {self.limits.max_header_bytes} bytes")

    def refuse(self, status: int, message: str) -> None:
        """Answer `status` unless that would cut into another answer, and close the connection. While headers are
        read, `self.cycle` is the previous request's (keep-alive) and must be complete; while a body is read, it is
        the refused request's own, whose answer must not have started."""
        self.refused = True
        log.info("%s from %s: %s", status, self.client, message)
        cycle = self.cycle
        if self.reading_headers:
            answer = cycle is None or cycle.response_complete
        elif self.direct is not None:
            answer, self.direct = True, None
        else:
            answer = cycle is not None and not cycle.response_started
        if answer:
            self.transport.write(refusal_bytes(status, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() sees http.disconnect; its send() is dropped
            cycle.message_event.set()
        self.transport.close()

    # -- parser callbacks --------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading_headers = True
        self.header_bytes = 0
        self.direct = None

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise Refusal(431, f"more than {limits.max_headers} request header fields")
        # header_bytes counts whole reads; when it passed the limit during the read that completed the headers,
        # measure the headers themselves
        if self.header_bytes > limits.max_header_bytes and (
                len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
                > limits.max_header_bytes):
            raise Refusal(431, f"request headers are over the limit of {limits.max_header_bytes} bytes")
        if len(self.connections) > limits.max_connections:
            raise Refusal(503, f"server busy: over {limits.max_connections} open connections; retry later")
        self.reading_headers = False
        self.requests_read += 1
        if self.data_plane is None or not self.start_direct():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.direct is not None:
            self.direct.body.append(body)  # bounded: its declared length was checked
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        direct = self.direct
        if direct is None:
            super().on_message_complete()
            return
        self.direct = None
        self.answer_direct(direct)

    # -- the direct path (gateway/direct_http.py) -----------------------------------------------------------------

    def start_direct(self) -> bool:
        """Take the request on the direct path when it is a data-plane POST with a small body of declared length, and
        nothing asks for uvicorn's own handling: no answer under way on this connection (pipelined requests keep
        their order), no write backlog, no Expect or upgrade, no chunked body, no X-Forwarded-For for uvicorn's
        proxy headers to apply, and no data-plane header the endpoint refuses (it answers those on uvicorn's path).
        The headers are read here, once, and handed to the endpoint."""
        parser = self.parser
        if parser.get_method() != b"POST" or self.expect_100_continue or self.flow.write_paused:
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or parser.should_upgrade():
            return False
        scope = self.scope
        scope["method"] = "POST"
        http_version = parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        target = direct_target(self.data_plane, self.url, self.root_path)
        if target is None:
            return False
        endpoint = target.endpoint
        scope["path"] = target.path  # path, query string and parameters are what the data plane reads; raw_path is not
        scope["query_string"] = target.query_string
        scope["path_params"] = target.path_params
        try:
            headers = data_plane_headers(scope, endpoint.routing)
        except InvalidInput:  # refused with its JSON answer by the endpoint, on uvicorn's path
            return False
        length = headers.content_length
        if (headers.chunked_or_forwarded or length is None or not length.isdigit()
                or int(length) > MAX_DIRECT_BODY_BYTES):
            return False
        self.direct = DirectExchange(self, scope, endpoint, headers,
                                     http_version != "1.0" and parser.should_keep_alive())
        return True

    def answer_direct(self, direct: DirectExchange) -> None:
        """Run the endpoint at once; if it has to wait before answering, a cycle and a task carry it on."""
        coroutine = direct.run()
        try:
            finished, awaited = eager.start(coroutine)
        except Exception:  # noqa: BLE001 - as uvicorn's cycle does for an application's exception
            self.logger.exception("Exception in ASGI application")
            if not direct.answered:
                self.write_answer(refusal_bytes(500, "internal server error"), keep_alive=False)
            return
        if finished:
            return
        if not direct.answered:
            self.cycle = direct.hand_to_cycle()
        task = self.loop.create_task(self.finish_direct(coroutine, awaited, direct))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def finish_direct(self, coroutine: Coroutine[Any, Any, None], awaited: object,
                            direct: DirectExchange) -> None:
        try:
            await eager.resume(coroutine, awaited)
        except Exception:  # noqa: BLE001 - as uvicorn's cycle does for an application's exception
            self.logger.exception("Exception in ASGI application")
            if direct.cycle is not None and not direct.cycle.response_started:
                self.write_answer(refusal_bytes(500, "internal server error"), keep_alive=False)

    def write_answer(self, response: bytes, keep_alive: bool) -> None:
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, without its keep-alive timer: check_deadlines closes a connection left idle."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # pipelined requests queued behind the answer just sent
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.idle = True

    # -- read deadlines ----------------------------------------------------------------------------------------

    def check_deadlines(self) -> None:
        """Time out a read (headers, or a body) that has been under way for too long, and close a keep-alive
        connection left idle; runs every check_interval_s while the connection is open. A read is known by the request
        count (headers, idle) or by what its body fills, so requests need no timers of their own."""
        now = self.loop.time()
        read: object = None
        if self.idle:
            read, timeout, what = ("idle", self.requests_read), self.limits.keep_alive_timeout_s, ""
        elif self.reading_headers:
            read, timeout, what = ("headers", self.requests_read), self.limits.header_timeout_s, "request headers"
        elif self.direct is not None:
            read, timeout, what = self.direct, self.limits.body_timeout_s, "request body"
        elif self.cycle is not None and self.cycle.more_body:
            read, timeout, what = self.cycle, self.limits.body_timeout_s, "request body"
        if read is None or read != self.watched:
            self.watched, self.watched_since = read, now
        elif now - self.watched_since >= timeout and not self.refused:
            if self.idle:  # closed without an answer, as uvicorn closes an idle keep-alive connection
                self.transport.close()
            else:
                self.refuse(408, f"{what} not received within {timeout:g} s")
            return
        self.deadline_check = self.loop.call_later(self.limits.check_interval_s, self.check_deadlines)
