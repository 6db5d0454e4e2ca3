"""Safe rollout in registry.json: canaries, stepped promotion, shadows, bake periods, and their rollbacks.

Each operation holds the registry lock from read to write and appends its audit entry before releasing it, so the
log's order is the registry's order. The operations a gateway worker may race on (rolling a canary back, stepping it
up, ending a bake) take the state the worker judged (`expected_version`, `expected_weight`) and do nothing when it is
gone: the second worker to decide the same thing neither fails nor writes a second audit entry. A no-op does not
rewrite registry.json either, so store watchers do not reload for nothing.

The audit entry is appended after registry.json is written (still under the lock): the log never records a change
that was not made.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from modelstore.deployments import (
    Change,
    audit_of,
    registry_of,
    require_deployment,
    require_version,
    set_stable,
    settle_status,
)
from modelstore.errors import InvalidTransition, StoreError
from modelstore.fileio import atomic_write
from modelstore.layout import Store
from modelstore.metadata import utc_now
from modelstore.registry import BakeState, CanaryState, Deployment, RegistryData, ShadowState, SloPolicy, registry_bytes

DEFAULT_BAKE_S = 300.0
"""How long a promoted version is watched against its predecessor's figures unless the deployment's SLO says so."""


class InvalidSloPolicy(StoreError):
    """An SLO value out of range (a quantile outside (0, 1), a negative rate, ...)."""


@dataclass(frozen=True)
class Outcome:
    """What an operation did. `changed` is False for the no-op of an already-applied decision."""

    action: str
    model: str
    environment: str
    changed: bool
    before: str | None = None
    after: str | None = None
    weight: float | None = None
    details: dict = field(default_factory=dict)


# --- time -------------------------------------------------------------------------------------------------------

def iso_after(seconds: float) -> str:
    """UTC time `seconds` from now, in the registry's format (2025-01-31T12:00:00Z)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch_seconds(iso_time: str) -> float:
    """A registry timestamp as Unix seconds (what the gateway's judge compares with its clock)."""
    moment = datetime.fromisoformat(iso_time)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --- validation -------------------------------------------------------------------------------------------------

def check_slo(policy: SloPolicy) -> SloPolicy:
    """Reject values a judge cannot use; unset fields are fine (they take the gateway's defaults)."""
    problems = []
    if policy.latency_quantile is not None and not 0 < policy.latency_quantile < 1:
        problems.append("latency_quantile must be between 0 and 1 (e.g. 0.95)")
    if policy.max_latency_ms is not None and policy.max_latency_ms <= 0:
        problems.append("max_latency_ms must be positive")
    if policy.max_latency_ratio is not None and policy.max_latency_ratio < 1:
        problems.append("max_latency_ratio must be at least 1")
    if policy.max_error_rate is not None and not 0 <= policy.max_error_rate <= 1:
        problems.append("max_error_rate must be between 0 and 1 (0.01 is 1%)")
    if policy.window_s is not None and policy.window_s <= 0:
        problems.append("window_s must be positive")
    if policy.min_requests is not None and policy.min_requests < 1:
        problems.append("min_requests must be at least 1")
    if policy.breaches_to_rollback is not None and policy.breaches_to_rollback < 1:
        problems.append("breaches_to_rollback must be at least 1")
    if policy.bake_s is not None and policy.bake_s < 0:
        problems.append("bake_s must not be negative")
    if problems:
        raise InvalidSloPolicy("invalid SLO policy: " + "; ".join(problems))
    return policy


def merge_slo(current: SloPolicy | None, override: SloPolicy | None) -> SloPolicy | None:
    """Fields set in `override` replace those of `current`; the rest are kept."""
    if override is None:
        return current
    check_slo(override)
    base = current.model_dump() if current else {}
    return SloPolicy(**{**base, **override.model_dump(exclude_none=True)})


def _check_weight(weight: float, what: str) -> float:
    if not (math.isfinite(weight) and 0 < weight <= 100):
        raise InvalidTransition(f"{what} must be a percentage above 0 and at most 100, got {weight}")
    return float(weight)


