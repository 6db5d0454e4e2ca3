"""The ops API's part of the OpenAPI document: its paths (each behind the `bearer` security scheme), its bodies (the
pydantic models of gateway/admin/requests.py, as JSON Schema) and its answers."""
from __future__ import annotations

from gateway.admin import requests
from gateway.admin.routes import ADMIN_PREFIX, ENVIRONMENT_PATTERN, JOB_ID_PATTERN, SNAPSHOT_ID_PATTERN
from gateway.openapi import DRIFT_VERSION, MODEL_NAME_PATTERN, SINCE, VERSION_PATTERN

FILE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"

SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer",
                               "description": "a token from the tokens file (onnxgate token create); its role says "
                                              "what it may do: read (GETs), deploy, approve, admin (all)"}}

ERRORS = {
    "400": "the body is not JSON or does not fit its schema, or a query parameter is invalid",
    "401": "no bearer token, or not a valid one (WWW-Authenticate: Bearer)",
    "403": "the token's role does not allow this operation",
    "404": "unknown model, version, environment, snapshot, deployment or retraining job, or a model retrain.toml does "
           "not configure",
    "405": "method not allowed on this path",
    "409": "a change the current state does not allow, or one the governance gates refused (`verdict`: every check "
           "with its value and limit), or a version whose files fail their checks",
    "413": "body over 64 KiB",
    "422": "an SLO out of range",
    "503": "the store cannot be read now (a corrupt registry, an unreadable policy), the model cannot be served, or "
           "retraining is not available in this gateway",
}
READ_ERRORS = ("401", "405", "503")
CHANGE_ERRORS = ("400", "401", "403", "404", "405", "409", "413", "422", "503")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path(name: str, pattern: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


MODEL = _path("model", MODEL_NAME_PATTERN, "model name")
ENVIRONMENT = _path("environment", ENVIRONMENT_PATTERN, "environment, e.g. production")
VERSION = _path("version", VERSION_PATTERN, "a registered version, e.g. v1.2.0")
SNAPSHOT = _path("snapshot_id", SNAPSHOT_ID_PATTERN, "snapshot id (GET /admin/v1/snapshots)")
FILE = _path("file", FILE_NAME_PATTERN, "metadata.json or a file it lists (the model file, a tokenizer, ...)")
JOB = _path("job", JOB_ID_PATTERN, "retraining job id (GET /admin/v1/retrain/jobs)")

BODIES = {name: model.model_json_schema() for name, model in (
    ("AdminDeploy", requests.DeployBody), ("AdminCanary", requests.CanaryBody), ("AdminPromote", requests.PromoteBody),
    ("AdminRollback", requests.RollbackBody), ("AdminShadow", requests.ShadowBody),
    ("AdminApproval", requests.ApprovalBody), ("AdminSnapshot", requests.SnapshotBody),
    ("AdminRestore", requests.RestoreBody), ("AdminRetrainCheckRequest", requests.RetrainCheckBody),
    ("AdminRetrainRun", requests.RetrainRunBody))}
_TRIGGER = {"type": "object", "required": ["trigger", "fires", "reason"],
            "properties": {"trigger": {"type": "string"}, "fires": {"type": "boolean"}, "reason": {"type": "string"},
                           "figures": {"type": "object"}}}

SCHEMAS: dict[str, dict] = {
    **BODIES,
    "AdminError": {"type": "object", "required": ["error"],
                   "properties": {"error": {"type": "string"},
                                  "verdict": {"type": "object", "description": "a gate's refusal: every check"}}},
    "AdminOutcome": {
        "type": "object", "required": ["action", "changed", "details", "checks", "dry_run"],
        "description": "what the change did (or, with dry_run, would do), as `onnxgate ... --json` prints it",
        "properties": {"action": {"type": "string"}, "model": {"type": ["string", "null"]},
                       "environment": {"type": ["string", "null"]}, "changed": {"type": "boolean"},
                       "before": {"type": ["string", "null"]}, "after": {"type": ["string", "null"]},
                       "weight": {"type": ["number", "null"]}, "details": {"type": "object"},
                       "event": {"type": ["string", "null"]},
                       "checks": {"type": "array", "items": {"type": "object"},
                                  "description": "the gates' figures for the change"},
                       "dry_run": {"type": "boolean"}},
    },
    "AdminStatus": {
        "type": "object", "required": ["served_environments", "deployments", "invalid"],
        "properties": {"served_environments": {"type": "array", "items": {"type": "string"}},
                       "deployments": {"type": "array", "items": {
                           "type": "object", "required": ["model", "environment", "version", "status"],
                           "properties": {"model": {"type": "string"}, "environment": {"type": "string"},
                                          "version": {"type": "string"}, "deployed_at": {"type": "string"},
                                          "status": {"type": "string"},
                                          "canary": {"type": ["string", "null"]},
                                          "shadow": {"type": ["string", "null"]},
                                          "last_rollback": {"type": ["string", "null"]}}}},
                       "invalid": {"type": "array", "items": {"type": "string"}},
                       "gateway": {**_ref("Health"), "description": "what this gateway process serves now (its "
                                   "/health report: loaded versions, each route's rollout state, problems)"}},
    },
    "AdminVersion": {
        "type": "object", "required": ["name", "version", "latest", "status", "environments"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "latest": {"type": "boolean"},
                       "status": {"type": "string"}, "environments": {"type": "array", "items": {"type": "string"}},
                       "framework": {"type": ["string", "null"]}, "task": {"type": ["string", "null"]},
                       "metrics": {"type": "object"}, "created_at": {"type": ["string", "null"]},
                       "error": {"type": "string"}, "evaluation": {"type": ["object", "null"]},
                       "approvals": {"type": "object"}},
    },
    "AdminModels": {"type": "object", "required": ["versions", "invalid"],
                    "properties": {"versions": {"type": "array", "items": _ref("AdminVersion")},
                                   "invalid": {"type": "array", "items": {"type": "string"}}}},
    "AdminModel": {"type": "object", "required": ["name", "latest", "versions", "deployments"],
                   "properties": {"name": {"type": "string"}, "latest": {"type": ["string", "null"]},
                                  "versions": {"type": "array", "items": _ref("AdminVersion")},
                                  "deployments": {"type": "object"}}},
    "AdminRollouts": {"type": "object", "required": ["rollouts"],
                      "properties": {"rollouts": {"type": "array", "items": {
                          "type": "object", "required": ["model", "environment", "version", "loaded", "rollout",
                                                         "windows"],
                          "properties": {
                              "model": {"type": "string"}, "environment": {"type": "string"},
                              "version": {"type": "string"}, "loaded": {"type": "boolean"},
                              "rollout": {"type": "object", "description": "canary, shadow, bake, last_verdict, "
                                          "last_rollback, as in /health"},
                              "windows": {"type": "array", "description": "the windows the judge read lately, oldest "
                                          "first: each arm's requests, error rate and latency quantile, the limits, "
                                          "the verdict", "items": {
                                              "type": "object", "required": ["at", "arms", "max_error_rate"],
                                              "properties": {"at": {"type": "number"},
                                                             "verdict": {"type": ["string", "null"]},
                                                             "arms": {"type": "object"},
                                                             "quantile": {"type": "number"},
                                                             "max_error_rate": {"type": "number"},
                                                             "max_latency_ms": {"type": ["number", "null"]},
                                                             "latency_limit_ms": {"type": ["number", "null"]}}}}}}}}},
    "AdminVersionFiles": {
        "type": "object", "required": ["version"],
        "description": "one version and what a client checks its downloads against; `error` instead when its "
                       "metadata.json cannot be read",
        "properties": {"version": {"type": "string"}, "error": {"type": "string"},
                       "metadata": {"type": "object", "required": ["sha256", "size"],
                                    "description": "metadata.json's own sha256 and size",
                                    "properties": {"sha256": {"type": "string"}, "size": {"type": "integer"}}},
                       "model_file": {"type": "string"}, "model_size": {"type": "integer"},
                       "files": {"type": "object", "additionalProperties": {"type": "string"},
                                 "description": "file name -> sha256, as metadata.json records them"}},
    },
    "AdminVersions": {"type": "object", "required": ["model", "latest", "versions"],
                      "properties": {"model": {"type": "string"}, "latest": {"type": ["string", "null"]},
                                     "versions": {"type": "array", "items": _ref("AdminVersionFiles")}}},
    "AdminHistory": {"type": "object", "required": ["entries"],
                     "properties": {"entries": {"type": "array", "items": {
                         "type": "object", "required": ["time", "action", "actor"],
                         "properties": {"time": {"type": "string"}, "action": {"type": "string"},
                                        "actor": {"type": "string"}, "reason": {"type": ["string", "null"]}}}}}},
    "AdminRetrainJob": {
        "type": "object", "required": ["id", "model", "status", "trigger", "history", "started_epoch"],
        "description": "a retraining job's record, as `onnxgate retrain show --json` prints it",
        "properties": {"id": {"type": "string"}, "model": {"type": "string"},
                       "status": {"type": "string", "enum": ["pending", "running", "validation", "deploying",
                                                             "completed", "rejected", "failed", "abandoned"]},
                       "trigger": _TRIGGER,
                       "history": {"type": "array", "items": {"type": "object", "required": ["status", "time"]}},
                       "started_epoch": {"type": "number"}, "version": {"type": ["string", "null"]},
                       "reason": {"type": ["string", "null"]}, "validation": {"type": ["object", "null"]},
                       "decision": {"type": ["object", "null"]}}},
    "AdminRetrainJobs": {"type": "object", "required": ["jobs"],
                         "properties": {"jobs": {"type": "array", "items": _ref("AdminRetrainJob")}}},
    "AdminRetrainCheck": {
        "type": "object", "required": ["model", "fires", "triggers"],
        "description": "which triggers fire now and why, as `onnxgate retrain check --json` prints it",
        "properties": {"model": {"type": "string"}, "fires": {"type": ["string", "null"]},
                       "cooldown_until": {"type": ["string", "null"]}, "last_job": {"type": ["string", "null"]},
                       "canary": {"type": ["string", "null"]}, "triggers": {"type": "array", "items": _TRIGGER}}},
    "AdminSnapshots": {"type": "object", "required": ["snapshots"],
                       "properties": {"snapshots": {"type": "array", "items": {
                           "type": "object", "required": ["id", "created_at", "actor", "deployments"],
                           "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"]},
                                          "created_at": {"type": "string"}, "actor": {"type": "string"},
                                          "deployments": {"type": "object"}}}}}},
}


