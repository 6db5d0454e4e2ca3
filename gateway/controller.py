"""The rollout controller: every tick, ask each watched route's rollout state what to do, and do it through the
transition API (modelstore.transitions), as any other caller would: the store's checks apply to the gateway's own
promotions too, and every change is audited with the gateway as actor.

A rollback happens in two steps: the rollout state withholds the bad version at once, in memory (the next request
already avoids it); then the operation records it, with the measured figures, in the registry. Every other worker and
process converges through its change feed. The operations carry the state the judge saw, so workers that reach the
same decision apply it once. A write that fails (an unreadable registry, a full disk) is retried on the next tick,
the withhold staying. A promotion the governance gates refuse (policy.toml) leaves the canary where it is, says why
in /health, and is tried again after `gate_retry_s` (each refusal is a `deployment_denied` audit entry).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import anyio

from gateway.judge import Decision
from gateway.pool import Pool, Route
from gateway.pool_keeper import PoolKeeper
from gateway.quality_feed import QualityFeed
from gateway.rollout_state import RolloutState
from gateway.service import Service
from modelstore.clock import epoch_seconds
from modelstore.errors import ChangeRefused, GateRefused, InvalidPolicy, StoreError
from modelstore.rollout import AdvanceCanary, EndBake, RollbackBake, RollbackCanary
from modelstore.slo import resolve_limits
from modelstore.transitions import Change, Operation, Outcome, transition

log = logging.getLogger("onnxgate.gateway")


def reason_for(decision: Decision) -> str:
    verdict = decision.verdict
    reasons = "; ".join(verdict.reasons) if verdict else ""
    if decision.action == "rollback_canary":
        return f"automatic rollback of canary {decision.version}: {reasons}"
    if decision.action == "rollback_bake":
        return f"automatic rollback of {decision.version} during its bake period: {reasons}"
    if decision.action == "end_bake":
        return f"bake period of {decision.version} over without a breach"
    if decision.action == "promote":
        return f"automatic promotion of {decision.version}: healthy through the interval at {decision.expected_weight:g}%"
    return (f"automatic step of canary {decision.version}: {decision.expected_weight:g}% -> "
            f"{decision.next_weight:g}% after a healthy interval")


class RolloutController:
    def __init__(self, service: Service, *, tick_s: float, actor: str | None = None,
                 quality: QualityFeed | None = None) -> None:
        self.service = service
        self.quality = quality if quality is not None else QualityFeed()
        self.pools: PoolKeeper = service.pools
        self.tick_s = tick_s
        self.gate_retry_s = service.settings.gate_retry_s
        self.actor = actor or f"gateway@{socket.gethostname()}:{os.getpid()}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
            if stop.is_set():
                return
            try:
                await self.tick(time.time())
            except Exception:  # a bug here must not stop judging; the next tick tries again
                log.exception("rollout tick failed")

    async def tick(self, now: float) -> list[tuple[Decision, Outcome | None]]:
        """Judge every watched route; apply decisions; reload at once if the registry changed. Returns what was
        applied (Outcome None when the write failed and will be retried, or was refused)."""
        pool = self.pools.pool
        applied = []
        for routes in pool.routes.values():
            for route in routes.values():
                if route.rollout is None:
                    continue
                try:
                    await self._refresh_quality(route, now)
                    decision = route.rollout.decide(route.deployment, self._canary_failure(route, pool), now)
                    if route.rollout.waits_after_refusal(decision, now, self.gate_retry_s):
                        continue
                    if decision.action != "keep":
                        applied.append((decision, await self.apply(route, route.rollout, decision)))
                except Exception:  # one route's bug must not stop the others' judging
                    log.exception("rollout of %s in %s failed", route.model, route.environment)
        if any(outcome is not None for _, outcome in applied):  # a no-op too: another worker changed the registry
            await self.service.reload()
        return applied

    async def _refresh_quality(self, route: Route, now: float) -> None:
        """The canary's and stable's live quality since the canary started, when its SLO judges quality."""
        canary = route.deployment.canary
        if canary is None or resolve_limits(route.deployment.slo, self.pools.slo_defaults).max_quality_drop is None:
            return
        since_s = max(0.0, now - epoch_seconds(canary.started_at))
        route.rollout.quality = await self.quality.figures(route.model, route.environment, since_s, now)

    @staticmethod
    def _canary_failure(route: Route, pool: Pool) -> str | None:
        canary = route.deployment.canary
        if canary is None or route.canary is not None:
            return None
        failure = pool.failures.get((route.model, canary.version))
        return failure.error if failure is not None else None

    def operation(self, route: Route, decision: Decision) -> Operation:
        model, environment = route.model, route.environment
        if decision.action == "rollback_canary":
            return RollbackCanary(model, environment, decision.details(), expected_version=decision.version)
        if decision.action == "rollback_bake":
            return RollbackBake(model, environment, decision.details(), expected_version=decision.version)
        if decision.action == "end_bake":
            return EndBake(model, environment, expected_version=decision.version, figures=decision.details())
        return AdvanceCanary(model, environment, decision.expected_weight, expected_version=decision.version,
                             default_bake_s=self.pools.slo_defaults.bake_s)

    async def apply(self, route: Route, rollout: RolloutState, decision: Decision) -> Outcome | None:
        if decision.action in ("rollback_canary", "rollback_bake"):
            rollout.withhold(decision.version, route.deployment, route.canary is not None)
        change = Change(actor=self.actor, reason=reason_for(decision))
        try:
            outcome = await anyio.to_thread.run_sync(transition, self.service.store, self.operation(route, decision),
                                                     change)
        except (ChangeRefused, InvalidPolicy) as exc:  # an unreadable policy refuses too, until it is fixed
            log.warning("rollout: %s of %s in %s refused: %s", decision.action, route.model, route.environment, exc)
            rollout.refused(decision, str(exc), exc.verdict if isinstance(exc, GateRefused) else {}, time.time())
            return None
        except StoreError as exc:
            log.warning("rollout: could not record %s of %s in %s (retrying next tick): %s", decision.action,
                        route.model, route.environment, exc)
            rollout.pending = decision
            return None
        if outcome.changed:
            self._count(route, decision)
            log.warning("rollout: %s %s in %s: %s", outcome.action, route.model, route.environment, change.reason)
        return outcome

    def _count(self, route: Route, decision: Decision) -> None:
        metrics = self.service.metrics
        if decision.action in ("rollback_canary", "rollback_bake"):
            kind = "canary" if decision.action == "rollback_canary" else "bake"
            causes = decision.verdict.causes if decision.verdict else ()
            metrics.rollbacks.labels(route.model, route.environment, kind, causes[0] if causes else "unknown").inc()
        else:
            metrics.rollout_steps.labels(route.model, route.environment, decision.action).inc()

    def describe(self, route: Route) -> dict | None:
        """The rollout part of /health for one route; None when nothing was ever rolled out there."""
        deployment = route.deployment
        state = self.pools.rollouts.get((route.model, route.environment))
        report = state.describe(deployment, route.canary is not None, route.shadow is not None, time.time()) if state else {}
        if deployment.last_rollback:
            report["last_rollback"] = deployment.last_rollback
        return report or None

    def rollouts(self) -> list[dict]:
        """Every served route: what it serves, its rollout report (as in /health) and the windows its judge read
        lately, oldest first (GET /admin/v1/rollouts and the dashboard). This worker's view: each worker judges the
        traffic it served."""
        pool = self.pools.pool
        rows = []
        for environment, routes in sorted(pool.routes.items()):
            for model, route in sorted(routes.items()):
                state = self.pools.rollouts.get((model, environment))
                rows.append({"model": model, "environment": environment, "version": route.deployment.version,
                             "loaded": route.stable is not None, "rollout": self.describe(route) or {},
                             "windows": [window.as_json() for window in state.judge.recent] if state else []})
        return rows
