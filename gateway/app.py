"""The application: routes, middleware, exception handlers, and a lifespan that loads the pool and starts the
store watcher and the event sender (and, with settings.grpc_port, the gRPC server, on the same Service in the same
event loop; with settings.admin_port, the ops API's own server, in the same event loop). Built by a factory from
settings; nothing happens at import time."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from gateway.admin.auth import TokenTable
from gateway.admin.operations import Retraining
from gateway.admin.routes import AdminEndpoints
from gateway.admin.server import AdminServer
from gateway.admin.tokens import load_tokens
from gateway.controller import RolloutController
from gateway.data_plane import DataPlane
from gateway.direct_http import DATA_PLANE_STATE
from gateway.endpoints import Endpoints
from gateway.errors import EXCEPTION_HANDLERS
from gateway.health import gateway_health
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_route
from gateway.quality_feed import QualityFeed, QualitySource, live_quality_source
from gateway.service import Service
from gateway.settings import GatewaySettings
from gateway.ui.auth import UiAccess
from gateway.ui.panels import Dashboard
from gateway.ui.routes import UiEndpoints
from gateway.watcher import StoreWatcher
from gateway.worker_metrics import flush_snapshots
from modelstore.backends import ModelRepository
from modelstore.layout import open_store
from webhooks.sender import EventSender


class GatewayApp(Starlette):
    """Starlette, with the data plane's requests sent straight to their endpoints (see gateway/data_plane.py)."""

    def __init__(self, data_plane: DataPlane, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.data_plane = data_plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.data_plane.match(scope)
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings, *, metrics_registry: CollectorRegistry | None = None,
               store: ModelRepository | None = None, quality_source: QualitySource | None = None,
               retraining: Retraining | None = None) -> GatewayApp:
    """`store`: the repository to serve (default: the one settings.store names), e.g. one carrying policy checks.
    `quality_source`: live quality figures for the SLO's quality check (gateway/quality_feed.py; default: the
    store's captured predictions joined with their labels). `retraining`: what the ops API's retraining routes
    call (retrain/ops.py, which `onnxgate serve` gives; closed at shutdown)."""
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    owned = None
    if store is None:
        store = owned = open_store(settings.store, relative_paths=True, registry_url=settings.registry_url,
                                   artifacts_url=settings.artifacts_url, artifacts_poll_s=settings.artifacts_poll_s)
    metrics = GatewayMetrics(registry)
    service = Service(settings, metrics, store)
    metrics.export_drift(lambda: service.drift.figures, settings.drift_max_feature_labels)
    controller = RolloutController(service, tick_s=settings.rollout_tick_s,
                                   quality=QualityFeed(quality_source or live_quality_source(settings.store),
                                                       settings.quality_refresh_s))
    endpoints = Endpoints(service, registry, controller.describe)
    # The ops API, when its tokens file is configured: read (and refused if invalid) here, at start-up.
    admin_routes = []
    tokens = None
    if settings.admin_tokens is not None:
        tokens = TokenTable(tuple(load_tokens(settings.admin_tokens).tokens))
        admin_routes = AdminEndpoints(store, tokens, settings.environments, endpoints,
                                      lambda: gateway_health(service.pools, service.environments, controller.describe),
                                      retraining, controller.rollouts).routes()
    # The dashboard: where the ops API is (or, made public, on the gateway's port), absent otherwise.
    if tokens is not None or settings.ui_public:
        dashboard = Dashboard(store, settings.store, settings.environments, rollouts=controller.rollouts,
                              drift=lambda: service.drift.figures, drift_enabled=settings.drift_enabled,
                              drift_thresholds=settings.drift_thresholds, refresh_drift=service.refresh_drift_figures)
        admin_routes += UiEndpoints(dashboard, UiAccess(tokens, public=settings.ui_public)).routes()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict]:
        await service.reload()
        service.capture.start()
        # What start-up built (modules, sessions, metadata) lives as long as the process: frozen out of the garbage
        # collector's generations, so that its collections only walk what requests allocate.
        gc.collect()
        gc.freeze()
        feed = store.change_feed(poll_s=settings.registry_poll_s, debounce_ms=settings.reload_debounce_ms)
        watcher = StoreWatcher(feed, service.reload, lambda: service.pools.seen_revision)
        stop_judging = asyncio.Event()
        tasks = [asyncio.create_task(watcher.run()), asyncio.create_task(controller.run(stop_judging))]
        stop_flushing = asyncio.Event()
        if settings.metrics_dir is not None:
            tasks.append(asyncio.create_task(
                flush_snapshots(registry, settings.metrics_dir, settings.metrics_flush_s, stop_flushing,
                                service.refresh_drift_figures)))
        tasks.append(asyncio.create_task(service.drift.run(stop_flushing)))
        stop_sending = threading.Event()
        if settings.events_enabled:  # on a thread: its POSTs and file writes block
            sender = EventSender(settings.store, registry=store.registry)
            tasks.append(asyncio.create_task(asyncio.to_thread(sender.run, stop_sending)))
        grpc_server = admin_server = None
        try:
            if settings.grpc_port is not None:
                from gateway.grpc_service import GrpcServer  # onnxgate[grpc]: imported only when asked for

                grpc_server = await GrpcServer.start(service, settings)
                app.state.grpc_port = grpc_server.port
            if settings.admin_port is not None:
                admin_server = await AdminServer.start(
                    Starlette(routes=admin_routes, exception_handlers=EXCEPTION_HANDLERS), settings)
                app.state.admin_port = admin_server.port
            yield {DATA_PLANE_STATE: endpoints.data_plane}  # for the HTTP protocol's direct path
        finally:
            if admin_server is not None:
                await admin_server.stop()
            if grpc_server is not None:
                await grpc_server.stop()
            stop_judging.set()
            stop_flushing.set()
            stop_sending.set()
            watcher.stop()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            service.close()
            if retraining is not None:
                await asyncio.to_thread(retraining.close)
            if owned is not None:
                owned.close()

    app = GatewayApp(
        endpoints.data_plane,
        routes=[*endpoints.routes(), *admin_routes,
                openapi_route(settings.routing_header, admin=settings.admin_tokens is not None)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.controller = controller
    return app


def app_from_env() -> GatewayApp:
    """Factory for `uvicorn --factory gateway.app:app_from_env` (several workers): settings from ONNXGATE_* vars."""
    return create_app(GatewaySettings())
