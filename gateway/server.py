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

Idle keep-alive connections are closed after `keep_alive_timeout_s` by uvicorn itself (`timeout_keep_alive`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.settings import GatewaySettings

log = logging.getLogger("onnxgate.gateway")


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> EdgeLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s,
                   settings.body_timeout_s, settings.max_connections)

    @property
    def check_interval_s(self) -> float:
        """How often a connection's read deadlines are checked: a timeout fires at most this late."""
        return min(1.0, self.header_timeout_s / 4, self.body_timeout_s / 4)


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
        self.header_bytes = 0
        self.refused = False
        self.requests_read = 0  # requests whose headers were parsed: names the header read under way
        self.watched: object = None  # the read being timed: ("headers", requests_read) or the body's cycle, else None
        self.watched_since = 0.0
        self.deadline_check: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.check_deadlines()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline_check is not None:
            self.deadline_check.cancel()
            self.deadline_check = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the header byte count and refusals raised from callbacks (httptools reports any callback
        exception as an HttpParserCallbackError whose __context__ is the original)."""
        if self.refused:  # answered and closing: whatever else arrives is dropped
            return
        self._unset_keepalive_if_required()
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
        super().on_headers_complete()

    # -- read deadlines ----------------------------------------------------------------------------------------

    def check_deadlines(self) -> None:
        """Time out a read (headers, or a body) that has been under way for too long; runs every check_interval_s
        while the connection is open. A read is known by the request count (headers) or by the cycle its body fills,
        so requests need no timers of their own."""
        now = self.loop.time()
        read: object = None
        if self.reading_headers:
            read, timeout, what = ("headers", self.requests_read), self.limits.header_timeout_s, "request headers"
        elif self.cycle is not None and self.cycle.more_body:
            read, timeout, what = self.cycle, self.limits.body_timeout_s, "request body"
        if read is None or read != self.watched:
            self.watched, self.watched_since = read, now
        elif now - self.watched_since >= timeout and not self.refused:
            self.refuse(408, f"{what} not received within {timeout:g} s")
            return
        self.deadline_check = self.loop.call_later(self.limits.check_interval_s, self.check_deadlines)
