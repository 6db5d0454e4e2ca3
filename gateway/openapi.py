"""The gateway's OpenAPI 3.1 document, served at `GET /openapi.json`: every route, its parameters, its bodies and its
answers. Static and hand-written (the bodies are parsed by hand in gateway/requests.py and gateway/v2.py, not by
pydantic models), so it is built once; tests/adversarial checks that every route is in it and runs schemathesis
against it.
"""
from __future__ import annotations

import functools

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.endpoints import server_version

OPENAPI_PATH = "/openapi.json"
# The naming rules of modelstore.versions, as JSON Schema patterns (ECMA-262: `$` is the end of the input).
MODEL_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,63}$"
VERSION_PATTERN = r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"
V2_DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64",
                "BYTES"]

ERROR_DESCRIPTIONS = {
    "400": "the body is not JSON, or its inputs do not fit the model's signature (the message names the input and the "
           "expected signature)",
    "404": "unknown model, version or environment",
    "405": "method not allowed on this path",
    "413": "body or batch over the gateway's limits (ONNXGATE_MAX_BODY_BYTES, ONNXGATE_MAX_BATCH_ROWS)",
    "415": "the body's Content-Type is not JSON (v2 infer also takes application/octet-stream)",
    "422": "a well-formed request the gateway cannot process",
    "503": "the model is deployed but cannot be served now (not loaded, nothing deployed to the environment)",
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict:
    return {status: _json(_ref("Error"), ERROR_DESCRIPTIONS[status]) for status in statuses}


def _header(name: str, description: str) -> dict:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string", "maxLength": 256}}


def _path(name: str, pattern: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


MODEL = _path("model", MODEL_NAME_PATTERN, "model name (1-64 lowercase letters, digits, '_' or '-')")
VERSION = _path("version", VERSION_PATTERN, "a registered version, e.g. v1.2.0")
ENVIRONMENT = _header("X-Environment", "environment to serve from (default: the gateway's first --env); unknown: 404")
INFERENCE_HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length", "in": "header", "required": False,
    "description": "binary tensor data extension: the body is this many bytes of JSON InferRequest, then the raw bytes "
                   "of each input whose parameters give a binary_data_size, in the order of the inputs (fixed-size "
                   "elements little-endian, BOOL one byte, BYTES elements each a 4-byte little-endian length then its "
                   "bytes); the sizes must add up to the body exactly",
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}}
BINARY_BODY = {"schema": {"description": "binary tensor data: a JSON InferRequest of Inference-Header-Content-Length "
                                         "bytes, then the inputs' raw tensors"}}
REQUEST_ID_SCHEMA = {"type": "string", "pattern": "^[!-~]{1,128}$",
                     "description": "1 to 128 visible ASCII characters (no spaces)"}
REQUEST_ID = {"name": "X-Request-Id", "in": "header", "required": False,
              "description": "the caller's request id, kept in the answer (else the gateway makes one); invalid: 400",
              "schema": REQUEST_ID_SCHEMA}
SINCE = {"name": "since", "in": "query", "required": False,
         "description": "the window: requests captured and labels received in the last 7d (default), 24h, 30m, 90s",
         "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?[smhdw]?$"}}
PINNED = {"name": "version", "in": "query", "required": False, "description": "pin a version (debugging)",
          "schema": {"type": "string", "pattern": VERSION_PATTERN}}
DRIFT_VERSION = {"name": "version", "in": "query", "required": False,
                 "description": "report on this registered version instead of the stable one",
                 "schema": {"type": "string", "pattern": VERSION_PATTERN}}

