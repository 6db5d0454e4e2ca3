"""Keeping the served pool current: on each store change, read the registry, build a new pool off the event loop,
swap it in with one assignment, and say truthfully what failed.

A registry that cannot be read at all (corrupt, missing, unreachable) keeps the last good pool: what was served goes
on being served, and /health says why it is degraded. The rollout state of each watched (model, environment) lives
here too, across reloads, so that a swap never loses what an arm measured.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import anyio

from gateway.loader import LoadedModel
from gateway.metrics import GatewayMetrics
from gateway.pool import Pool, Problem, ReloadReport, build_pool
from gateway.rollout_state import RolloutState
from gateway.shadow import Tolerance
from modelstore.backends import ModelRepository, Revision
from modelstore.errors import StoreError
from modelstore.slo import SloLimits

log = logging.getLogger("onnxgate.gateway")

RouteKey = tuple[str, str]


class PoolKeeper:
    def __init__(self, store: ModelRepository, environments: list[str], load: Callable[..., LoadedModel],
                 metrics: GatewayMetrics, slo_defaults: SloLimits, tolerance: Tolerance,
                 settle: Callable[[], None] = lambda: None) -> None:
        """`settle` records the answers not recorded yet (AnswerLedger.settle), for the rollout states."""
        self.store = store
        self.settle = settle
        self.environments = environments
        self.load = load
        self.metrics = metrics
        self.slo_defaults = slo_defaults
        self.tolerance = tolerance
        self.pool = Pool()
        self.last_reload: ReloadReport | None = None
        self.registry_error: str | None = None  # why the last reload could not read the registry
        self.seen_revision: Revision | None = None  # the revision the last reload tried, whether it worked or not
        self.rollouts: dict[RouteKey, RolloutState] = {}
        self._lock = asyncio.Lock()
        metrics.export_shadow_distances(self.shadow_distances)

    @property
    def loaded_once(self) -> bool:
        return self.last_reload is not None and self.pool.revision is not None

    def rollout_for(self, model: str, environment: str) -> RolloutState:
        state = self.rollouts.get((model, environment))
        if state is None:
            state = self.rollouts[(model, environment)] = RolloutState(model, environment, self.slo_defaults,
                                                                       self.metrics, self.tolerance, self.settle)
        return state

    def shadow_distances(self) -> Iterator[tuple[str, str, str, float]]:
        """(model, shadow version, environment, distance) for every shadow measured, at scrape time."""
        for state in list(self.rollouts.values()):
            tally = state.shadow
            if tally is not None and (distance := tally.distance()) is not None:
                yield tally.model, tally.version, tally.environment, distance

    def problems(self) -> list[Problem]:
        registry = [Problem(None, None, None, self.registry_error)] if self.registry_error else []
        return registry + list(self.pool.problems)

    async def reload(self) -> ReloadReport:
        async with self._lock:
            started, clock = time.time(), time.perf_counter()
            self.metrics.reloads.inc()
            try:
                pool = await anyio.to_thread.run_sync(self._build)
            except StoreError as exc:
                self.metrics.reload_failures.labels("").inc()
                self.registry_error = str(exc)
                log.warning("reload failed, keeping the previous models: %s", exc)
                report = ReloadReport(started, False, str(exc), time.perf_counter() - clock)
            else:
                self._count_new_failures(pool)
                self.pool, self.registry_error = pool, None
                self._follow(pool)
                errors = "; ".join(problem.reason for problem in pool.problems) or None
                report = ReloadReport(started, errors is None, errors, time.perf_counter() - clock)
            self.last_reload = report
            return report

    def _build(self) -> Pool:
        self.seen_revision = self.store.registry.revision()
        snapshot = self.store.registry.read()
        self.seen_revision = snapshot.revision
        return build_pool(self.store, snapshot, self.environments, self.pool, self.load, self.rollout_for)

    def _count_new_failures(self, pool: Pool) -> None:
        for (model, version), failure in pool.failures.items():
            if self.pool.failures.get((model, version)) != failure:
                self.metrics.reload_failures.labels(model).inc()
                log.warning("not loading %s %s: %s", model, version, failure.error)

    def _follow(self, pool: Pool) -> None:
        """After the swap, on the event loop: rollout states follow the registry; gauges show the new pool."""
        self.metrics.models_loaded.set(len(pool.models))
        for loaded in pool.models.values():
            self.metrics.model_load_seconds.labels(loaded.name, loaded.version).set(loaded.load_seconds)
        for env, routes in pool.routes.items():
            for route in routes.values():
                self.rollout_for(route.model, env).follow(route.deployment, route.canary is not None)
                for loaded in (route.stable, route.canary, route.previous):
                    if loaded is not None:
                        loaded.metrics_for(self.metrics, env)
