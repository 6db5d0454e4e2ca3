"""The loaded sessions and which version each environment serves.

A Pool is never changed after it is built: a reload builds a new one (off the event loop) and swaps it in with one
assignment. A request holds the LoadedModel it started with, so in-flight requests finish on their session while new
ones see the new pool.

Faults stay where they happen: a version that fails to load (any exception: bad metadata, bad bytes, a dtype nobody
serves, an unreadable file) fails that version only; a registry entry that does not validate fails that entry only;
the rest is served. Each fault is a Problem that /health reports.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from gateway.loader import LoadedModel
from gateway.rollout_state import RolloutState
from modelstore.backends import ModelRepository, Revision, Snapshot
from modelstore.errors import StoreError
from modelstore.registry import Deployment, RegistryData
from modelstore.rollout import bake_active

log = logging.getLogger("onnxgate.gateway")

ModelKey = tuple[str, str]
Loader = Callable[[ModelRepository, str, str], LoadedModel]
RolloutFor = Callable[[str, str], RolloutState]


@dataclass(frozen=True)
class Problem:
    """Something the pool could not serve as the registry says: a version that did not load, a registry entry that
    does not validate, or the registry itself. Fields are None where they do not apply."""

    model: str | None  # None for the registry as a whole
    version: str | None
    environment: str | None
    reason: str

    def as_json(self) -> dict:
        return {"model": self.model, "version": self.version, "environment": self.environment, "reason": self.reason}


@dataclass(frozen=True)
class LoadFailure:
    stamp: str
    error: str


@dataclass(frozen=True)
class Route:
    """What one environment serves for one model."""

    model: str
    environment: str
    deployment: Deployment
    stable: LoadedModel | None  # the deployed version, or the last good one while the deployed one fails to load
    canary: LoadedModel | None = None
    shadow: LoadedModel | None = None
    previous: LoadedModel | None = None  # during a bake, the version it replaced: ready if the bake rolls back
    error: str | None = None  # why the deployed (or canary/shadow) version is not loaded
    rollout: RolloutState | None = None  # set while a canary, shadow or bake is on: requests are measured for it
    # the deployment's split, read by every request of a split route: plain fields rather than the pydantic model's
    canary_weight: float = 0.0
    routing_salt: str | None = None

    @property
    def healthy(self) -> bool:
        return self.stable is not None and self.stable.version == self.deployment.version and self.error is None


@dataclass(frozen=True)
class Pool:
    registry: RegistryData = field(default_factory=RegistryData)
    revision: Revision | None = None
    models: dict[ModelKey, LoadedModel] = field(default_factory=dict)
    routes: dict[str, dict[str, Route]] = field(default_factory=dict)
    failures: dict[ModelKey, LoadFailure] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    pins: PinRules = field(default_factory=lambda: PinRules({}, {}))

    def route(self, environment: str, model: str) -> Route | None:
        return self.routes.get(environment, {}).get(model)


@dataclass(frozen=True)
class PinRules:
    """Which versions `?version=` and /v2/models/m/versions/v may serve, decided once per pool from registry.json.

    deployed: per model, the versions the served environments deploy now or deployed just before (stable, canary,
      shadow, bake.previous_version, previous_version); the audit log's older history is not read (a reload would
      cost a scan of the whole log), so older versions need pin_any_version.
    rolled_back: per model, versions never served by pin: a registry status of rolled_back, or the `from` of a
      served environment's last_rollback, unless that environment serves it again (a canary restarted)."""

    deployed: dict[str, frozenset[str]]
    rolled_back: dict[str, frozenset[str]]


def pin_rules(data: RegistryData, environments: Iterable[str]) -> PinRules:
    deployed: dict[str, set[str]] = {}
    rolled_back: dict[str, set[str]] = {}
    for model, versions in data.models.items():
        rolled_back[model] = {version for version, record in versions.items() if record.status == "rolled_back"}
    for model, by_env in data.deployments.items():
        for env in environments:
            deployment = by_env.get(env)
            if deployment is None:
                continue
            serving = deployment_versions(deployment)
            earlier = [deployment.previous_version, deployment.bake.previous_version if deployment.bake else None]
            deployed.setdefault(model, set()).update(serving, (v for v in earlier if v is not None))
            moved_from = (deployment.last_rollback or {}).get("from")
            if moved_from is not None and moved_from not in serving:
                rolled_back.setdefault(model, set()).add(moved_from)
    return PinRules({m: frozenset(v) for m, v in deployed.items()},
                    {m: frozenset(v) for m, v in rolled_back.items() if v})


def deployment_versions(deployment: Deployment) -> list[str]:
    """The versions that answer or mirror requests: stable, canary, shadow."""
    versions = [deployment.version]
    for arm in (deployment.canary, deployment.shadow):
        if arm is not None and arm.version not in versions:
            versions.append(arm.version)
    return versions


def standby_version(deployment: Deployment, now: float) -> str | None:
    """During a bake, the replaced version, kept loaded so that a bake rollback switches at once."""
    if bake_active(deployment, now) and deployment.bake.previous_version not in deployment_versions(deployment):
        return deployment.bake.previous_version
    return None