SCHEMAS: dict[str, dict] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Value": {"anyOf": [{"type": "number"}, {"type": "string"}]},
    "Rows": {"type": "array", "minItems": 1, "maxItems": 8, "description": "one row per item: values, or a value",
             "items": {"anyOf": [{"type": "array", "minItems": 1, "maxItems": 16, "items": _ref("Value")},
                                 _ref("Value")]}},
    "PredictRequest": {
        "description": '{"inputs": rows} for a one-input model, {"inputs": {"name": rows}} for several, '
                       '{"text": [...]} for a text model',
        "anyOf": [
            {"type": "object", "required": ["inputs"],
             "properties": {"inputs": {"anyOf": [_ref("Rows"),
                                                 {"type": "object", "additionalProperties": _ref("Rows")}]}}},
            {"type": "object", "required": ["text"],
             "properties": {"text": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "string"}}}},
        ],
    },
    "PredictResponse": {
        "type": "object", "required": ["id", "model", "version", "environment", "arm", "outputs"],
        "properties": {"id": {"type": "string", "description": "the request id (also in X-Request-Id)"},
                       "model": {"type": "string"}, "version": {"type": "string"}, "environment": {"type": "string"},
                       "arm": {"type": "string"},
                       "outputs": {"type": "object", "description": "each output, one row per input row; class ids "
                                   "mapped to labels", "additionalProperties": {"type": "array"}}},
    },
    "InferInput": {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "maxItems": 4, "items": {"type": "integer", "minimum": 0, "maximum": 64}},
            "datatype": {"type": "string", "enum": V2_DATATYPES},
            "data": {"type": "array", "maxItems": 64},
            "parameters": {"type": "object"},
        },
    },
    "InferRequest": {
        "description": "Open Inference Protocol (KServe v2) infer request (JSON tensors; binary tensors: see the "
                       "Inference-Header-Content-Length header)",
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": REQUEST_ID_SCHEMA,
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 4, "items": _ref("InferInput")},
            "outputs": {"type": "array", "maxItems": 4, "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}},
        },
    },
    "InferOutput": {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                       "datatype": {"type": "string", "enum": V2_DATATYPES}, "data": {"type": "array"},
                       "parameters": {"type": "object"}},
    },
    "InferResponse": {
        "type": "object", "required": ["model_name", "model_version", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                       "id": {"type": "string", "description": "the request's id, else X-Request-Id, else one made"},
                       "parameters": {"type": "object"},
                       "outputs": {"type": "array", "items": _ref("InferOutput")}},
    },
    "Health": {
        "type": "object", "required": ["status", "live", "ready", "environments", "models", "problems"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "live": {"type": "boolean"},
            "ready": {"type": "boolean"},
            "not_ready": {"type": "array", "items": {"type": "string"}},
            "environments": {"type": "array", "items": {"type": "string"}},
            "models": {"type": "array", "items": {"type": "object"}},
            "problems": {"type": "array", "items": {"type": "object"}},
            "last_reload": {"type": ["object", "null"]},
        },
    },
    "ModelHealth": {
        "type": "object", "required": ["model_type", "version", "status", "available", "loadable", "metadata"],
        "properties": {
            "model_type": {"type": "string"},
            "version": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["healthy", "unhealthy", "not_deployed"]},
            "available": {"type": "boolean"},
            "loadable": {"type": "boolean"},
            "metadata": {"type": "object"},
            "error": {"type": "string"},
            "rollout": {"type": "object"},
        },
    },
    "ServerMetadata": {
        "type": "object", "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"}}},
    },
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "required": ["ready"],
              "properties": {"ready": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}}},
    "TensorMetadata": {
        "type": "object", "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string", "enum": V2_DATATYPES},
                       "shape": {"type": "array", "items": {"type": "integer"}}},
    },
    "ModelMetadata": {
        "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"},
                       "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                       "outputs": {"type": "array", "items": _ref("TensorMetadata")}},
    },
    "Label": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]},
    "FeedbackRequest": {
        "description": "labels for answered requests: a classifier's true label (as /predict names classes) or a "
                       "regressor's true value, one per request id (a list: one per row)",
        "type": "array", "maxItems": 64,
        "items": {"anyOf": [
            {"type": "object", "required": ["id", "label"], "additionalProperties": False,
             "properties": {"id": REQUEST_ID_SCHEMA, "label": {"anyOf": [
                 _ref("Label"), {"type": "array", "minItems": 1, "maxItems": 8, "items": _ref("Label")}]}}},
            {"type": "object", "required": ["id", "value"], "additionalProperties": False,
             "properties": {"id": REQUEST_ID_SCHEMA, "value": {"anyOf": [
                 {"type": "number"}, {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "number"}}]}}},
        ]},
    },
    "FeedbackResponse": {
        "type": "object", "required": ["model", "environment", "received", "matched", "unknown"],
        "properties": {"model": {"type": "string"}, "environment": {"type": "string"},
                       "received": {"type": "integer", "minimum": 0},
                       "matched": {"type": "integer", "minimum": 0, "description": "ids of captured requests"},
                       "unknown": {"type": "integer", "minimum": 0, "description": "ids of no captured request yet "
                                   "(kept: they count once their request is captured)"}},
    },
    "QualityReport": {
        "type": "object", "required": ["model", "environment", "since_s", "labels", "matched", "unknown_ids",
                                       "unusable", "arms"],
        "properties": {
            "model": {"type": "string"}, "environment": {"type": "string"}, "since_s": {"type": "number"},
            "labels": {"type": "integer", "minimum": 0}, "matched": {"type": "integer", "minimum": 0},
            "unknown_ids": {"type": "integer", "minimum": 0}, "unusable": {"type": "integer", "minimum": 0},
            "arms": {"type": "array", "items": {
                "type": "object", "required": ["version", "arm", "labelled_rows"],
                "properties": {"version": {"type": "string"}, "arm": {"type": "string"},
                               "labelled_rows": {"type": "integer", "minimum": 0}, "accuracy": {"type": "number"},
                               "rmse": {"type": "number"}, "mae": {"type": "number"}}}},
        },
    },
    "DriftReport": {
        "description": "live drift of one version over the last rows served in one environment (every worker's): per "
                       "feature PSI and KS against the reference statistics, the share of drifted features, and the "
                       "outputs' drift",
        "type": "object",
        "required": ["model", "version", "environment", "window_rows", "status", "drifted_share", "thresholds",
                     "features", "prediction"],
        "properties": {
            "model": {"type": "string"}, "version": {"type": "string"}, "environment": {"type": "string"},
            "window_rows": {"type": "integer", "minimum": 0},
            "status": {"type": "string", "enum": ["ok", "drift", "insufficient data"]},
            "drifted_share": {"type": ["number", "null"], "description": "null below the minimum window"},
            "thresholds": {"type": "object"},
            "features": {"type": "array", "items": {
                "type": "object", "required": ["name", "psi", "ks", "drifted"],
                "properties": {"name": {"type": "string"}, "psi": {"type": ["number", "null"]},
                               "ks": {"type": ["number", "null"]}, "drifted": {"type": "boolean"},
                               "non_finite": {"type": "integer"}}}},
            "prediction": {"type": "object", "required": ["available", "drifted"],
                           "properties": {"available": {"type": "boolean"}, "psi": {"type": ["number", "null"]},
                                          "total_variation": {"type": ["number", "null"]},
                                          "drifted": {"type": "boolean"}}},
            "notes": {"type": "array", "items": {"type": "string"}},
        },
    },
    "DriftUnavailable": {
        "description": "the version has no reference statistics usable for drift (or live drift is off)",
        "type": "object", "required": ["model", "version", "environment", "status", "reason", "window_rows"],
        "properties": {"model": {"type": "string"}, "version": {"type": "string"}, "environment": {"type": "string"},
                       "status": {"type": "string", "enum": ["unavailable"]}, "reason": {"type": "string"},
                       "window_rows": {"type": "integer", "enum": [0]}},
    },
    "ModelReady": {"type": "object", "required": ["name", "ready"],
                   "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
}


