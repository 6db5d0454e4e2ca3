"""Changes to registry.json that ops make: register, deploy, rollback. Each runs under the registry lock and
appends to the audit log before the lock is released, so the log's order is the registry's order."""
from __future__ import annotations

from dataclasses import dataclass

from modelstore.audit import AuditLog
from modelstore.errors import DuplicateVersion, InvalidTransition, ModelNotFound, NotDeployed, VersionNotFound
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, utc_now
from modelstore.registry import Deployment, Registry, RegistryData, VersionRecord


@dataclass(frozen=True)
class Change:
    """Who changed what, and why: carried into the audit log."""

    actor: str | None = None
    reason: str | None = None


def registry_of(store: Store) -> Registry:
    return Registry(store.registry_path)


def audit_of(store: Store) -> AuditLog:
    return AuditLog(store.audit_path)


def register_version(store: Store, metadata: ModelMetadata, change: Change = Change(), *, force: bool = False) -> None:
    with registry_of(store).transaction() as data:
        versions = data.models.setdefault(metadata.name, {})
        if metadata.version in versions and not force:
            raise DuplicateVersion(f"{metadata.name} {metadata.version} is already registered (use --force to replace it)")
        versions[metadata.version] = VersionRecord(
            registered_at=utc_now(),
            metrics=metadata.metrics,
            sha256=metadata.model_sha256,
            training_samples=metadata.training_samples,
        )
        audit_of(store).append("register", actor=change.actor, reason=change.reason, model=metadata.name,
                               after=metadata.version, details={"sha256": metadata.model_sha256, "force": force})


def require_version(data: RegistryData, store: Store, name: str, version: str) -> None:
    if name not in data.models:
        raise ModelNotFound(f"model {name!r} is not registered in {store.registry_path}")
    if version not in data.models[name]:
        raise VersionNotFound(f"model {name!r} has no registered version {version!r}")


def require_deployment(data: RegistryData, name: str, environment: str) -> Deployment:
    deployment = data.deployment(name, environment)
    if deployment is None:
        if name not in data.models:
            raise ModelNotFound(f"model {name!r} is not registered")
        raise NotDeployed(f"model {name!r} has nothing deployed to environment {environment!r}")
    return deployment


def serving_versions(data: RegistryData, name: str) -> set[str]:
    """Versions that answer or mirror traffic in some environment: stable, canary or shadow."""
    serving = set()
    for deployment in data.deployments.get(name, {}).values():
        serving.add(deployment.version)
        if deployment.canary:
            serving.add(deployment.canary.version)
        if deployment.shadow:
            serving.add(deployment.shadow.version)
    return serving


def settle_status(data: RegistryData, name: str, version: str | None, idle_status: str) -> None:
    """`deployed` while the version serves anywhere, else `idle_status` (deprecated, rolled_back, registered)."""
    if version is None or version not in data.models.get(name, {}):
        return
    record = data.models[name][version]
    if version in serving_versions(data, name):
        record.status = "deployed"
    elif record.status == "deployed":
        record.status = idle_status


def set_stable(data: RegistryData, name: str, environment: str, version: str, *, replaced_status: str) -> str | None:
    """Make `version` the stable version of the environment and return the version it replaces.

    A running canary ends (its version goes back to `registered` unless it serves elsewhere); a shadow of another
    version keeps mirroring. The replaced version gets `replaced_status` unless some environment still serves it.
    """
    current = data.deployment(name, environment)
    previous = current.version if current else None
    dropped_canary = current.canary.version if current and current.canary else None
    shadow = current.shadow if current and current.shadow and current.shadow.version != version else None
    data.deployments.setdefault(name, {})[environment] = Deployment(
        version=version,
        deployed_at=utc_now(),
        previous_version=previous if previous != version else (current.previous_version if current else None),
        slo=current.slo if current else None,
        shadow=shadow,
    )
    settle_status(data, name, version, "deployed")
    if previous != version:
        settle_status(data, name, previous, replaced_status)
    if dropped_canary not in (None, version):
        settle_status(data, name, dropped_canary, "registered")
    return previous


def deploy(store: Store, name: str, version: str, environment: str, change: Change = Change()) -> str | None:
    """Deploy `version` of `name` to `environment` as its stable version; returns the version it replaced."""
    store.verify_version(name, version)
    with registry_of(store).transaction() as data:
        require_version(data, store, name, version)
        previous = set_stable(data, name, environment, version, replaced_status="deprecated")
        audit_of(store).append("deploy", actor=change.actor, reason=change.reason, model=name,
                               environment=environment, before=previous, after=version)
    return previous


def rollback(store: Store, name: str, environment: str, change: Change = Change(), *, to: str | None = None,
             details: dict | None = None) -> tuple[str, str]:
    """Return the environment to its previous stable version (or `to`); returns (from, to)."""
    with registry_of(store).transaction() as data:
        deployment = require_deployment(data, name, environment)
        target = to or deployment.previous_version
        if target is None:
            raise InvalidTransition(f"{name} in {environment} has no previous version to roll back to; use --to VERSION")
        require_version(data, store, name, target)
        bad = deployment.version
        set_stable(data, name, environment, target, replaced_status="rolled_back")
        data.deployments[name][environment].last_rollback = {"from": bad, "to": target, "at": utc_now(),
                                                              "reason": change.reason, **(details or {})}
        audit_of(store).append("rollback", actor=change.actor, reason=change.reason, model=name,
                               environment=environment, before=bad, after=target, details=details)
    return bad, target
