"""HTTP only: read the request, call the service, write the response. /predict, /health, /metrics and the Open
Inference Protocol (v2) REST routes."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import v2
from gateway.health import RolloutReport, gateway_health, model_health, no_rollout
from gateway.service import Service
from modelstore.errors import ModelNotFound, VersionNotFound

JSON = "application/json"
ENVIRONMENT_HEADER = "x-environment"
ENVIRONMENT_HEADER_RAW = b"x-environment"
ROUTING_KEY_HEADER_RAW = b"x-routing-key"


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type=JSON)


class PreparedResponse(Response):
    """A JSON response whose raw headers the caller built: the same bytes on the wire as
    `json_response(payload, headers={"X-Model-Version": version})`, without Starlette's per-response header work."""

    media_type = JSON

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:  # fields set here, no render
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


_VERSION_HEADERS: dict[str, bytes] = {}


def versioned_json(payload: object, version: str) -> Response:
    """json_response(payload, headers={"X-Model-Version": version}), with the header's bytes cached per version."""
    body = orjson.dumps(payload)
    encoded = _VERSION_HEADERS.get(version)
    if encoded is None:
        encoded = _VERSION_HEADERS[version] = version.encode("latin-1")
    return PreparedResponse(body, [(b"x-model-version", encoded), (b"content-length", str(len(body)).encode()),
                                   (b"content-type", b"application/json")])


async def read_body(request: Request) -> bytes:
    """The whole body straight from `receive`, without request.body()'s async generator (measurably cheaper per
    request). Endpoints read the body once and nothing after them reads it again."""
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def routing_headers(request: Request) -> tuple[str | None, str | None]:
    """(X-Environment, X-Routing-Key) in one pass over the raw headers (ASGI lowercases their names)."""
    environment = routing_key = None
    for key, value in request.scope["headers"]:
        if key == ENVIRONMENT_HEADER_RAW:
            environment = value.decode("latin-1")
        elif key == ROUTING_KEY_HEADER_RAW:
            routing_key = value.decode("latin-1")
    return environment, routing_key


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

    async def predict(self, request: Request) -> Response:
        environment, routing_key = routing_headers(request)
        pinned = request.query_params.get("version") if request.scope["query_string"] else None
        answer = await self.service.predict(request.path_params["model"], environment, await read_body(request),
                                            version=pinned, routing_key=routing_key)
        response = versioned_json(answer.as_json(), answer.version)
        response.background = answer.mirror  # the shadow runs after the response is sent
        return response

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

    async def v2_infer(self, request: Request) -> Response:
        environment, routing_key = routing_headers(request)
        answer = await self.service.infer(request.path_params["model"], environment, await read_body(request),
                                          version=request.path_params.get("version"), routing_key=routing_key)
        body = {"model_name": answer.model, "model_version": answer.version, "outputs": v2.encode_outputs(answer.outputs),
                "parameters": {"environment": answer.environment, "arm": answer.arm}}
        if answer.request_id is not None:
            body["id"] = answer.request_id
        response = versioned_json(body, answer.version)
        response.background = answer.mirror
        return response