def _get(summary: str, parameters: list[dict], ok: dict, *errors: str, ok_status: str = "200") -> dict:
    return {"get": {"summary": summary, "parameters": parameters, "responses": {ok_status: ok, **_errors(*errors)}}}


def _post(summary: str, parameters: list[dict], body: str, ok: str, *errors: str) -> dict:
    return {"post": {"summary": summary, "parameters": parameters,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(body)}}},
                     "responses": {"200": _json(_ref(ok), "the model's answer (header X-Model-Version: the version "
                                                          "that answered)"), **_errors(*errors)}}}


DATA_PLANE_ERRORS = ("400", "404", "405", "413", "415", "422", "503")


def _infer(summary: str, parameters: list[dict]) -> dict:
    """A v2 infer operation: JSON, or the binary tensor data form both ways (a binary answer when the request asks
    for binary outputs: per output `parameters.binary_data`, or `parameters.binary_data_output` for all)."""
    operation = _post(summary, [*parameters, INFERENCE_HEADER_LENGTH, REQUEST_ID], "InferRequest", "InferResponse",
                      *DATA_PLANE_ERRORS)
    post = operation["post"]
    post["requestBody"]["content"]["application/octet-stream"] = BINARY_BODY
    ok = post["responses"]["200"]
    ok["description"] += ("; application/octet-stream when binary outputs were asked for: a JSON InferResponse of "
                          "Inference-Header-Content-Length bytes (each binary output with parameters.binary_data_size "
                          "instead of data), then their raw tensors")
    ok["content"]["application/octet-stream"] = {"schema": {}}
    ok.setdefault("headers", {})["Inference-Header-Content-Length"] = {
        "description": "binary answers only: the length of the JSON header", "schema": {"type": "string"}}
    return operation


