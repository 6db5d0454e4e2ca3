"""`onnxgate serve --env ENV [--env ENV2 ...]`: run the gateway under uvicorn."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from onnxgate.commands.common import add_store_argument
from onnxgate.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve the deployed models over HTTP (/predict, /health, /metrics, /v2)")
    parser.add_argument("--env", action="append", required=True, metavar="ENV", dest="environments",
                        help="environment to serve; repeat for several (the first is the default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, metavar="N",
                        help="also serve the Open Inference Protocol over gRPC (KServe v2 GRPCInferenceService) on "
                        "this port; needs pip install 'onnxgate[grpc]' (default: ONNXGATE_GRPC_PORT, else no gRPC)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each watches the store)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs "
                        "throughput)")
    parser.add_argument("--slo-file", type=Path, metavar="FILE",
                        help='JSON with the SLO judge\'s defaults, e.g. {"window_s": 10, "max_error_rate": 0.01, '
                        '"max_latency_ratio": 1.5}; a deployment\'s own SLO (onnxgate canary --window ...) overrides it')
    parser.add_argument("--routing-header", metavar="NAME",
                        help="the request header that carries the routing key, set by your proxy or auth layer (e.g. "
                        "X-User); without it no client header is trusted and the canary split is random, not sticky "
                        "(default: ONNXGATE_ROUTING_HEADER, else none)")
    parser.add_argument("--admin-tokens", type=Path, metavar="FILE",
                        help="serve the ops API at /admin/v1/ with the tokens of FILE (onnxgate token create); "
                        "default: ONNXGATE_ADMIN_TOKENS, else no ops API")
    parser.add_argument("--admin-port", type=int, metavar="N",
                        help="also serve the ops API on this port (e.g. one only your operators' network reaches); "
                        "needs --admin-tokens")
    parser.add_argument("--admin-host", metavar="HOST", help="the address --admin-port listens on (default: --host)")
    parser.add_argument("--ui-public", action="store_true",
                        help="serve the dashboard at /ui without a token (a private network only); without it /ui "
                        "needs a token with the read role and exists only with --admin-tokens")
    add_store_argument(parser)
    parser.set_defaults(run=run)


def settings_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ONNXGATE_* variables that carry the command line into every worker's GatewaySettings."""
    from modelstore.layout import resolve_store_root

    variables = {
        "ONNXGATE_STORE": str(resolve_store_root(args.store).resolve()),
        "ONNXGATE_ENVIRONMENTS": json.dumps(args.environments),
        "ONNXGATE_HOST": args.host,
        "ONNXGATE_PORT": str(args.port),
        "ONNXGATE_WORKERS": str(args.workers),
        "ONNXGATE_ACCESS_LOG": "true" if args.access_log else "false",
    }
    if args.registry:
        variables["ONNXGATE_REGISTRY_URL"] = checked_registry_url(args.registry)
    if args.artifacts:
        variables["ONNXGATE_ARTIFACTS_URL"] = args.artifacts
    if args.slo_file is not None:
        variables["ONNXGATE_SLO"] = json.dumps(read_slo_file(args.slo_file))
    if args.routing_header is not None:
        variables["ONNXGATE_ROUTING_HEADER"] = checked_routing_header(args.routing_header)
    if args.grpc_port is not None:
        if not 0 <= args.grpc_port <= 65535:
            raise UsageError(f"--grpc-port {args.grpc_port}: not a port number (0-65535)")
        variables["ONNXGATE_GRPC_PORT"] = str(args.grpc_port)
    if args.admin_tokens is not None:
        variables["ONNXGATE_ADMIN_TOKENS"] = str(args.admin_tokens.resolve())
    if args.admin_port is not None:
        if not 0 <= args.admin_port <= 65535:
            raise UsageError(f"--admin-port {args.admin_port}: not a port number (0-65535)")
        variables["ONNXGATE_ADMIN_PORT"] = str(args.admin_port)
    if args.admin_host is not None:
        variables["ONNXGATE_ADMIN_HOST"] = args.admin_host
    if args.ui_public:
        variables["ONNXGATE_UI_PUBLIC"] = "true"
    return variables


