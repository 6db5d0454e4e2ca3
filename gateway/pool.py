"""The loaded sessions and which version each environment serves.

A Pool is never changed after it is built: a reload builds a new one (off the event loop) and the service swaps it
in with one assignment. A request holds the LoadedModel it started with, so in-flight requests finish on their
session while new ones see the new pool.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.loader import Fingerprint, LoadedModel, fingerprint
from modelstore.errors import StoreError
from modelstore.layout import Store
from modelstore.registry import Deployment, Registry, RegistryData
from modelstore.rollout import epoch_seconds

ModelKey = tuple[str, str]
Loader = Callable[[Store, str, str], LoadedModel]


@dataclass(frozen=True)
class LoadFailure:
    fingerprint: Fingerprint
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
    watched: bool = False  # a canary, shadow or bake is on: requests are measured for the judge

    @property
    def healthy(self) -> bool:
        return self.stable is not None and self.stable.version == self.deployment.version and self.error is None


@dataclass(frozen=True)
class Pool:
    registry: RegistryData = field(default_factory=RegistryData)
    models: dict[ModelKey, LoadedModel] = field(default_factory=dict)
    routes: dict[str, dict[str, Route]] = field(default_factory=dict)
    failures: dict[ModelKey, LoadFailure] = field(default_factory=dict)
    registry_stamp: tuple | None = None

    def route(self, environment: str, model: str) -> Route | None:
        return self.routes.get(environment, {}).get(model)


def registry_stamp(store: Store) -> tuple | None:
    try:
        stat = os.stat(store.registry_path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def deployment_versions(deployment: Deployment) -> list[str]:
    """The versions that answer or mirror requests: stable, canary, shadow."""
    versions = [deployment.version]
    for arm in (deployment.canary, deployment.shadow):
        if arm is not None and arm.version not in versions:
            versions.append(arm.version)
    return versions


def bake_active(deployment: Deployment, now: float) -> bool:
    return deployment.bake is not None and epoch_seconds(deployment.bake.until) > now


def standby_version(deployment: Deployment, now: float) -> str | None:
    """During a bake, the replaced version, kept loaded so that a bake rollback switches at once."""
    if bake_active(deployment, now) and deployment.bake.previous_version not in deployment_versions(deployment):
        return deployment.bake.previous_version
    return None


def build_pool(store: Store, environments: Iterable[str], previous: Pool, loader: Loader) -> Pool:
    """Read the registry and load every version the environments reference, reusing unchanged sessions.

    Raises CorruptRegistry (the caller keeps the previous pool). A version that fails to load is recorded in
    `failures`; if a session of it was already loaded from files that have since changed, the loaded (verified)
    session keeps serving; if an environment's deployed version fails, that environment keeps its previous stable.
    A failure is retried only when the version's files change.
    """
    environments = list(environments)
    now = time.time()
    stamp = registry_stamp(store)
    data = Registry(store.registry_path).read()
    wanted: list[ModelKey] = []
    for model, by_env in sorted(data.deployments.items()):
        for env in environments:
            if env in by_env:
                standby = standby_version(by_env[env], now)
                versions = deployment_versions(by_env[env]) + ([standby] if standby else [])
                wanted.extend((model, v) for v in versions if (model, v) not in wanted)

    models: dict[ModelKey, LoadedModel] = {}
    failures: dict[ModelKey, LoadFailure] = {}
    for key in wanted:
        current = fingerprint(store, *key)
        old = previous.models.get(key)
        old_failure = previous.failures.get(key)
        if old is not None and old.fingerprint == current:
            models[key] = old
            continue
        if old_failure is not None and old_failure.fingerprint == current:
            failures[key] = old_failure
        else:
            try:
                models[key] = loader(store, *key)
                continue
            except (StoreError, OSError) as exc:
                failures[key] = LoadFailure(current, str(exc))
        if old is not None:
            models[key] = old

    routes: dict[str, dict[str, Route]] = {}
    for env in environments:
        routes[env] = {}
        for model, by_env in sorted(data.deployments.items()):
            deployment = by_env.get(env)
            if deployment is None:
                continue
            stable = models.get((model, deployment.version))
            errors = [failures[(model, v)].error for v in deployment_versions(deployment) if (model, v) in failures]
            if stable is None:
                earlier = previous.route(env, model)
                if earlier is not None and earlier.stable is not None:
                    stable = earlier.stable
                    models.setdefault((model, stable.version), stable)
            routes[env][model] = Route(
                model=model,
                environment=env,
                deployment=deployment,
                stable=stable,
                canary=models.get((model, deployment.canary.version)) if deployment.canary else None,
                shadow=models.get((model, deployment.shadow.version)) if deployment.shadow else None,
                previous=models.get((model, standby)) if (standby := standby_version(deployment, now)) else None,
                error="; ".join(errors) or None,
                watched=bool(deployment.canary or deployment.shadow or bake_active(deployment, now)),
            )
    return Pool(registry=data, models=models, routes=routes, failures=failures, registry_stamp=stamp)


@dataclass(frozen=True)
class ReloadReport:
    at: float
    ok: bool
    error: str | None
    duration_s: float

    def as_json(self) -> dict:
        return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)), "ok": self.ok, "error": self.error,
                "duration_s": round(self.duration_s, 4)}
