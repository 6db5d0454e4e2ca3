"""Registering versions and deploying them: the operations, and the rules on registry state that every deployment
change shares (which versions serve, what status a version has, how a version becomes an environment's stable one).

Operations are applied through modelstore.transitions.transition, the one way to change the registry; the functions
at the end (`register_version`, `deploy`) are that call with the arguments spelled out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from modelstore.backends import ModelRepository
from modelstore.errors import DuplicateVersion, ModelNotFound, NotDeployed, VersionNotFound
from modelstore.metadata import ModelMetadata
from modelstore.registry import Deployment, RegistryData, VersionRecord
from modelstore.transitions import Change, Outcome, transition

# --- rules on state ---------------------------------------------------------------------------------------------


def require_version(data: RegistryData, name: str, version: str) -> None:
    data.require_valid("models", name, version)
    if name not in data.models:
        raise ModelNotFound(f"model {name!r} is not registered")
    if version not in data.models[name]:
        raise VersionNotFound(f"model {name!r} has no registered version {version!r}")


def require_deployment(data: RegistryData, name: str, environment: str) -> Deployment:
    data.require_valid("deployments", name, environment)
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


def set_stable(data: RegistryData, name: str, environment: str, version: str, now: str, *,
               replaced_status: str) -> str | None:
    """Make `version` the stable version of the environment and return the version it replaces.

    A running canary ends (its version goes back to `registered` unless it serves elsewhere); a shadow of another
    version keeps mirroring; the routing salt stays, so users keep their side in later canaries. The replaced version
    gets `replaced_status` unless some environment still serves it.
    """
    current = data.deployment(name, environment)
    previous = current.version if current else None
    dropped_canary = current.canary.version if current and current.canary else None
    shadow = current.shadow if current and current.shadow and current.shadow.version != version else None
    data.deployments.setdefault(name, {})[environment] = Deployment(
        version=version,
        deployed_at=now,
        previous_version=previous if previous != version else (current.previous_version if current else None),
        slo=current.slo if current else None,
        capture_rate=current.capture_rate if current else None,
        shadow=shadow,
        routing_salt=current.routing_salt if current else None,
    )
    data.invalid = [e for e in data.invalid if e.where not in (f"deployments.{name}.{environment}",
                                                                f"deployments.{name}")]
    settle_status(data, name, version, "deployed")
    record = data.models.get(name, {}).get(version)
    if record is not None and environment not in record.deployed_to:
        record.deployed_to.append(environment)
    if previous != version:
        settle_status(data, name, previous, replaced_status)
    if dropped_canary not in (None, version):
        settle_status(data, name, dropped_canary, "registered")
    return previous


class RegistryOperation:
    """An operation that names no artifact to check."""

    def prepare(self, store: ModelRepository) -> RegistryOperation:
        return self


# --- operations -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register(RegistryOperation):
    """Record a version written to the artifacts (with its sha256, metrics and training sample count, and whether it
    came from a package whose signature was checked). Registered again (--force), it keeps the environments it was
    deployed to; its evaluation and approvals are kept only when the model's bytes are the same (same sha256)."""

    model: str
    version: str
    sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    training_samples: int | None = None
    force: bool = False
    signature_verified: bool = False

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        versions = state.models.setdefault(self.model, {})
        old = versions.get(self.version)
        if old is not None and not self.force:
            raise DuplicateVersion(f"{self.model} {self.version} is already registered (use --force to replace it)")
        record = VersionRecord(registered_at=now, metrics=self.metrics, sha256=self.sha256,
                               training_samples=self.training_samples, signature_verified=self.signature_verified)
        if old is not None:
            record.deployed_to = old.deployed_to
            if old.sha256 == self.sha256:
                record.evaluation, record.approvals = old.evaluation, old.approvals
        versions[self.version] = record
        state.invalid = [e for e in state.invalid if e.where != f"models.{self.model}.{self.version}"]
        settle_status(state, self.model, self.version, "registered")
        details = {"sha256": self.sha256, "force": self.force, "metrics": self.metrics,
                   "training_samples": self.training_samples,
                   **({"signature_verified": True} if self.signature_verified else {})}
        return Outcome("register", self.model, None, True, after=self.version, details=details)


@dataclass(frozen=True)
class Deploy:
    """Make a verified version the stable version of an environment."""

    model: str
    environment: str
    version: str

    def prepare(self, store: ModelRepository) -> Deploy:
        store.verify_version(self.model, self.version)
        return self

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        require_version(state, self.model, self.version)
        previous = set_stable(state, self.model, self.environment, self.version, now, replaced_status="deprecated")
        return Outcome("deploy", self.model, self.environment, True, before=previous, after=self.version)


def register_version(store: ModelRepository, metadata: ModelMetadata, change: Change = Change(), *,
                     force: bool = False, signature_verified: bool = False) -> Outcome:
    return transition(store, Register(metadata.name, metadata.version, metadata.model_sha256, dict(metadata.metrics),
                                      metadata.training_samples, force, signature_verified), change)


def deploy(store: ModelRepository, name: str, version: str, environment: str, change: Change = Change()) -> str | None:
    """Deploy `version` of `name` to `environment` as its stable version; returns the version it replaced."""
    return transition(store, Deploy(name, environment, version), change).before