def canary_steps(weight: float, steps: Iterable[float]) -> list[float]:
    """The weights still to climb to: strictly increasing, each in (0, 100]; those at or below `weight` are dropped
    (`--weight 10 --steps 5,25,50,100` climbs 25, 50, 100)."""
    ladder = [_check_weight(step, "every step") for step in steps]
    if any(later <= earlier for earlier, later in zip(ladder, ladder[1:], strict=False)):
        raise InvalidTransition(f"steps must increase strictly, got {', '.join(f'{s:g}' for s in ladder)}")
    return [step for step in ladder if step > weight]


def next_step(canary: CanaryState) -> float | None:
    return next((step for step in canary.steps if step > canary.weight), None)


# --- the edit context -------------------------------------------------------------------------------------------

@dataclass
class _Edit:
    data: RegistryData
    entries: list[dict] = field(default_factory=list)

    def record(self, action: str, change: Change, name: str, environment: str, *, before: str | None,
               after: str | None, details: dict | None = None) -> None:
        self.entries.append({"action": action, "actor": change.actor, "reason": change.reason, "model": name,
                             "environment": environment, "before": before, "after": after, "details": details or {}})


@contextlib.contextmanager
def _editing(store: Store) -> Iterator[_Edit]:
    """Lock, read, let the caller change the data; write it (and then its audit entries) only if it recorded any."""
    registry = registry_of(store)
    with registry.locked():
        edit = _Edit(registry.read())
        yield edit
        if edit.entries:
            atomic_write(registry.path, registry_bytes(edit.data))
            audit = audit_of(store)
            for entry in edit.entries:
                audit.append(**entry)


def _bake_seconds(deployment: Deployment, bake_s: float | None) -> float:
    if deployment.slo and deployment.slo.bake_s is not None:
        return deployment.slo.bake_s
    return DEFAULT_BAKE_S if bake_s is None else bake_s


# --- canary -----------------------------------------------------------------------------------------------------

def start_canary(store: Store, name: str, version: str, environment: str, weight: float, steps: Iterable[float] = (),
                 interval_s: float | None = None, change: Change = Change(), slo: SloPolicy | None = None) -> Outcome:
    """Send `weight` percent of the environment's traffic to `version`. Running it again for the running canary's
    version changes its weight, steps or SLO; a canary of another version must be promoted or rolled back first.
    A bake period still running ends here: the judge watches one change at a time."""
    weight = _check_weight(weight, "--weight")
    ladder = canary_steps(weight, steps)
    if ladder and (interval_s is None or interval_s <= 0):
        raise InvalidTransition("steps need a positive interval (e.g. --interval 10m) to wait between them")
    version = store.verify_version(name, version).version
    with _editing(store) as edit:
        data = edit.data
        require_version(data, store, name, version)
        deployment = require_deployment(data, name, environment)
        if version == deployment.version:
            raise InvalidTransition(f"{name} {version} is already the stable version in {environment}")
        running = deployment.canary
        if running and running.version != version:
            raise InvalidTransition(f"a canary of {name} {running.version} is running in {environment}; promote it or "
                                    "roll it back first")
        now = utc_now()
        deployment.canary = CanaryState(version=version, weight=weight, steps=ladder,
                                        interval_s=interval_s if ladder else None,
                                        started_at=running.started_at if running else now, step_started_at=now)
        deployment.slo = merge_slo(deployment.slo, slo)
        ended_bake, deployment.bake = deployment.bake, None
        settle_status(data, name, version, "registered")
        details = {"weight": weight, "steps": ladder, "interval_s": deployment.canary.interval_s,
                   "previous_weight": running.weight if running else None,
                   "ended_bake_of": ended_bake.previous_version if ended_bake else None,
                   "slo": slo.model_dump(exclude_none=True) if slo else None}
        edit.record("canary", change, name, environment, before=deployment.version, after=version, details=details)
    return Outcome("canary", name, environment, True, before=deployment.version, after=version, weight=weight,
                   details=details)