def check_admin(variables: dict[str, str], workers: int) -> None:
    """The ops API's options, checked before any worker starts: the tokens file valid, a port only with it."""
    from gateway.admin.tokens import InvalidTokens, load_tokens

    tokens = variables.get("ONNXGATE_ADMIN_TOKENS", os.environ.get("ONNXGATE_ADMIN_TOKENS", "")).strip()
    port = variables.get("ONNXGATE_ADMIN_PORT", os.environ.get("ONNXGATE_ADMIN_PORT", "")).strip()
    if port and not tokens:
        raise UsageError("--admin-port needs --admin-tokens FILE (or ONNXGATE_ADMIN_TOKENS)")
    if port == "0" and workers > 1:
        raise UsageError("--admin-port 0 (any free port) would give each worker its own port; name one with --workers")
    if tokens:
        try:
            load_tokens(Path(tokens))
        except InvalidTokens as exc:
            raise UsageError(str(exc)) from None


GRPC_INSTALL_HINT = "pip install 'onnxgate[grpc]'"


def require_grpc() -> None:
    """The gRPC extra installed, checked before any worker starts."""
    try:
        import gateway.grpc_service  # noqa: F401 - imports grpcio and tritonclient's gRPC stubs
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("grpc", "tritonclient", "google"):
            raise
        raise UsageError(f"--grpc-port needs grpcio and tritonclient[grpc] ({exc.name} is not installed): "
                         f"{GRPC_INSTALL_HINT}") from None


def checked_registry_url(url: str) -> str:
    """A registry URL onnxgate can use (its scheme, the postgres extra installed), checked before any worker starts;
    whether the database answers is the gateway's to report (/health), as it is when the database goes away later."""
    from modelstore.errors import StoreError
    from modelstore.layout import open_registry

    try:
        open_registry(url).close()
    except StoreError as exc:
        raise UsageError(f"--registry: {exc}") from None
    return url


def checked_routing_header(name: str) -> str:
    """The header name, checked here so that a typo fails the command rather than every worker."""
    from pydantic import ValidationError

    from gateway.settings import GatewaySettings

    try:
        GatewaySettings(routing_header=name)
    except ValidationError as exc:
        raise UsageError(f"--routing-header {name!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return name


def read_slo_file(path: Path) -> dict:
    """The file's SLO fields, checked here so that a typo fails the command rather than every worker."""
    from pydantic import ValidationError

    from modelstore.slo import SloPolicy

    try:
        policy = SloPolicy.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read --slo-file {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise UsageError(f"--slo-file {path} is not a valid SLO policy: {exc.errors()[0]['msg']} "
                         f"at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'}") from None
    return policy.checked().given()


def app_from_env() -> object:
    """Each worker's application (uvicorn --factory): settings from ONNXGATE_* vars, and the ops API's retraining
    routes backed by retrain/ (which the gateway cannot import)."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from retrain.ops import RetrainOperations

    settings = GatewaySettings()
    return create_app(settings, retraining=RetrainOperations(settings.store))


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    import uvicorn

    from gateway.app import create_app
    from gateway.server import uvicorn_options
    from gateway.settings import GatewaySettings
    from retrain.ops import RetrainOperations  # its retrain.toml parts load on first use: serving needs no croniter

    variables = settings_environment(args)
    grpc_port = variables.get("ONNXGATE_GRPC_PORT", os.environ.get("ONNXGATE_GRPC_PORT", "")).strip()
    if grpc_port:  # from --grpc-port or ONNXGATE_GRPC_PORT: checked before anything changes
        require_grpc()
        if grpc_port == "0" and args.workers > 1:
            raise UsageError("--grpc-port 0 (any free port) would give each worker its own port; name one with --workers")
    check_admin(variables, args.workers)
    os.environ.update(variables)
    created_metrics_dir = None
    if args.workers > 1 and not os.environ.get("ONNXGATE_METRICS_DIR"):
        # where the workers' metrics snapshots meet, so that /metrics adds them up (gateway/worker_metrics.py)
        created_metrics_dir = os.environ["ONNXGATE_METRICS_DIR"] = tempfile.mkdtemp(prefix="onnxgate-metrics-")
    settings = GatewaySettings()
    if args.workers == 1:
        app: object = create_app(settings, retraining=RetrainOperations(settings.store))
        factory = False
    else:
        app, factory = "onnxgate.commands.serve:app_from_env", True
    try:
        uvicorn.run(app, factory=factory, host=args.host, port=args.port, workers=args.workers,
                    access_log=args.access_log, log_level="info", timeout_graceful_shutdown=10,
                    **uvicorn_options(settings))
    finally:
        if created_metrics_dir is not None:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)
    return 0