def build_pool(store: ModelRepository, snapshot: Snapshot, environments: Iterable[str], previous: Pool,
               loader: Loader, rollout_for: RolloutFor) -> Pool:
    """Load every version the environments reference, reusing sessions whose files are unchanged.

    If a session of a failing version was already loaded from files that have since changed, the loaded (verified)
    session keeps serving; if an environment's deployed version fails, that environment keeps its previous stable.
    A failure is retried only when the version's files change.
    """
    environments = list(environments)
    now = time.time()
    data = snapshot.state
    problems = [Problem(entry.name, entry.key if entry.section == "models" else None,
                        entry.key if entry.section == "deployments" else None, entry.describe())
                for entry in data.invalid]
    wanted: dict[ModelKey, None] = {}
    for model, by_env in sorted(data.deployments.items()):
        for env in environments:
            if env in by_env:
                standby = standby_version(by_env[env], now)
                for version in deployment_versions(by_env[env]) + ([standby] if standby else []):
                    wanted[(model, version)] = None

    models: dict[ModelKey, LoadedModel] = {}
    failures: dict[ModelKey, LoadFailure] = {}
    for key in wanted:
        loaded, failure = _load(store, key, previous, loader)
        if loaded is not None:
            models[key] = loaded
        if failure is not None:
            failures[key] = failure
            problems.append(Problem(key[0], key[1], None, failure.error))

    routes: dict[str, dict[str, Route]] = {}
    for env in environments:
        routes[env] = {}
        for model, by_env in sorted(data.deployments.items()):
            if (deployment := by_env.get(env)) is not None:
                routes[env][model] = _route(model, env, deployment, models, failures, previous, now, rollout_for)
        for model in _lost_routes(data, previous, env):
            # its entry is invalid now: keep what it served, and say why it is not served as the registry says
            invalid = data.invalid_entry("deployments", model, env)
            kept = routes[env][model] = replace(previous.routes[env][model], error=invalid.describe())
            for loaded in (kept.stable, kept.canary, kept.shadow, kept.previous):
                if loaded is not None:
                    models.setdefault((model, loaded.version), loaded)
    return Pool(registry=data, revision=snapshot.revision, models=models, routes=routes, failures=failures,
                problems=tuple(problems), pins=pin_rules(data, environments))


def _load(store: ModelRepository, key: ModelKey, previous: Pool,
          loader: Loader) -> tuple[LoadedModel | None, LoadFailure | None]:
    """(the session to serve, the failure to report): a new session, the unchanged old one, or the old one kept
    beside the failure of its changed files."""
    try:
        stamp = store.version_stamp(*key)
    except Exception as exc:  # noqa: BLE001 - one version's fault is that version's alone
        stamp = f"unreadable: {exc}"
    old = previous.models.get(key)
    if old is not None and old.stamp == stamp:
        return old, None
    old_failure = previous.failures.get(key)
    if old_failure is not None and old_failure.stamp == stamp:
        return old, old_failure
    try:
        return loader(store, *key), None
    except StoreError as exc:
        return old, LoadFailure(stamp, str(exc))
    except Exception as exc:  # noqa: BLE001 - one version's fault is that version's alone
        log.warning("loading %s %s failed", *key, exc_info=exc)
        return old, LoadFailure(stamp, f"{key[0]} {key[1]}: {type(exc).__name__}: {exc}")


def _route(model: str, env: str, deployment: Deployment, models: dict[ModelKey, LoadedModel],
           failures: dict[ModelKey, LoadFailure], previous: Pool, now: float, rollout_for: RolloutFor) -> Route:
    stable = models.get((model, deployment.version))
    errors = [failures[(model, v)].error for v in deployment_versions(deployment) if (model, v) in failures]
    if stable is None:
        earlier = previous.route(env, model)
        if earlier is not None and earlier.stable is not None:
            stable = earlier.stable
            models.setdefault((model, stable.version), stable)
    standby = standby_version(deployment, now)
    watched = bool(deployment.canary or deployment.shadow or deployment.bake)  # an expired bake: until it is ended
    return Route(
        model=model,
        environment=env,
        deployment=deployment,
        stable=stable,
        canary=models.get((model, deployment.canary.version)) if deployment.canary else None,
        shadow=models.get((model, deployment.shadow.version)) if deployment.shadow else None,
        previous=models.get((model, standby)) if standby else None,
        error="; ".join(errors) or None,
        rollout=rollout_for(model, env) if watched else None,
        canary_weight=deployment.canary.weight if deployment.canary else 0.0,
        routing_salt=deployment.routing_salt,
    )


def _lost_routes(data: RegistryData, previous: Pool, env: str) -> list[str]:
    """Models the previous pool served in `env` whose deployment entry is now set aside as invalid."""
    return [model for model in previous.routes.get(env, {})
            if data.deployment(model, env) is None and data.invalid_entry("deployments", model, env) is not None]


@dataclass(frozen=True)
class ReloadReport:
    at: float
    ok: bool
    error: str | None
    duration_s: float

    def as_json(self) -> dict:
        return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)), "ok": self.ok, "error": self.error,
                "duration_s": round(self.duration_s, 4)}
