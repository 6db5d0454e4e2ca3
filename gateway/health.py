"""Health reports over the served pool: the gateway-wide one, readiness, and the per-model one in the seed's shape.

Truthful: `degraded` whenever the registry could not be read or anything it names is not served as it says, with
each problem's model, version and reason (store-relative names, never host paths); not ready while an environment
that has deployments serves none of them.
"""
from __future__ import annotations

from collections.abc import Callable

from gateway.errors import shown
from gateway.pool import Pool, Route
from gateway.pool_keeper import PoolKeeper
from modelstore.errors import ModelNotFound

RolloutReport = Callable[[Route], dict | None]


def no_rollout(route: Route) -> None:
    return None


def gateway_health(pools: PoolKeeper, environments: list[str], rollout: RolloutReport = no_rollout) -> dict:
    """`rollout` adds each route's canary, shadow, bake, last verdict and last rollback, when it has any."""
    pool, last_reload = pools.pool, pools.last_reload
    models = []
    for env in environments:
        for route in pool.routes.get(env, {}).values():
            entry = {
                "model": route.model,
                "environment": env,
                "version": route.stable.version if route.stable else None,
                "deployed_version": route.deployment.version,
                "loaded": route.stable is not None,
                "error": route.error,
            }
            if (report := rollout(route)) is not None:
                entry["rollout"] = report
            models.append(entry)
    # every failed reload, failed version and kept route's error is one of these problems
    problems = [problem.as_json() for problem in pools.problems()]
    ready, not_ready = readiness(pools, environments)
    return {
        "status": "degraded" if problems else "ok",
        "live": True,
        "ready": ready,
        "not_ready": not_ready,
        "environments": environments,
        "models": models,
        "problems": problems,
        "last_reload": last_reload.as_json() if last_reload else None,
    }


def readiness(pools: PoolKeeper, environments: list[str]) -> tuple[bool, list[str]]:
    """(ready, why not): ready once the registry has been read, unless an environment that has deployments serves
    none of them."""
    if not pools.loaded_once:
        return False, [pools.registry_error or "the registry has not been read yet"]
    pool = pools.pool
    why = [f"environment {env!r} has deployments but serves none of them" for env in environments
           if _has_deployments(pool, env) and not any(r.stable for r in pool.routes.get(env, {}).values())]
    return not why, why


def _has_deployments(pool: Pool, environment: str) -> bool:
    registry = pool.registry
    return (any(environment in by_env for by_env in registry.deployments.values())
            or any(e.section == "deployments" and e.key == environment for e in registry.invalid))


def model_health(pool: Pool, model: str, environment: str, rollout: RolloutReport = no_rollout) -> dict:
    """{"model_type", "version", "status": healthy|unhealthy|not_deployed, "available", "loadable", "metadata"}."""
    route = pool.route(environment, model)
    if route is None:
        invalid = pool.registry.invalid_entry("deployments", model, environment)
        if invalid is not None:
            return {"model_type": model, "version": None, "status": "unhealthy", "available": False,
                    "loadable": False, "metadata": {"version": None, "deployed_at": None}, "error": invalid.describe()}
        if model not in pool.registry.models:
            raise ModelNotFound(f"model {shown(model)} not found")
        return {"model_type": model, "version": None, "status": "not_deployed", "available": False,
                "loadable": False, "metadata": {"version": None, "deployed_at": None}}
    report = {
        "model_type": model,
        "version": route.stable.version if route.stable else route.deployment.version,
        "status": "healthy" if route.healthy else "unhealthy",
        "available": route.stable is not None,
        "loadable": _loadable(pool, route),
        "metadata": {"version": route.deployment.version, "deployed_at": route.deployment.deployed_at},
    }
    if not route.healthy:
        report["error"] = route.error or "deployed version is not loaded"
    if (rollout_report := rollout(route)) is not None:
        report["rollout"] = rollout_report
    return report


def _loadable(pool: Pool, route: Route) -> bool:
    key = (route.model, route.deployment.version)
    return key in pool.models and key not in pool.failures