def _errors(*statuses: str) -> dict:
    return {status: _json(_ref("AdminError"), ERRORS[status]) for status in statuses}


def _operation(summary: str, parameters: list[dict], ok: dict, errors: tuple[str, ...], body: str | None = None,
               role: str = "read") -> dict:
    operation = {"summary": f"{summary} (role: {role} or admin)" if role != "read" else f"{summary} (any role)",
                 "parameters": parameters, "security": [{"bearer": []}],
                 "responses": {"200": ok, **_errors(*errors)}}
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


def _change(summary: str, parameters: list[dict], body: str, role: str = "deploy") -> dict:
    return {"post": _operation(summary, parameters, _json(_ref("AdminOutcome"), "the outcome"), CHANGE_ERRORS, body,
                               role)}


HISTORY_QUERY = [
    _query("model", {"type": "string", "maxLength": 64}, "only this model"),
    _query("environment", {"type": "string", "maxLength": 64}, "only this environment"),
    _query("event", {"type": "string", "maxLength": 64}, "only entries of this lifecycle event, e.g. "
                                                          "deployment_denied"),
    _query("limit", {"type": "string", "pattern": "^[0-9]{1,5}$"}, "at most this many entries, the newest (1 to "
                                                                    "10000; default 50)"),
]


def _retrain_run() -> dict:
    operation = _operation("start a retraining job now, as `onnxgate retrain run` does; it runs on in the background",
                           [MODEL], {}, CHANGE_ERRORS, "AdminRetrainRun", role="deploy")
    responses = operation["responses"]
    del responses["200"]
    responses["202"] = {**_json(_ref("AdminRetrainJob"), "the job's first record (GET its Location to follow it)"),
                        "headers": {"Location": {"schema": {"type": "string"}, "description": "the job's URL"}}}
    operation["responses"] = {"202": responses.pop("202"), **responses}
    return operation


