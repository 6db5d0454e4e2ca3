"""Two small asyncio load generators of the same shape, for the gRPC-vs-HTTP comparison (grpc_vs_http.py): `clients`
concurrent callers, each sending its next request as soon as the last is answered (or, with a `rate`, at its share of
that rate when the last was answered in time), for a fixed time.

- HTTP: one keep-alive HTTP/1.1 connection per caller on plain asyncio streams, the request's bytes built once;
- gRPC: callers sharing one grpc.aio channel (HTTP/2 streams, as gRPC clients are meant to be used), the
  ModelInferRequest built once.

Python clients cost more CPU per request than wrk, and gRPC's client more than a raw socket's: requests/s may be the
client's limit, so the comparison also reports the server's CPU time per request, which does not depend on it.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def failed(self, why: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = why


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    first_error: str | None

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.errors == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean}


def result_of(tallies: list[Tally], seconds: float) -> LoadResult:
    latencies = sorted(latency for tally in tallies for latency in tally.latencies_s)
    errors = sum(tally.errors for tally in tallies)
    first_error = next((tally.first_error for tally in tallies if tally.first_error), None)
    if not latencies:
        return LoadResult(0, errors, seconds, 0.0, 0.0, 0.0, first_error)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return LoadResult(len(latencies), errors, seconds, len(latencies) / seconds, statistics.median(latencies) * 1e3,
                      p99 * 1e3, first_error)


class Pace:
    """A caller's share of `rate` requests/s over `clients` callers; no rate: no waiting."""

    def __init__(self, rate: float | None, clients: int) -> None:
        self.interval = clients / rate if rate else 0.0
        self.next_at = time.perf_counter()

    async def wait(self) -> None:
        if self.interval:
            self.next_at += self.interval
            delay = self.next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


def http_request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def http_caller(host: str, port: int, request: bytes, until: float, tally: Tally, pace: Pace) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            await pace.wait()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                tally.latencies_s.append(time.perf_counter() - started)
            else:
                tally.failed(head.split(b"\r\n", 1)[0].decode("latin-1"))
    finally:
        writer.close()


async def load_http(host: str, port: int, path: str, body: bytes, clients: int, seconds: float,
                    rate: float | None = None) -> LoadResult:
    if host != "127.0.0.1":
        raise ValueError(f"refusing to load anything but 127.0.0.1: {host}")
    request = http_request_bytes(host, port, path, body)
    tallies = [Tally() for _ in range(clients)]
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(http_caller(host, port, request, until, tally, Pace(rate, clients)) for tally in tallies))
    return result_of(tallies, time.perf_counter() - started)


async def grpc_caller(stub: service_pb2_grpc.GRPCInferenceServiceStub, request: service_pb2.ModelInferRequest,
                      until: float, tally: Tally, pace: Pace) -> None:
    while time.perf_counter() < until:
        await pace.wait()
        started = time.perf_counter()
        try:
            await stub.ModelInfer(request)
        except grpc.aio.AioRpcError as exc:
            tally.failed(f"{exc.code().name}: {exc.details()}")
            continue
        tally.latencies_s.append(time.perf_counter() - started)


async def load_grpc(host: str, port: int, request: service_pb2.ModelInferRequest, clients: int,
                    seconds: float, rate: float | None = None) -> LoadResult:
    if host != "127.0.0.1":
        raise ValueError(f"refusing to load anything but 127.0.0.1: {host}")
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        tallies = [Tally() for _ in range(clients)]
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(grpc_caller(stub, request, until, tally, Pace(rate, clients)) for tally in tallies))
        return result_of(tallies, time.perf_counter() - started)
