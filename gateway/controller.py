"""The rollout controller: every tick, judge each served route and apply what the judge decides.

Per (model, environment), one RolloutJudge (gateway/slo.py) reads the service's traffic windows. A rollback happens
in two steps:
1. The service withholds the bad version at once, in memory: the next request already avoids it.
2. modelstore.rollout records the rollback, with the measured figures, in registry.json and the audit log, under
   the lock. Every other worker and process converges through its store watcher.

The registry operations are compare-and-set, so workers that reach the same decision apply it once. A canary whose
version failed to load is rolled back the same way. When the write fails (an unreadable registry, a full disk), the
decision is retried on the next tick; the withhold stays.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time

import anyio

from gateway.pool import Pool, Route, bake_active
from gateway.service import Service
from gateway.slo import Decision, RolloutJudge, Verdict, shadow_verdict
from modelstore.deployments import Change
from modelstore.errors import StoreError
from modelstore.registry import CanaryState
from modelstore.rollout import Outcome, advance_canary_step, rollback_bake, rollback_canary

log = logging.getLogger("onnxgate.gateway")

RouteKey = tuple[str, str]


def load_failure(canary: CanaryState, error: str) -> Decision:
    verdict = Verdict("breach", (f"canary {canary.version} failed to load: {error}",),
                      {"candidate_version": canary.version}, ("load_failure",))
    return Decision("rollback_canary", verdict, canary.version, canary.weight)


def reason_for(decision: Decision) -> str:
    verdict = decision.verdict
    reasons = "; ".join(verdict.reasons) if verdict else ""
    if decision.action == "rollback_canary":
        return f"automatic rollback of canary {decision.version}: {reasons}"
    if decision.action == "rollback_bake":
        return f"automatic rollback of {decision.version} during its bake period: {reasons}"
    if decision.action == "promote":
        return f"automatic promotion of {decision.version}: healthy through the interval at {decision.expected_weight:g}%"
    return (f"automatic step of canary {decision.version}: {decision.expected_weight:g}% -> "
            f"{decision.next_weight:g}% after a healthy interval")


class RolloutController:
    def __init__(self, service: Service, *, tick_s: float, actor: str | None = None) -> None:
        self.service = service
        self.tick_s = tick_s
        self.actor = actor or f"gateway@{socket.gethostname()}:{os.getpid()}"
        self.judges: dict[RouteKey, RolloutJudge] = {}
        self.pending: dict[RouteKey, Decision] = {}

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
        """Judge every served route; apply decisions; reload at once if the registry changed. Returns what was
        applied (Outcome None when the write failed and will be retried)."""
        pool = self.service.pool
        applied = []
        for routes in pool.routes.values():
            for route in routes.values():
                self._release(route)
                key = (route.model, route.environment)
                decision = self.pending.pop(key, None) or self.decide(route, pool, now)
                if decision.action != "keep":
                    applied.append((decision, await self.apply(route, decision)))
        if any(outcome is not None for _, outcome in applied):
            await self.service.reload()
        return applied

    def decide(self, route: Route, pool: Pool, now: float) -> Decision:
        deployment = route.deployment
        canary = deployment.canary
        if canary is not None and route.canary is None:
            failure = pool.failures.get((route.model, canary.version))
            if failure is not None:
                return load_failure(canary, failure.error)
        return self.judge(route).tick(deployment, self.service.windows, now)

    def judge(self, route: Route) -> RolloutJudge:
        key = (route.model, route.environment)
        judge = self.judges.get(key)
        if judge is None:
            judge = self.judges[key] = RolloutJudge(route.model, route.environment, self.service.settings.slo_limits)
        return judge

    def _release(self, route: Route) -> None:
        """Forget a withhold once registry.json no longer serves the withheld version on that route."""
        key = (route.model, route.environment)
        withheld = self.service.withheld.get(key)
        deployment = route.deployment
        if withheld is not None and withheld not in (deployment.version,
                                                     deployment.canary.version if deployment.canary else None):
            del self.service.withheld[key]

    async def apply(self, route: Route, decision: Decision) -> Outcome | None:
        service, model, environment = self.service, route.model, route.environment
        change = Change(actor=self.actor, reason=reason_for(decision))
        if decision.action == "rollback_canary":
            service.withhold(model, environment, decision.version)
            operation = functools.partial(rollback_canary, service.store, model, environment, change,
                                          decision.details(), expected_version=decision.version)
        elif decision.action == "rollback_bake":
            service.withhold(model, environment, decision.version)
            operation = functools.partial(rollback_bake, service.store, model, environment, change,
                                          decision.details(), expected_version=decision.version)
        else:
            operation = functools.partial(advance_canary_step, service.store, model, environment,
                                          decision.expected_weight, change, expected_version=decision.version)
        try:
            outcome = await anyio.to_thread.run_sync(operation)
        except StoreError as exc:
            log.warning("rollout: could not record %s of %s in %s (retrying next tick): %s", decision.action, model,
                        environment, exc)
            self.pending[(model, environment)] = decision
            return None
        if outcome.changed:
            self._count(model, environment, decision)
            log.warning("rollout: %s %s in %s: %s", outcome.action, model, environment, change.reason)
        return outcome

    def _count(self, model: str, environment: str, decision: Decision) -> None:
        metrics = self.service.metrics
        if decision.action in ("rollback_canary", "rollback_bake"):
            kind = "canary" if decision.action == "rollback_canary" else "bake"
            causes = decision.verdict.causes if decision.verdict else ()
            metrics.rollbacks.labels(model, environment, kind, causes[0] if causes else "unknown").inc()
        else:
            metrics.rollout_steps.labels(model, environment, decision.action).inc()

    def describe(self, route: Route) -> dict | None:
        """The rollout part of /health for one route; None when nothing was ever rolled out there."""
        deployment = route.deployment
        if not (deployment.canary or deployment.shadow or deployment.bake or deployment.last_rollback):
            return None
        service, now = self.service, time.time()
        withheld = service.withheld.get((route.model, route.environment))
        report: dict = {}
        if (canary := deployment.canary) is not None:
            report["canary"] = {"version": canary.version, "weight": canary.weight,
                                "effective_weight": service.canary_weight(route), "loaded": route.canary is not None,
                                "withheld": withheld == canary.version, "steps": canary.steps,
                                "interval_s": canary.interval_s, "step_started_at": canary.step_started_at}
        if (shadow := deployment.shadow) is not None:
            verdict = shadow_verdict(route.model, route.environment, deployment, service.windows, now,
                                     service.settings.slo_limits)
            report["shadow"] = {"version": shadow.version, "weight": shadow.weight, "loaded": route.shadow is not None,
                                **service.shadows.report(route.model, route.environment, shadow.version),
                                "verdict": verdict.kind if verdict else None,
                                "verdict_reasons": list(verdict.reasons) if verdict else []}
        if (bake := deployment.bake) is not None:
            report["bake"] = {"previous_version": bake.previous_version, "until": bake.until,
                              "active": bake_active(deployment, now)}
        judge = self.judges.get((route.model, route.environment))
        if judge is not None and judge.last_verdict is not None:
            verdict = judge.last_verdict
            report["last_verdict"] = {"kind": verdict.kind, "reasons": list(verdict.reasons), "figures": verdict.figures}
        if deployment.last_rollback:
            report["last_rollback"] = deployment.last_rollback
        return report
