"""The ops API's endpoints, HTTP only: decode the request, call the store's library functions (the same ones the CLI
calls, through modelstore.transitions, so gates and approvals apply and every change is audited with the token's name
as actor and the body's reason), answer JSON. Store work runs on a worker thread: it reads files and takes locks.

Mutations answer what the CLI's --json prints: the outcome (action, before, after, details, the gates' checks) and
`dry_run`. Every route is wrapped in a Guard (gateway/admin/auth.py) with the permission it needs.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response

from gateway.admin.artifacts import version_file, version_listing
from gateway.admin.auth import Guard, Permission, TokenTable, token_of
from gateway.admin.operations import Monitoring, NoRetraining, Retraining
from gateway.admin.requests import (
    MAX_BODY_BYTES,
    ApprovalBody,
    B,
    CanaryBody,
    DeployBody,
    PromoteBody,
    RestoreBody,
    RetrainCheckBody,
    RetrainRunBody,
    RollbackBody,
    ShadowBody,
    SnapshotBody,
    parse_body,
)
from gateway.data_plane import read_body
from gateway.errors import InvalidInput, UnknownEnvironment, admin_error_response
from modelstore import overview
from modelstore.approvals import approve
from modelstore.backends import ModelRepository
from modelstore.deployments import Deploy
from modelstore.rollout import promote, rollback_environment, start_canary, start_shadow, stop_shadow
from modelstore.snapshots import create_snapshot, restore_snapshot
from modelstore.transitions import Change, Outcome, transition
from modelstore.versions import shown

ADMIN_PREFIX = "/admin/v1"
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SNAPSHOT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_HISTORY_LIMIT = 10_000
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

Handler = Callable[[Request], Awaitable[Response]]


def json_response(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def outcome_json(outcome: Outcome, dry_run: bool) -> Response:
    return json_response({**dataclasses.asdict(outcome), "dry_run": dry_run})


def checked_environment(environment: str) -> str:
    if not re.fullmatch(ENVIRONMENT_PATTERN, environment):
        raise UnknownEnvironment(f"no environment {shown(environment)}: environment names are 1-64 letters, digits, "
                                 "'_', '.' or '-'")
    return environment


class AdminEndpoints:
    def __init__(self, store: ModelRepository, tokens: TokenTable, environments: list[str], monitoring: Monitoring,
                 serving: Callable[[], dict] | None = None, retraining: Retraining | None = None,
                 rollouts: Callable[[], list[dict]] | None = None) -> None:
        """`serving`: what this gateway process serves now (its /health report, rollout state included);
        `monitoring`: the gateway's live drift and quality; `retraining`: retrain/ops.py, given by `onnxgate serve`
        (without it the retraining routes answer 503); `rollouts`: each served route's rollout report with the
        windows its judge read lately (gateway.controller.RolloutController.rollouts)."""
        self.store = store
        self.tokens = tokens
        self.environments = environments
        self.monitoring = monitoring
        self.serving = serving
        self.rollouts = rollouts
        self.retraining: Retraining = retraining if retraining is not None else NoRetraining()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Permission, Handler]] = [
            ("/status", "GET", "read", self.status),
            ("/models", "GET", "read", self.models),
            ("/models/{model}", "GET", "read", self.model),
            # a version's files for remote loaders (gateway/admin/artifacts.py)
            ("/models/{model}/versions", "GET", "read", self.versions),
            ("/models/{model}/versions/{version}/files/{file}", "GET", "read", self.version_file),
            ("/models/{model}/environments/{environment}/deploy", "POST", "deploy", self.deploy),
            ("/models/{model}/environments/{environment}/canary", "POST", "deploy", self.canary),
            ("/models/{model}/environments/{environment}/promote", "POST", "deploy", self.promote),
            ("/models/{model}/environments/{environment}/rollback", "POST", "deploy", self.rollback),
            ("/models/{model}/environments/{environment}/shadow", "POST", "deploy", self.shadow),
            ("/models/{model}/versions/{version}/approvals", "POST", "approve", self.approval),
            ("/rollouts", "GET", "read", self.rollout_windows),
            ("/history", "GET", "read", self.history),
            ("/snapshots", "GET", "read", self.snapshots),
            ("/snapshots", "POST", "deploy", self.snapshot_create),
            ("/snapshots/{snapshot_id}/restore", "POST", "deploy", self.snapshot_restore),
            ("/models/{model}/environments/{environment}/drift", "GET", "read", self.drift),
            ("/models/{model}/environments/{environment}/quality", "GET", "read", self.quality),
            ("/retrain/jobs", "GET", "read", self.retrain_jobs),
            ("/retrain/jobs/{job}", "GET", "read", self.retrain_job),
            ("/models/{model}/retrain/check", "POST", "read", self.retrain_check),
            ("/models/{model}/retrain/run", "POST", "deploy", self.retrain_run),
        ]
        return [Route(ADMIN_PREFIX + path, Guard(request_response(self.answering(handler)), permission, self.tokens),
                      methods=[method]) for path, method, permission, handler in table]

    @staticmethod
    def answering(handler: Handler) -> Handler:
        """The handler, with every failure answered through gateway.errors' ops API mapping."""
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure gets its JSON answer; unexpected ones are logged
                return admin_error_response(exc, request.method, request.url.path)

        endpoint.__name__ = handler.__name__
        return endpoint

    async def body(self, request: Request, model: type[B]) -> B:
        length = request.headers.get("content-length")
        raw = await read_body(request.receive, length.encode("latin-1") if length is not None else None,
                              MAX_BODY_BYTES)
        return parse_body(raw, model)

    @staticmethod
    def change(request: Request, reason: str | None) -> Change:
        return Change(actor=token_of(request.scope).name, reason=reason)

    @staticmethod
    def target(request: Request) -> tuple[str, str]:
        return request.path_params["model"], checked_environment(request.path_params["environment"])

    # -- reads ---------------------------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        def read() -> dict:
            data = self.store.registry.read().state
            return {"served_environments": self.environments, "deployments": overview.status_rows(data),
                    "invalid": overview.invalid_deployments(data)}

        status = await run_in_threadpool(read)
        if self.serving is not None:
            status["gateway"] = self.serving()
        return json_response(status)

    async def models(self, request: Request) -> Response:
        def read() -> dict:
            registry = self.store.registry.read().state
            return {"versions": overview.version_rows(self.store, registry, self.store.list_models()),
                    "invalid": [entry.describe() for entry in registry.invalid]}

        return json_response(await run_in_threadpool(read))

    async def model(self, request: Request) -> Response:
        return json_response(await run_in_threadpool(overview.model_detail, self.store, request.path_params["model"]))

    async def rollout_windows(self, request: Request) -> Response:
        return json_response({"rollouts": self.rollouts() if self.rollouts is not None else []})
    async def versions(self, request: Request) -> Response:
        return json_response(await run_in_threadpool(version_listing, self.store, request.path_params["model"]))

    async def version_file(self, request: Request) -> Response:
        params = request.path_params
        data = await run_in_threadpool(version_file, self.store, params["model"], params["version"], params["file"])
        return Response(data, media_type=OCTET_STREAM)

    async def history(self, request: Request) -> Response:
        query = request.query_params
        limit_text = query.get("limit", str(overview.HISTORY_LIMIT))
        if not limit_text.isdigit() or not 0 < int(limit_text) <= MAX_HISTORY_LIMIT:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_HISTORY_LIMIT}, not {shown(limit_text)}")
        entries = await run_in_threadpool(overview.history, self.store, model=query.get("model") or None,
                                          environment=query.get("environment") or None,
                                          event=query.get("event") or None, limit=int(limit_text))
        return json_response({"entries": entries})

    async def snapshots(self, request: Request) -> Response:
        def read() -> list[dict]:
            return [{"id": snapshot_id, **record}
                    for snapshot_id, record in overview.snapshots(self.store.registry.read().state)]

        return json_response({"snapshots": await run_in_threadpool(read)})

    # -- monitoring and retraining ----------------------------------------------------------------------------------

    async def drift(self, request: Request) -> Response:
        model, environment = self.target(request)
        return json_response(await self.monitoring.drift_report(model, environment,
                                                                request.query_params.get("version")))

    async def quality(self, request: Request) -> Response:
        model, environment = self.target(request)
        return json_response(await self.monitoring.quality_report(model, environment,
                                                                  request.query_params.get("since")))

    async def retrain_jobs(self, request: Request) -> Response:
        model = request.query_params.get("model") or None
        return json_response({"jobs": await run_in_threadpool(self.retraining.jobs, model)})

    async def retrain_job(self, request: Request) -> Response:
        return json_response(await run_in_threadpool(self.retraining.job, request.path_params["job"]))

    async def retrain_check(self, request: Request) -> Response:
        await self.body(request, RetrainCheckBody)
        return json_response(await run_in_threadpool(self.retraining.check, request.path_params["model"]))

    async def retrain_run(self, request: Request) -> Response:
        """202: the job runs on in the background (GET /retrain/jobs/{job} follows it)."""
        body = await self.body(request, RetrainRunBody)
        record = await run_in_threadpool(self.retraining.start, request.path_params["model"],
                                         token_of(request.scope).name, body.reason)
        response = json_response(record, status=202)
        response.headers["Location"] = f"{ADMIN_PREFIX}/retrain/jobs/{record['id']}"
        return response

    # -- changes -------------------------------------------------------------------------------------------------

    async def deploy(self, request: Request) -> Response:
        model, environment = self.target(request)
        body = await self.body(request, DeployBody)
        outcome = await run_in_threadpool(transition, self.store, Deploy(model, environment, body.version),
                                          self.change(request, body.reason), dry_run=body.dry_run)
        return outcome_json(outcome, body.dry_run)

    async def canary(self, request: Request) -> Response:
        model, environment = self.target(request)
        body = await self.body(request, CanaryBody)
        weight = body.weight if body.weight is not None else (body.steps[0] if body.steps else None)
        if weight is None:
            raise InvalidInput("give weight, or steps to start at the first step")
        slo = body.slo_policy()
        outcome = await run_in_threadpool(
            lambda: start_canary(self.store, model, body.version, environment, weight, body.steps, body.interval_s,
                                 self.change(request, body.reason), slo=slo, dry_run=body.dry_run))
        return outcome_json(outcome, body.dry_run)

    async def promote(self, request: Request) -> Response:
        model, environment = self.target(request)
        body = await self.body(request, PromoteBody)
        outcome = await run_in_threadpool(
            lambda: promote(self.store, model, environment, self.change(request, body.reason), bake_s=body.bake_s,
                            dry_run=body.dry_run))
        return outcome_json(outcome, body.dry_run)

    async def rollback(self, request: Request) -> Response:
        model, environment = self.target(request)
        body = await self.body(request, RollbackBody)
        outcome = await run_in_threadpool(
            lambda: rollback_environment(self.store, model, environment, self.change(request, body.reason),
                                         to=body.to, dry_run=body.dry_run))
        return outcome_json(outcome, body.dry_run)

    async def shadow(self, request: Request) -> Response:
        model, environment = self.target(request)
        body = await self.body(request, ShadowBody)
        change = self.change(request, body.reason)
        if body.stop:
            if body.version is not None:
                raise InvalidInput("stop takes no version: it stops whatever shadow runs in the environment")
            outcome = await run_in_threadpool(
                lambda: stop_shadow(self.store, model, environment, change, dry_run=body.dry_run))
        else:
            if body.version is None:
                raise InvalidInput("give the version to shadow, or stop: true")
            outcome = await run_in_threadpool(
                lambda: start_shadow(self.store, model, body.version, environment, body.weight, change,
                                     dry_run=body.dry_run))
        return outcome_json(outcome, body.dry_run)

    async def approval(self, request: Request) -> Response:
        model, version = request.path_params["model"], request.path_params["version"]
        body = await self.body(request, ApprovalBody)
        environment = checked_environment(body.environment)
        outcome = await run_in_threadpool(
            lambda: approve(self.store, model, version, environment, self.change(request, body.reason),
                            status="rejected" if body.reject else "approved",
                            kind="rollback" if body.rollback else "deploy"))
        return outcome_json(outcome, False)

    async def snapshot_create(self, request: Request) -> Response:
        body = await self.body(request, SnapshotBody)
        outcome = await run_in_threadpool(create_snapshot, self.store, body.name, self.change(request, body.reason))
        return outcome_json(outcome, False)

    async def snapshot_restore(self, request: Request) -> Response:
        body = await self.body(request, RestoreBody)
        snapshot_id = request.path_params["snapshot_id"]
        outcome = await run_in_threadpool(
            lambda: restore_snapshot(self.store, snapshot_id, self.change(request, body.reason), dry_run=body.dry_run))
        return outcome_json(outcome, body.dry_run)
