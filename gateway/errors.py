"""Gateway errors, and the one table that turns them (and store errors) into JSON `{"error": "..."}` responses."""
from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelstore.errors import (
    ChangeRefused,
    DuplicateVersion,
    GateRefused,
    IntegrityError,
    InvalidMetadata,
    InvalidName,
    InvalidSloPolicy,
    InvalidTransition,
    ModelNotFound,
    NotDeployed,
    NotFound,
    RevisionConflict,
    SnapshotNotFound,
    StoreError,
    VersionNotFound,
)
from modelstore.versions import shown

log = logging.getLogger("onnxgate.gateway")


class GatewayError(Exception):
    """Base class: a request the gateway cannot answer, with the HTTP status that says why."""

    status_code = 500
    outcome = "error"


class InvalidInput(GatewayError):
    """The body is not JSON, or the inputs do not fit the model's signature."""

    status_code = 400
    outcome = "invalid_input"


class PayloadTooLarge(GatewayError):
    status_code = 413
    outcome = "too_large"


class UnsupportedMediaType(GatewayError):
    """A body whose Content-Type says it is not JSON."""

    status_code = 415
    outcome = "invalid_input"


class BatchTooLarge(GatewayError):
    status_code = 413
    outcome = "too_large"


class UnknownEnvironment(GatewayError):
    status_code = 404
    outcome = "not_found"


class UnknownFile(GatewayError):
    """A file the version's metadata.json does not list: the ops API serves no other file of a version directory."""

    status_code = 404
    outcome = "not_found"


class Unauthorized(GatewayError):
    """An ops API request without a valid bearer token (answered with WWW-Authenticate: Bearer)."""

    status_code = 401
    outcome = "unauthorized"


class Forbidden(GatewayError):
    """An ops API request whose token's role does not allow the operation."""

    status_code = 403
    outcome = "forbidden"


class VersionNotPinnable(GatewayError):
    """A pin of a registered version this gateway may not serve: never deployed here, or rolled back."""

    status_code = 403
    outcome = "forbidden"


class PinnedCacheBusy(GatewayError):
    """Every slot for on-demand pinned versions holds one loaded too recently to give way."""

    status_code = 503
    outcome = "unavailable"


class ModelUnavailable(GatewayError):
    """The model is deployed but no session for it could be loaded (integrity failure, refused by onnxruntime)."""

    status_code = 503
    outcome = "unavailable"


class ModelRunFailed(GatewayError):
    """onnxruntime failed on inputs that passed the signature check: a server-side problem."""

    status_code = 500
    outcome = "error"


# The one mapping from store errors to statuses; GatewayError subclasses carry their own.
STORE_STATUS: tuple[tuple[type[StoreError], int], ...] = (
    (ModelNotFound, 404),
    (VersionNotFound, 404),
    (InvalidName, 404),  # a name that cannot exist is an unknown name
    (NotFound, 404),
    (NotDeployed, 503),
    (IntegrityError, 503),
    (InvalidMetadata, 503),
    (StoreError, 503),
)


# The ops API changes the store: a change the state or the gates refuse is the caller's conflict (409), an SLO out of
# range is unprocessable (422), a name or deployment that does not exist is 404, and a version whose files fail their
# checks cannot be deployed (409). What is left (an unreadable registry or policy) is the server's problem (503).
ADMIN_STORE_STATUS: tuple[tuple[type[StoreError], int], ...] = (
    (ModelNotFound, 404),
    (VersionNotFound, 404),
    (InvalidName, 404),
    (NotDeployed, 404),
    (NotFound, 404),  # a retraining job, a model retrain.toml does not configure
    (SnapshotNotFound, 404),
    (InvalidSloPolicy, 422),
    (ChangeRefused, 409),  # GateRefused among them: its verdict goes into the body
    (InvalidTransition, 409),  # a retraining job of the model already running among them
    (RevisionConflict, 409),
    (DuplicateVersion, 409),
    (IntegrityError, 409),
    (StoreError, 503),
)


def status_for(error: Exception, table: tuple[tuple[type[StoreError], int], ...] = STORE_STATUS) -> int:
    if isinstance(error, GatewayError):
        return error.status_code
    for error_type, status in table:
        if isinstance(error, error_type):
            return status
    return 500


def outcome_for(error: Exception) -> str:
    if isinstance(error, GatewayError):
        return error.outcome
    return "not_found" if status_for(error) == 404 else "unavailable"


def error_answer(error: Exception, method: str, path: str) -> tuple[int, str]:
    """The status and the `error` message for a failed request, logged once when it is the server's fault. An
    unexpected exception answers a plain 500 (its traceback goes to the log, never to the caller)."""
    if isinstance(error, GatewayError | StoreError):
        status = status_for(error)
        if status >= 500 and not isinstance(error, ModelUnavailable | StoreError):
            log.error("%s %s failed: %s", method, path, error)
        return status, str(error)
    log.error("%s %s failed", method, path, exc_info=error)
    return 500, "internal server error"


def json_error(status: int, message: str, **extra: object) -> Response:
    return Response(orjson.dumps({"error": message, **extra}), status_code=status, media_type="application/json")


def admin_error_response(error: Exception, method: str, path: str) -> Response:
    """An ops API failure: `{"error": ...}` with the status of ADMIN_STORE_STATUS; a gate's refusal also carries its
    verdict (every check, with its value and limit) as `verdict`. Unexpected exceptions: a logged 500, no traceback."""
    if isinstance(error, GatewayError | StoreError):
        status = status_for(error, ADMIN_STORE_STATUS)
        if status >= 500:
            log.error("%s %s failed: %s", method, path, error)
        extra = {"verdict": error.verdict} if isinstance(error, GateRefused) else {}
        return json_error(status, str(error), **extra)
    log.error("%s %s failed", method, path, exc_info=error)
    return json_error(500, "internal server error")


async def handle_error(request: Request, error: Exception) -> Response:
    return json_error(*error_answer(error, request.method, request.url.path))


async def handle_http_exception(request: Request, error: HTTPException) -> Response:
    """Starlette's own refusals (no such route: 404; a method the route does not take: 405), as JSON."""
    if error.status_code == 404:
        message = f"no route for {request.method} {shown(request.url.path)}"
    elif error.status_code == 405:
        message = f"method {request.method} is not allowed on {shown(request.url.path)}"
    else:
        message = error.detail
    response = json_error(error.status_code, message)
    if error.headers:
        response.headers.update(error.headers)  # e.g. 405's Allow
    return response


# Exception: anything unexpected outside the data plane gets the same JSON 500 (Starlette's own is plain text).
EXCEPTION_HANDLERS = {GatewayError: handle_error, StoreError: handle_error, HTTPException: handle_http_exception,
                      Exception: handle_error}
