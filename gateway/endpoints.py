"""HTTP only: read the request, call the service, write the response. /predict, /health, /metrics, /drift and the
Open Inference Protocol (v2) REST routes."""
from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from gateway import v2, v2_binary
from gateway.data_plane import BinaryBody, DataPlane, DataPlaneEndpoint, DataPlaneHeaders, RoutingHeader
from gateway.errors import InvalidInput, UnsupportedMediaType, shown
from gateway.feedback import FeedbackEndpoints
from gateway.health import RolloutReport, gateway_health, model_health, no_rollout, readiness
from gateway.requests import InferRequest, ModelRequest, PredictRequest
from gateway.service import Answer, Service
from gateway.validation import parse_json
from gateway.worker_metrics import exposition

JSON = "application/json"
ENVIRONMENT_HEADER = "x-environment"


NUMBER_AND_LIST_BYTES = b"0123456789.-+eE[], \t\r\n"
PLAIN_PREDICT_SKELETON = b'{"inputs":}'


def plain_predict_body(body: bytes) -> bool:
    """Whether a /predict body (valid JSON) is `{"inputs": ...}` alone with JSON numbers in nested lists as its value:
    it starts so (which keeps text bodies from being read twice), and what is left once the bytes of numbers, lists and
    whitespace are deleted (in C, one pass) is that key alone. Its values then hold no strings, booleans or nulls, so
    they convert in one step (gateway.validation.coerce)."""
    return body.startswith(b'{"inputs"') and body.translate(None, NUMBER_AND_LIST_BYTES) == PLAIN_PREDICT_SKELETON


def check_json_content_type(content_type: bytes | None) -> None:
    """A body declared as something other than JSON is refused (415). A missing Content-Type is taken as JSON: curl
    without -H, wrk scripts and older clients send none, and the body is parsed as JSON either way."""
    if content_type is not None and content_type != b"application/json" and not is_json_media_type(content_type):
        raise UnsupportedMediaType(f"Content-Type {shown(content_type.decode('latin-1'))} is not JSON; send "
                                   "application/json")


def check_infer_content_type(content_type: bytes | None) -> None:
    """A v2 infer body may also be application/octet-stream, binary tensor data or not: tritonclient.http.aio (over
    aiohttp) labels every body so, its all-JSON ones too; tritonclient.http (over geventhttpclient) sends no
    Content-Type. Anything else that is not JSON is refused (415)."""
    if content_type is None or content_type == b"application/octet-stream" or is_json_media_type(content_type):
        return
    if content_type.split(b";", 1)[0].strip().lower() != b"application/octet-stream":
        raise UnsupportedMediaType(f"Content-Type {shown(content_type.decode('latin-1'))} is not JSON nor "
                                   "application/octet-stream; send application/json")