def _paths(routing_header: str | None) -> dict:
    routing = [_header(routing_header, "sticky canary routing key (the header this gateway's operator trusts: "
                                       "ONNXGATE_ROUTING_HEADER)")] if routing_header else []
    model_health = _get("one model's health in one environment", [MODEL, ENVIRONMENT],
                        _json(_ref("ModelHealth"), "the model is healthy"), "404", "405", "503")
    model_health["get"]["responses"]["503"] = _json(
        {"anyOf": [_ref("ModelHealth"), _ref("Error")]}, "the model is unhealthy or not deployed (its health report), "
        "or cannot be served")
    ready = _json(_ref("ModelReady"), "the version answers requests")
    not_ready = _json({"anyOf": [_ref("ModelReady"), _ref("Error")]}, "not ready, or cannot be served")
    model_ready = _get("is the model's deployed version loaded", [MODEL, ENVIRONMENT], ready, "404", "405")
    version_ready = _get("is this version loaded", [MODEL, VERSION, ENVIRONMENT], ready, "404", "405")
    for operation in (model_ready, version_ready):
        operation["get"]["responses"]["503"] = not_ready
    v2_ready = _get("ready: the registry is read and every environment with deployments serves one",
                    [], _json(_ref("Ready"), "ready"), "405")
    v2_ready["get"]["responses"]["503"] = _json(_ref("Ready"), "not ready, with the reasons")
    return {
        "/predict/{model}": _post("predict with the deployed version (canary split by routing key)",
                                  [MODEL, PINNED, ENVIRONMENT, REQUEST_ID, *routing], "PredictRequest",
                                  "PredictResponse", *DATA_PLANE_ERRORS),
        "/feedback/{model}": _post("labels for answered requests, by request id, appended to the labels log",
                                   [MODEL, ENVIRONMENT], "FeedbackRequest", "FeedbackResponse",
                                   "400", "404", "405", "413", "415"),
        "/quality/{model}": _get("live quality per version and arm: captured predictions joined with labels",
                                 [MODEL, ENVIRONMENT, SINCE], _json(_ref("QualityReport"), "the quality report"),
                                 "400", "404", "405"),
        "/v2/models/{model}/infer": _infer("Open Inference Protocol infer", [MODEL, ENVIRONMENT, *routing]),
        "/v2/models/{model}/versions/{version}/infer": _infer("Open Inference Protocol infer on a pinned version",
                                                              [MODEL, VERSION, ENVIRONMENT, *routing]),
        "/health": _get("gateway health: ok or degraded, readiness, models, problems, last reload", [],
                        _json(_ref("Health"), "the gateway's health report"), "405"),
        "/health/{model}": model_health,
        "/api/v1/ml-models/{model}/health": model_health,
        "/metrics": _get("Prometheus metrics", [], {"description": "Prometheus text exposition format", "content": {
            "text/plain": {"schema": {"type": "string"}}}}, "405"),
        "/drift/{model}": _get("live drift of the environment's stable version (or of ?version=), over every worker's "
                               "traffic in that environment", [MODEL, DRIFT_VERSION, ENVIRONMENT],
                               _json({"anyOf": [_ref("DriftReport"), _ref("DriftUnavailable")]},
                                     "the drift report, or status unavailable with the reason"),
                               "404", "405", "503"),
        "/v2": _get("Open Inference Protocol server metadata", [], _json(_ref("ServerMetadata"), "server metadata"),
                    "405"),
        "/v2/health/live": _get("the server is live", [], _json(_ref("Live"), "live"), "405"),
        "/v2/health/ready": v2_ready,
        "/v2/models/{model}": _get("model metadata of the version that answers plain requests",
                                   [MODEL, ENVIRONMENT], _json(_ref("ModelMetadata"), "model metadata"),
                                   "404", "405", "503"),
        "/v2/models/{model}/versions/{version}": _get("model metadata of one version", [MODEL, VERSION, ENVIRONMENT],
                                                      _json(_ref("ModelMetadata"), "model metadata"),
                                                      "404", "405", "503"),
        "/v2/models/{model}/ready": model_ready,
        "/v2/models/{model}/versions/{version}/ready": version_ready,
        OPENAPI_PATH: _get("this document", [], _json({"type": "object"}, "the OpenAPI document"), "405"),
    }


@functools.cache
def openapi_document(routing_header: str | None = None, admin: bool = False) -> dict:
    """The document for a gateway that trusts `routing_header` for the routing key (None: no such header), with the
    ops API (/admin/v1/, bearer tokens) when `admin`: a gateway without a tokens file serves none of it."""
    document = {
        "openapi": "3.1.0",
        "info": {"title": "onnxgate gateway", "version": server_version(),
                 "description": "Serves ONNX models per environment: /predict, the Open Inference Protocol (KServe v2) "
                                "REST surface, health, metrics and live drift; with a tokens file, the ops API under "
                                "/admin/v1/. Every error answer is JSON {\"error\": ...}."},
        "paths": _paths(routing_header),
        "components": {"schemas": SCHEMAS},
    }
    if admin:
        from gateway.admin import openapi as admin_openapi  # it takes the name patterns from this module

        document["paths"].update(admin_openapi.admin_paths())
        document["components"] = {"schemas": {**SCHEMAS, **admin_openapi.SCHEMAS},
                                  "securitySchemes": admin_openapi.SECURITY_SCHEMES}
    return document


def openapi_route(routing_header: str | None = None, admin: bool = False) -> Route:
    body = orjson.dumps(openapi_document(routing_header, admin))

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route(OPENAPI_PATH, openapi_json, methods=["GET"])