def _promote_canary(edit: _Edit, name: str, environment: str, change: Change, bake_s: float | None,
                    via: str) -> Outcome:
    deployment = edit.data.deployments[name][environment]
    canary = deployment.canary
    seconds = _bake_seconds(deployment, bake_s)
    previous = set_stable(edit.data, name, environment, canary.version, replaced_status="deprecated")
    promoted = edit.data.deployments[name][environment]
    if previous and seconds > 0:
        promoted.bake = BakeState(previous_version=previous, until=iso_after(seconds))
    details = {"weight": canary.weight, "via": via, "bake_until": promoted.bake.until if promoted.bake else None}
    edit.record("promote", change, name, environment, before=previous, after=canary.version, details=details)
    return Outcome("promote", name, environment, True, before=previous, after=canary.version, weight=100.0,
                   details=details)


def promote(store: Store, name: str, environment: str, change: Change = Change(), *, bake_s: float | None = None,
            expected_version: str | None = None) -> Outcome:
    """The canary becomes the stable version; the one it replaces is deprecated and baked against.

    The bake period is the deployment's SLO `bake_s`, else `bake_s`, else DEFAULT_BAKE_S; 0 means none. With
    `expected_version` (a gateway's decision), a canary that is gone or changed is a no-op rather than an error.
    """
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        canary = deployment.canary
        if expected_version is not None and (canary is None or canary.version != expected_version):
            return Outcome("promote", name, environment, False, before=deployment.version, after=deployment.version)
        if canary is None:
            raise InvalidTransition(f"{name} has no canary in {environment} to promote")
        return _promote_canary(edit, name, environment, change, bake_s, via="promote")


def advance_canary_step(store: Store, name: str, environment: str, expected_weight: float, change: Change = Change(),
                        *, expected_version: str | None = None, bake_s: float | None = None) -> Outcome:
    """Raise the canary to its next step; the step to 100 promotes. A compare-and-set on the weight the caller saw:
    when another worker has already stepped (or the canary is gone), this does nothing."""
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        canary = deployment.canary
        stale = (canary is None or canary.weight != expected_weight
                 or (expected_version is not None and canary.version != expected_version))
        target = None if stale else next_step(canary)
        if target is None:
            return Outcome("canary_step", name, environment, False, before=deployment.version,
                           after=canary.version if canary else None, weight=canary.weight if canary else None)
        if target >= 100:
            return _promote_canary(edit, name, environment, change, bake_s, via="steps")
        details = {"weight_from": canary.weight, "weight_to": target}
        canary.weight, canary.step_started_at = target, utc_now()
        edit.record("canary_step", change, name, environment, before=deployment.version, after=canary.version,
                    details=details)
    return Outcome("canary_step", name, environment, True, before=deployment.version, after=canary.version,
                   weight=target, details=details)


def rollback_canary(store: Store, name: str, environment: str, change: Change = Change(), details: dict | None = None,
                    *, expected_version: str | None = None) -> Outcome:
    """Stop the canary: all traffic back to stable, its version marked rolled_back, `last_rollback` recording
    `details` (the measured figures). Without a canary (or with another one than expected) this is a no-op."""
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        canary = deployment.canary
        if canary is None or (expected_version is not None and canary.version != expected_version):
            return Outcome("canary_rollback", name, environment, False, before=deployment.version,
                           after=deployment.version)
        return _rollback_canary(edit, name, environment, change, details or {})


def _rollback_canary(edit: _Edit, name: str, environment: str, change: Change, details: dict) -> Outcome:
    deployment = edit.data.deployments[name][environment]
    canary = deployment.canary
    deployment.canary = None
    deployment.last_rollback = {"kind": "canary", "from": canary.version, "to": deployment.version, "at": utc_now(),
                                "weight": canary.weight, "reason": change.reason, **details}
    settle_status(edit.data, name, canary.version, "rolled_back")
    edit.record("canary_rollback", change, name, environment, before=canary.version, after=deployment.version,
                details={"weight": canary.weight, **details})
    return Outcome("canary_rollback", name, environment, True, before=canary.version, after=deployment.version,
                   weight=canary.weight, details=details)


# --- bake -------------------------------------------------------------------------------------------------------