def is_json_media_type(value: bytes) -> bool:
    """application/json or any application/*+json, with any parameters (charset=utf-8)."""
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (media_type.startswith(b"application/")
                                                 and media_type.endswith(b"+json"))


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type=JSON)


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
        settings = service.settings
        max_body_bytes = settings.max_body_bytes
        self.inline_decode_max_bytes = settings.inline_decode_max_bytes
        routing = RoutingHeader(settings.routing_header.encode("latin-1") if settings.routing_header else None,
                                settings.max_routing_key_bytes)
        self.data_plane = DataPlane(predict=DataPlaneEndpoint(self.predict_answer, max_body_bytes, routing),
                                    v2_infer=DataPlaneEndpoint(self.v2_answer, max_body_bytes, routing))
        self.feedback = FeedbackEndpoints(service, check_json_content_type)
        self.server = {"name": "onnxgate", "version": server_version(), "extensions": [v2_binary.EXTENSION]}

    def routes(self) -> list[Route]:
        # The data-plane POSTs normally reach their endpoints through DataPlane.match, before this router; listed here
        # too so that the router answers other methods on their paths (405) and lists every route.
        predict, v2_infer = self.data_plane.predict, self.data_plane.v2_infer
        return [
            Route("/predict/{model}", predict, methods=["POST"]),
            Route("/v2/models/{model}/infer", v2_infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", v2_infer, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/health/{model}", self.model_health, methods=["GET"]),
            Route("/api/v1/ml-models/{model}/health", self.model_health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/feedback/{model}", self.feedback.feedback, methods=["POST"]),
            Route("/quality/{model}", self.feedback.quality, methods=["GET"]),
            Route("/drift/{model}", self.drift, methods=["GET"]),
            Route("/v2", self.v2_server, methods=["GET"]),
            Route("/v2/health/live", self.v2_live, methods=["GET"]),
            Route("/v2/health/ready", self.v2_ready, methods=["GET"]),
            Route("/v2/models/{model}", self.v2_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.v2_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.v2_model_ready, methods=["GET"]),
        ]

    def decode(self, model: str, headers: DataPlaneHeaders, body: bytes, request_type: type,
               check_content_type: Callable[[bytes | None], None] = check_json_content_type) -> ModelRequest:
        """The body as a request for the service; a body that is not JSON is refused (and counted) here. The request
        is told whether its decoding is heavy (a big body: decoded off the event loop) and whether it can hold JSON
        booleans (searched for in C over the bytes, so that only bodies that have some get their values checked); a plain
        /predict body (`plain_predict_body`: numbers only) is told so, and needs neither check."""
        try:
            if headers.content_type != b"application/json":  # which every data-plane route takes
                check_content_type(headers.content_type)
            payload = parse_json(body)
            heavy = len(body) > self.inline_decode_max_bytes
            if request_type is PredictRequest and plain_predict_body(body):
                return PredictRequest(payload, heavy, booleans=False, numbers=True)
            return request_type(payload, heavy, b"true" in body or b"false" in body)
        except (InvalidInput, UnsupportedMediaType) as exc:
            self.service.rejected(model, headers.environment, exc)
            raise

    def decode_infer(self, model: str, headers: DataPlaneHeaders, body: bytes) -> InferRequest:
        """A v2 infer body: JSON, or, with Inference-Header-Content-Length, a binary tensor data request whose sizes
        are all checked against the body here (refused and counted like a body that is not JSON)."""
        if headers.inference_header_length is None:
            return self.decode(model, headers, body, InferRequest, check_infer_content_type)
        try:
            check_infer_content_type(headers.content_type)
            split = v2_binary.split_body(body, headers.inference_header_length)
        except (InvalidInput, UnsupportedMediaType) as exc:
            self.service.rejected(model, headers.environment, exc)
            raise
        return InferRequest(split.payload, len(body) > self.inline_decode_max_bytes,
                            b"true" in split.header or b"false" in split.header, split.raw)

    async def predict_answer(self, scope: Scope, headers: DataPlaneHeaders, body: bytes) -> tuple[dict, Answer]:
        query = scope["query_string"]
        pinned = QueryParams(query).get("version") if query else None
        model = scope["path_params"]["model"]
        request = self.decode(model, headers, body, PredictRequest)
        answer = await self.service.answer(model, headers.environment, pinned, headers.routing_key, request,
                                           source=headers.source, request_id=headers.request_id)
        return answer.as_json(), answer

    async def health(self, request: Request) -> Response:
        service = self.service
        return json_response(gateway_health(service.pools, service.environments, self.rollout))

    async def model_health(self, request: Request) -> Response:
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        report = model_health(self.service.pools.pool, request.path_params["model"], environment, self.rollout)
        return json_response(report, status=200 if report["status"] == "healthy" else 503)

    async def metrics(self, request: Request) -> Response:
        await self.service.refresh_drift_figures()
        directory = self.service.settings.metrics_dir
        if directory is None:
            return Response(generate_latest(self.metrics_registry), media_type=CONTENT_TYPE_LATEST)
        return Response(await exposition(self.metrics_registry, directory), media_type=CONTENT_TYPE_LATEST)

    async def drift(self, request: Request) -> Response:
        """The live drift report of the environment's stable version, or of the version ?version= names."""
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        return json_response(await self.drift_report(request.path_params["model"], environment,
                                                     request.query_params.get("version")))

    async def drift_report(self, model: str, environment: str, version: str | None) -> dict:
        """GET /drift's report (and the ops API's), for an environment this gateway serves."""
        environment = self.service.environment(environment)
        metadata = await self.service.drift_metadata(model, environment, version)
        return await self.service.drift.report(metadata, environment)

    async def quality_report(self, model: str, environment: str, since: str | None) -> dict:
        return await self.feedback.quality_report(model, self.service.environment(environment), since)

    async def v2_server(self, request: Request) -> Response:
        return json_response(self.server)

    async def v2_live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        ready, why = readiness(self.service.pools, self.service.environments)
        return json_response({"ready": ready, **({"reasons": why} if why else {})}, status=200 if ready else 503)

    async def v2_metadata(self, request: Request) -> Response:
        model = request.path_params["model"]
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        loaded, versions = await self.service.described(model, environment, request.path_params.get("version"))
        return json_response(v2.model_metadata(model, versions, loaded))

    async def v2_model_ready(self, request: Request) -> Response:
        model = request.path_params["model"]
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        ready = self.service.is_ready(model, environment, request.path_params.get("version"))
        return json_response({"name": model, "ready": ready}, status=200 if ready else 503)

    async def v2_answer(self, scope: Scope, headers: DataPlaneHeaders,
                        body: bytes) -> tuple[dict | BinaryBody, Answer]:
        params = scope["path_params"]
        model = params["model"]
        request = self.decode_infer(model, headers, body)
        answer = await self.service.answer(model, headers.environment, params.get("version"), headers.routing_key,
                                           request, source=headers.source, request_id=headers.request_id)
        outputs = answer.outputs
        request_body = request.payload  # a dict: the service has decoded it
        binary = (v2_binary.binary_output_names(request_body, outputs)
                  if "parameters" in request_body or "outputs" in request_body else None)
        tensors = None
        if binary:
            encoded, tensors = v2_binary.encode_outputs(outputs, binary)
        else:
            encoded = v2.encode_outputs(outputs)
        payload = {"model_name": answer.model, "model_version": answer.version, "outputs": encoded,
                   "parameters": {"environment": answer.environment, "arm": answer.arm}}
        if answer.retried_from is not None:
            payload["parameters"]["retried_from"] = answer.retried_from
        payload["id"] = answer.request_id
        if tensors:
            return BinaryBody(orjson.dumps(payload), tensors), answer
        return payload, answer
