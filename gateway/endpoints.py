"""HTTP only: read the request, call the service, write the response. /predict, /health, /metrics and the Open
Inference Protocol (v2) REST routes."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import v2
from gateway.errors import PayloadTooLarge
from gateway.health import RolloutReport, gateway_health, model_health, no_rollout
from gateway.service import Answer, Service
from modelstore.errors import ModelNotFound, VersionNotFound

JSON = "application/json"
ENVIRONMENT_HEADER = "x-environment"


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type=JSON)


_VERSION_HEADERS: dict[str, bytes] = {}


async def send_versioned_json(send: Send, payload: object, version: str) -> None:
    """A 200 JSON answer with X-Model-Version, sent straight to the server (the header's bytes cached per version)."""
    body = orjson.dumps(payload)
    encoded = _VERSION_HEADERS.get(version)
    if encoded is None:
        encoded = _VERSION_HEADERS[version] = version.encode("latin-1")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-model-version", encoded)]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class DataPlaneHeaders:
    environment: str | None = None
    routing_key: str | None = None
    content_length: bytes | None = None


def data_plane_headers(scope: Scope) -> DataPlaneHeaders:
    """X-Environment, X-Routing-Key and Content-Length in one pass over the raw headers (ASGI lowercases names)."""
    environment = routing_key = length = None
    for key, value in scope["headers"]:
        if key == b"x-environment":
            environment = value.decode("latin-1")
        elif key == b"x-routing-key":
            routing_key = value.decode("latin-1")
        elif key == b"content-length":
            length = value
    return DataPlaneHeaders(environment, routing_key, length)


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


class DataPlaneEndpoint:
    """POST /predict/{model} and the v2 infer routes as plain ASGI apps. Starlette's Route calls an object like this
    directly, without building a Request and a Response and a second exception wrapper around them (measured with
    bench/asgi_overhead.py); errors still reach the one handler table through Starlette's ExceptionMiddleware.
    After the answer is sent, the shadow version (if any) runs on the same request."""

    def __init__(self, answer: Callable[[Scope, DataPlaneHeaders, bytes], Awaitable[tuple[dict, Answer]]],
                 max_body_bytes: int) -> None:
        self.answer = answer
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = data_plane_headers(scope)
        body = await read_body(receive, headers.content_length, self.max_body_bytes)
        payload, answer = await self.answer(scope, headers, body)
        await send_versioned_json(send, payload, answer.version)
        if answer.mirror is not None:
            await answer.mirror()


def server_version() -> str:
    try:
        return package_version("onnxgate")
    except PackageNotFoundError:
        return "0"


class Endpoints:
    def __init__(self, service: Service, metrics_registry: CollectorRegistry, rollout: RolloutReport = no_rollout) -> None:
        self.service = service
        self.metrics_registry = metrics_registry
        self.rollout = rollout
        max_body_bytes = service.settings.max_body_bytes
        self.predict = DataPlaneEndpoint(self.predict_answer, max_body_bytes)
        self.v2_infer = DataPlaneEndpoint(self.v2_answer, max_body_bytes)
        self.server = {"name": "onnxgate", "version": server_version(), "extensions": []}

    def routes(self) -> list[Route]:
        # Starlette tries routes in order: the two data-plane POSTs go first (no other pattern matches their paths,
        # so the order changes nothing but the number of regex matches per request)
        return [
            Route("/predict/{model}", self.predict, methods=["POST"]),
            Route("/v2/models/{model}/infer", self.v2_infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self.v2_infer, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/health/{model}", self.model_health, methods=["GET"]),
            Route("/api/v1/ml-models/{model}/health", self.model_health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/v2", self.v2_server, methods=["GET"]),
            Route("/v2/health/live", self.v2_live, methods=["GET"]),
            Route("/v2/health/ready", self.v2_ready, methods=["GET"]),
            Route("/v2/models/{model}", self.v2_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.v2_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.v2_model_ready, methods=["GET"]),
        ]

    async def predict_answer(self, scope: Scope, headers: DataPlaneHeaders, body: bytes) -> tuple[dict, Answer]:
        query = scope["query_string"]
        pinned = QueryParams(query).get("version") if query else None
        answer = await self.service.predict(scope["path_params"]["model"], headers.environment, body, version=pinned,
                                            routing_key=headers.routing_key)
        return answer.as_json(), answer

    async def health(self, request: Request) -> Response:
        service = self.service
        return json_response(gateway_health(service.pool, service.environments, service.last_reload, self.rollout))

    async def model_health(self, request: Request) -> Response:
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        report = model_health(self.service.pool, request.path_params["model"], environment, self.rollout)
        return json_response(report, status=200 if report["status"] == "healthy" else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    async def v2_server(self, request: Request) -> Response:
        return json_response(self.server)

    async def v2_live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        ready = self.service.ready
        return json_response({"ready": ready}, status=200 if ready else 503)

    async def v2_metadata(self, request: Request) -> Response:
        model = request.path_params["model"]
        version = request.path_params.get("version")
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        loaded = await self.service.resolve(model, environment, version)
        if version is None:
            route = self.service.route(model, environment)
            versions = sorted({arm.version for arm in (route.stable, route.canary, route.shadow) if arm is not None})
        else:
            versions = [version]
        return json_response(v2.model_metadata(model, versions, loaded))

    async def v2_model_ready(self, request: Request) -> Response:
        model = request.path_params["model"]
        version = request.path_params.get("version")
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        pool = self.service.pool
        if model not in pool.registry.models:
            raise ModelNotFound(f"model {model!r} not found")
        if version is None:
            route = pool.route(environment, model)
            ready = route is not None and route.stable is not None
        else:
            if version not in pool.registry.models[model]:
                raise VersionNotFound(f"model {model!r} has no version {version!r}")
            ready = (model, version) in pool.models
        return json_response({"name": model, "ready": ready}, status=200 if ready else 503)

    async def v2_answer(self, scope: Scope, headers: DataPlaneHeaders, body: bytes) -> tuple[dict, Answer]:
        params = scope["path_params"]
        answer = await self.service.infer(params["model"], headers.environment, body, version=params.get("version"),
                                          routing_key=headers.routing_key)
        payload = {"model_name": answer.model, "model_version": answer.version,
                   "outputs": v2.encode_outputs(answer.outputs),
                   "parameters": {"environment": answer.environment, "arm": answer.arm}}
        if answer.request_id is not None:
            payload["id"] = answer.request_id
        return payload, answer