def admin_paths() -> dict:
    target = [MODEL, ENVIRONMENT]
    return {ADMIN_PREFIX + path: item for path, item in {
        "/status": {"get": _operation("what every environment serves: stable, canary, shadow, last rollback", [],
                                      _json(_ref("AdminStatus"), "the status"), READ_ERRORS)},
        "/models": {"get": _operation("every model's versions with status, serving environments, headline metrics",
                                      [], _json(_ref("AdminModels"), "the versions"), READ_ERRORS)},
        "/models/{model}": {"get": _operation(
            "one model: versions with metadata summary, evaluations and approvals; its deployments", [MODEL],
            _json(_ref("AdminModel"), "the model"), (*READ_ERRORS, "404"))},
        "/models/{model}/versions": {"get": _operation(
            "every version of a model, oldest first, with metadata.json's sha256 and the file digests it records",
            [MODEL], _json(_ref("AdminVersions"), "the versions"), (*READ_ERRORS, "404"))},
        "/models/{model}/versions/{version}/files/{file}": {"get": _operation(
            "the stored bytes of metadata.json or a file it lists (404 for any other file); the client checks them "
            "against the sha256 metadata.json records", [MODEL, VERSION, FILE],
            {"description": "the file's bytes",
             "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            (*READ_ERRORS, "404", "409"))},
        "/models/{model}/environments/{environment}/deploy": _change(
            "make a version the environment's stable one (gates apply)", target, "AdminDeploy"),
        "/models/{model}/environments/{environment}/canary": _change(
            "start or re-weight a canary, with steps and SLO overrides (gates apply)", target, "AdminCanary"),
        "/models/{model}/environments/{environment}/promote": _change(
            "make the running canary stable (gates apply)", target, "AdminPromote"),
        "/models/{model}/environments/{environment}/rollback": _change(
            "roll back the canary, else the stable version (to its previous one or `to`)", target, "AdminRollback"),
        "/models/{model}/environments/{environment}/shadow": _change(
            "mirror a share of requests to a version (or stop: true)", target, "AdminShadow"),
        "/models/{model}/versions/{version}/approvals": _change(
            "approve (or reject) a version for an environment, as the token's name", [MODEL, VERSION],
            "AdminApproval", role="approve"),
        "/rollouts": {"get": _operation("each route this gateway process serves: its rollout state and the windows "
                                        "its SLO judge read lately, per arm", [],
                                        _json(_ref("AdminRollouts"), "the rollouts"), READ_ERRORS)},
        "/history": {"get": _operation("the audit log, oldest first, filtered", HISTORY_QUERY,
                                       _json(_ref("AdminHistory"), "the entries"), ("400", *READ_ERRORS))},
        "/snapshots": {
            "get": _operation("every snapshot, oldest first", [], _json(_ref("AdminSnapshots"), "the snapshots"),
                              READ_ERRORS),
            **_change("save the stable version of every model in every environment", [], "AdminSnapshot")},
        "/models/{model}/environments/{environment}/drift": {"get": _operation(
            "live drift of the environment's stable version (or of ?version=), as GET /drift/{model} answers",
            [*target, DRIFT_VERSION], _json({"anyOf": [_ref("DriftReport"), _ref("DriftUnavailable")]},
                                            "the drift report, or status unavailable with the reason"),
            ("404", *READ_ERRORS))},
        "/models/{model}/environments/{environment}/quality": {"get": _operation(
            "live quality per version and arm, as GET /quality/{model} answers", [*target, SINCE],
            _json(_ref("QualityReport"), "the quality report"), ("400", "404", *READ_ERRORS))},
        "/retrain/jobs": {"get": _operation(
            "retraining jobs, newest first", [_query("model", {"type": "string", "maxLength": 64}, "only this model")],
            _json(_ref("AdminRetrainJobs"), "the jobs"), ("404", *READ_ERRORS))},
        "/retrain/jobs/{job}": {"get": _operation("one retraining job's record", [JOB],
                                                  _json(_ref("AdminRetrainJob"), "the record"),
                                                  ("404", *READ_ERRORS))},
        "/models/{model}/retrain/check": {"post": _operation(
            "which retraining triggers of retrain.toml fire now, and why (changes nothing)", [MODEL],
            _json(_ref("AdminRetrainCheck"), "the triggers"), ("400", "404", "413", *READ_ERRORS),
            "AdminRetrainCheckRequest")},
        "/models/{model}/retrain/run": {"post": _retrain_run()},
        "/snapshots/{snapshot_id}/restore": _change(
            "deploy every version the snapshot recorded (gates apply; dry_run shows the plan)", [SNAPSHOT],
            "AdminRestore"),
    }.items()}