def rollback_bake(store: Store, name: str, environment: str, change: Change = Change(), details: dict | None = None,
                  *, expected_version: str | None = None) -> Outcome:
    """During a bake period, return to the version the promotion replaced. A no-op when there is no bake or the
    stable version is no longer `expected_version` (another worker, or ops, got there first)."""
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        bake = deployment.bake
        if bake is None or (expected_version is not None and deployment.version != expected_version):
            return Outcome("bake_rollback", name, environment, False, before=deployment.version,
                           after=deployment.version)
        bad = deployment.version
        set_stable(edit.data, name, environment, bake.previous_version, replaced_status="rolled_back")
        edit.data.deployments[name][environment].last_rollback = {
            "kind": "bake", "from": bad, "to": bake.previous_version, "at": utc_now(), "reason": change.reason,
            **(details or {}),
        }
        edit.record("bake_rollback", change, name, environment, before=bad, after=bake.previous_version,
                    details={"bake_until": bake.until, **(details or {})})
    return Outcome("bake_rollback", name, environment, True, before=bad, after=bake.previous_version,
                   details=details or {})


# --- shadow -----------------------------------------------------------------------------------------------------

def start_shadow(store: Store, name: str, version: str, environment: str, weight: float = 100.0,
                 change: Change = Change()) -> Outcome:
    """Mirror `weight` percent of the environment's requests to `version`; its answers are measured, never returned."""
    weight = _check_weight(weight, "--weight")
    version = store.verify_version(name, version).version
    with _editing(store) as edit:
        data = edit.data
        require_version(data, store, name, version)
        deployment = require_deployment(data, name, environment)
        if version == deployment.version:
            raise InvalidTransition(f"{name} {version} is the stable version in {environment}; shadow another version")
        replaced = deployment.shadow
        deployment.shadow = ShadowState(version=version, weight=weight, started_at=utc_now())
        settle_status(data, name, version, "registered")
        if replaced and replaced.version != version:
            settle_status(data, name, replaced.version, "registered")
        edit.record("shadow", change, name, environment, before=replaced.version if replaced else None, after=version,
                    details={"weight": weight})
    return Outcome("shadow", name, environment, True, before=replaced.version if replaced else None, after=version,
                   weight=weight)


def stop_shadow(store: Store, name: str, environment: str, change: Change = Change()) -> Outcome:
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        shadow = deployment.shadow
        if shadow is None:
            raise InvalidTransition(f"{name} has no shadow in {environment} to stop")
        deployment.shadow = None
        settle_status(edit.data, name, shadow.version, "registered")
        edit.record("shadow_stop", change, name, environment, before=shadow.version, after=None,
                    details={"weight": shadow.weight})
    return Outcome("shadow_stop", name, environment, True, before=shadow.version, after=None, weight=shadow.weight)


# --- what `onnxgate rollback` means -----------------------------------------------------------------------------

def rollback_environment(store: Store, name: str, environment: str, change: Change = Change(), *,
                         to: str | None = None) -> Outcome:
    """`onnxgate rollback`: with a canary running, roll the canary back (stable is untouched; `to` is refused as
    ambiguous). Otherwise return the stable version to its previous one, or to `to`, as
    modelstore.deployments.rollback does; decided and done under one lock, so a canary started meanwhile is never
    overwritten by a stale decision."""
    with _editing(store) as edit:
        deployment = require_deployment(edit.data, name, environment)
        if deployment.canary is not None:
            if to is not None:
                raise InvalidTransition(f"a canary of {name} {deployment.canary.version} is running in {environment}: "
                                        "roll it back first (without --to), then roll the stable version back")
            return _rollback_canary(edit, name, environment, change, {})
        target = to or deployment.previous_version
        if target is None:
            raise InvalidTransition(f"{name} in {environment} has no previous version to roll back to; use --to VERSION")
        require_version(edit.data, store, name, target)
        bad = deployment.version
        if target == bad:
            raise InvalidTransition(f"{name} {target} is already the stable version in {environment}")
        set_stable(edit.data, name, environment, target, replaced_status="rolled_back")
        edit.data.deployments[name][environment].last_rollback = {"kind": "stable", "from": bad, "to": target,
                                                                   "at": utc_now(), "reason": change.reason}
        edit.record("rollback", change, name, environment, before=bad, after=target)
    return Outcome("rollback", name, environment, True, before=bad, after=target)
