"""Health reports over a pool: the gateway-wide one and the per-model one in the seed's shape."""
from __future__ import annotations

from collections.abc import Callable

from gateway.pool import Pool, ReloadReport, Route
from modelstore.errors import ModelNotFound

RolloutReport = Callable[[Route], dict | None]


def no_rollout(route: Route) -> None:
    return None


def gateway_health(pool: Pool, environments: list[str], last_reload: ReloadReport | None,
                   rollout: RolloutReport = no_rollout) -> dict:
    """`rollout` adds each route's canary, shadow, bake, last verdict and last rollback, when it has any."""
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
    degraded = (last_reload is not None and not last_reload.ok) or any(m["error"] for m in models)
    return {
        "status": "degraded" if degraded else "ok",
        "live": True,
        "environments": environments,
        "models": models,
        "last_reload": last_reload.as_json() if last_reload else None,
    }


def model_health(pool: Pool, model: str, environment: str, rollout: RolloutReport = no_rollout) -> dict:
    """{"model_type", "version", "status": healthy|unhealthy|not_deployed, "available", "loadable", "metadata"}."""
    route = pool.route(environment, model)
    if route is None:
        if model not in pool.registry.models:
            raise ModelNotFound(f"model {model!r} not found")
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
