"""Safe rollout in the registry: canaries, stepped promotion, shadows, bake periods, and their rollbacks.

Each is an operation for modelstore.transitions.transition. The ones a gateway worker decides (rolling a canary back,
stepping it up, ending or rolling back a bake) carry the state the worker judged (`expected_version`,
`expected_weight`) and change nothing when it is gone: the second worker to decide the same thing neither fails nor
writes a second audit entry. The functions at the end are the transition call with the arguments spelled out.

The split's routing salt is chosen by the caller (`new_routing_salt`, in `start_canary` and `start_shadow`) and carried
by the operation, so that `apply` stays a pure function that `onnxgate audit replay` can run again.
"""
from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from modelstore.backends import ModelRepository
from modelstore.clock import epoch_seconds, iso_after
from modelstore.deployments import RegistryOperation, require_deployment, require_version, set_stable, settle_status
from modelstore.errors import InvalidTransition
from modelstore.registry import ROUTING_SALT, BakeState, CanaryState, Deployment, RegistryData, ShadowState
from modelstore.slo import DEFAULT_BAKE_S, SloPolicy
from modelstore.transitions import Change, Outcome, transition


def _check_weight(weight: float, what: str) -> float:
    if not (math.isfinite(weight) and 0 < weight <= 100):
        raise InvalidTransition(f"{what} must be a percentage above 0 and at most 100, got {weight}")
    return float(weight)


def new_routing_salt() -> str:
    return secrets.token_hex(16)


def _check_salt(salt: str | None) -> str | None:
    if salt is not None and not ROUTING_SALT.fullmatch(salt):
        raise InvalidTransition(f"a routing salt is 16 to 128 lowercase hex digits, got {salt!r}")
    return salt


def _give_salt(deployment: Deployment, salt: str | None) -> dict:
    """The deployment keeps the salt it has (users keep their side in every canary of its life); one without gets
    `salt`. The audit details: the salt given, if any, so that replay gives the same."""
    if deployment.routing_salt is not None or salt is None:
        return {}
    deployment.routing_salt = salt
    return {"routing_salt": salt}


def canary_steps(weight: float, steps: Iterable[float]) -> list[float]:
    """The weights still to climb to: strictly increasing, each in (0, 100]; those at or below `weight` are dropped
    (`--weight 10 --steps 5,25,50,100` climbs 25, 50, 100)."""
    ladder = [_check_weight(step, "every step") for step in steps]
    if any(later <= earlier for earlier, later in zip(ladder, ladder[1:], strict=False)):
        raise InvalidTransition(f"steps must increase strictly, got {', '.join(f'{s:g}' for s in ladder)}")
    return [step for step in ladder if step > weight]


def next_step(canary: CanaryState) -> float | None:
    return next((step for step in canary.steps if step > canary.weight), None)


def bake_seconds(deployment: Deployment, default_s: float | None) -> float:
    """The deployment's SLO bake_s, else `default_s` (the caller's: a CLI flag, the gateway's SLO defaults), else
    DEFAULT_BAKE_S."""
    if deployment.slo and deployment.slo.bake_s is not None:
        return deployment.slo.bake_s
    return DEFAULT_BAKE_S if default_s is None else default_s


def bake_active(deployment: Deployment, now: float) -> bool:
    return deployment.bake is not None and epoch_seconds(deployment.bake.until) > now


def _unchanged(action: str, model: str, environment: str, deployment: Deployment) -> Outcome:
    canary = deployment.canary
    return Outcome(action, model, environment, False, before=deployment.version,
                   after=canary.version if canary and action == "canary_step" else deployment.version,
                   weight=canary.weight if canary and action == "canary_step" else None)


# --- canary -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartCanary:
    """Send `weight` percent of the environment's traffic to `version`. Again for the running canary's version, it
    changes its weight, steps or SLO; a canary of another version must be promoted or rolled back first. A bake
    period still running ends: the judge watches one change at a time. A deployment without a routing salt gets
    `routing_salt` (None: it stays unsalted, as replayed entries from before salts)."""

    model: str
    environment: str
    version: str
    weight: float
    steps: tuple[float, ...] = ()
    interval_s: float | None = None
    slo: SloPolicy | None = None
    routing_salt: str | None = None

    def prepare(self, store: ModelRepository) -> StartCanary:
        weight = _check_weight(self.weight, "--weight")
        ladder = canary_steps(weight, self.steps)
        if ladder and (self.interval_s is None or self.interval_s <= 0):
            raise InvalidTransition("steps need a positive interval (e.g. --interval 10m) to wait between them")
        if self.slo is not None:
            self.slo.checked()
        version = store.verify_version(self.model, self.version).version
        return StartCanary(self.model, self.environment, version, weight, tuple(ladder),
                           self.interval_s if ladder else None, self.slo, _check_salt(self.routing_salt))

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        name, environment, version = self.model, self.environment, self.version
        require_version(state, name, version)
        deployment = require_deployment(state, name, environment)
        if version == deployment.version:
            raise InvalidTransition(f"{name} {version} is already the stable version in {environment}")
        running = deployment.canary
        if running and running.version != version:
            raise InvalidTransition(f"a canary of {name} {running.version} is running in {environment}; promote it or "
                                    "roll it back first")
        deployment.canary = CanaryState(version=version, weight=self.weight, steps=list(self.steps),
                                        interval_s=self.interval_s, started_at=running.started_at if running else now,
                                        step_started_at=now)
        deployment.slo = (deployment.slo or SloPolicy()).merged(self.slo) if self.slo else deployment.slo
        ended_bake, deployment.bake = deployment.bake, None
        salt = _give_salt(deployment, self.routing_salt)
        settle_status(state, name, version, "registered")
        details = {"weight": self.weight, "steps": list(self.steps), "interval_s": self.interval_s,
                   "previous_weight": running.weight if running else None,
                   "ended_bake_of": ended_bake.previous_version if ended_bake else None,
                   "slo": self.slo.given() if self.slo else None, **salt}
        return Outcome("canary", name, environment, True, before=deployment.version, after=version,
                       weight=self.weight, details=details)


def _promote(state: RegistryData, name: str, environment: str, now: str, default_bake_s: float | None,
             via: str) -> Outcome:
    deployment = state.deployments[name][environment]
    canary = deployment.canary
    seconds = bake_seconds(deployment, default_bake_s)
    previous = set_stable(state, name, environment, canary.version, now, replaced_status="deprecated")
    promoted = state.deployments[name][environment]
    if previous and seconds > 0:
        promoted.bake = BakeState(previous_version=previous, until=iso_after(seconds, now))
    details = {"weight": canary.weight, "via": via, "bake_s": seconds,
               "bake_until": promoted.bake.until if promoted.bake else None}
    return Outcome("promote", name, environment, True, before=previous, after=canary.version, weight=100.0,
                   details=details)


@dataclass(frozen=True)
class Promote(RegistryOperation):
    """The canary becomes the stable version; the one it replaces is deprecated and baked against for the
    deployment's SLO bake_s, else `default_bake_s`, else DEFAULT_BAKE_S (0: no bake). With `expected_version` (a
    gateway's decision), a canary that is gone or changed is a no-op rather than an error."""

    model: str
    environment: str
    default_bake_s: float | None = None
    expected_version: str | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        canary = deployment.canary
        if self.expected_version is not None and (canary is None or canary.version != self.expected_version):
            return _unchanged("promote", self.model, self.environment, deployment)
        if canary is None:
            raise InvalidTransition(f"{self.model} has no canary in {self.environment} to promote")
        return _promote(state, self.model, self.environment, now, self.default_bake_s, via="promote")


@dataclass(frozen=True)
class AdvanceCanary(RegistryOperation):
    """Raise the canary to its next step; the step to 100 promotes. A compare-and-set on the weight the caller saw:
    when another worker has already stepped (or the canary is gone), this does nothing."""

    model: str
    environment: str
    expected_weight: float
    expected_version: str | None = None
    default_bake_s: float | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        canary = deployment.canary
        stale = (canary is None or canary.weight != self.expected_weight
                 or (self.expected_version is not None and canary.version != self.expected_version))
        target = None if stale else next_step(canary)
        if target is None:
            return _unchanged("canary_step", self.model, self.environment, deployment)
        if target >= 100:
            return _promote(state, self.model, self.environment, now, self.default_bake_s, via="steps")
        details = {"weight_from": canary.weight, "weight_to": target}
        canary.weight, canary.step_started_at = target, now
        return Outcome("canary_step", self.model, self.environment, True, before=deployment.version,
                       after=canary.version, weight=target, details=details)


def _roll_back_canary(state: RegistryData, name: str, environment: str, now: str, reason: str | None,
                      figures: dict) -> Outcome:
    deployment = state.deployments[name][environment]
    canary = deployment.canary
    deployment.canary = None
    deployment.last_rollback = {"kind": "canary", "from": canary.version, "to": deployment.version, "at": now,
                                "weight": canary.weight, "reason": reason, **figures}
    settle_status(state, name, canary.version, "rolled_back")
    return Outcome("canary_rollback", name, environment, True, before=canary.version, after=deployment.version,
                   weight=canary.weight, details={"weight": canary.weight, **figures})


@dataclass(frozen=True)
class RollbackCanary(RegistryOperation):
    """Stop the canary: all traffic back to stable, its version marked rolled_back, `last_rollback` recording
    `figures` (the judge's reasons and measurements). Without a canary (or with another one than expected) this is
    a no-op."""

    gated_as: ClassVar[None] = None  # takes a version out: never gated (modelstore.gates)

    model: str
    environment: str
    figures: dict = field(default_factory=dict)
    expected_version: str | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        canary = deployment.canary
        if canary is None or (self.expected_version is not None and canary.version != self.expected_version):
            return _unchanged("canary_rollback", self.model, self.environment, deployment)
        return _roll_back_canary(state, self.model, self.environment, now, change.reason, self.figures)


# --- bake -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackBake(RegistryOperation):
    """During a bake period, return to the version the promotion replaced. A no-op when there is no bake or the
    stable version is no longer `expected_version` (another worker, or ops, got there first)."""

    gated_as: ClassVar[None] = None  # takes a version out: never gated (modelstore.gates)

    model: str
    environment: str
    figures: dict = field(default_factory=dict)
    expected_version: str | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        bake = deployment.bake
        if bake is None or (self.expected_version is not None and deployment.version != self.expected_version):
            return _unchanged("bake_rollback", self.model, self.environment, deployment)
        bad = deployment.version
        set_stable(state, self.model, self.environment, bake.previous_version, now, replaced_status="rolled_back")
        state.deployments[self.model][self.environment].last_rollback = {
            "kind": "bake", "from": bad, "to": bake.previous_version, "at": now, "reason": change.reason,
            **self.figures}
        return Outcome("bake_rollback", self.model, self.environment, True, before=bad, after=bake.previous_version,
                       details={"bake_until": bake.until, **self.figures})


@dataclass(frozen=True)
class EndBake(RegistryOperation):
    """The bake period is over and the new stable version held: stop watching it, and let the replaced version be
    unloaded. A no-op when the bake is gone, not over yet, or of another version than `expected_version`."""

    gated_as: ClassVar[None] = None  # takes a version out: never gated (modelstore.gates)

    model: str
    environment: str
    expected_version: str | None = None
    figures: dict = field(default_factory=dict)

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        bake = deployment.bake
        if (bake is None or bake_active(deployment, epoch_seconds(now))
                or (self.expected_version is not None and deployment.version != self.expected_version)):
            return _unchanged("bake_end", self.model, self.environment, deployment)
        deployment.bake = None
        return Outcome("bake_end", self.model, self.environment, True, before=bake.previous_version,
                       after=deployment.version, details={"bake_until": bake.until, **self.figures})


# --- shadow -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartShadow:
    """Mirror `weight` percent of the environment's requests to `version`; its answers are measured, never returned.
    A deployment without a routing salt gets `routing_salt`, as with StartCanary."""

    model: str
    environment: str
    version: str
    weight: float = 100.0
    routing_salt: str | None = None

    def prepare(self, store: ModelRepository) -> StartShadow:
        weight = _check_weight(self.weight, "--weight")
        version = store.verify_version(self.model, self.version).version
        return StartShadow(self.model, self.environment, version, weight, _check_salt(self.routing_salt))

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        name, environment, version = self.model, self.environment, self.version
        require_version(state, name, version)
        deployment = require_deployment(state, name, environment)
        if version == deployment.version:
            raise InvalidTransition(f"{name} {version} is the stable version in {environment}; shadow another version")
        replaced = deployment.shadow
        deployment.shadow = ShadowState(version=version, weight=self.weight, started_at=now)
        salt = _give_salt(deployment, self.routing_salt)
        settle_status(state, name, version, "registered")
        if replaced and replaced.version != version:
            settle_status(state, name, replaced.version, "registered")
        return Outcome("shadow", name, environment, True, before=replaced.version if replaced else None,
                       after=version, weight=self.weight, details={"weight": self.weight, **salt})


@dataclass(frozen=True)
class StopShadow(RegistryOperation):
    gated_as: ClassVar[None] = None  # takes a version out: never gated (modelstore.gates)

    model: str
    environment: str

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        shadow = deployment.shadow
        if shadow is None:
            raise InvalidTransition(f"{self.model} has no shadow in {self.environment} to stop")
        deployment.shadow = None
        settle_status(state, self.model, shadow.version, "registered")
        return Outcome("shadow_stop", self.model, self.environment, True, before=shadow.version, after=None,
                       weight=shadow.weight, details={"weight": shadow.weight})


# --- what `onnxgate rollback` means -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollback(RegistryOperation):
    """With a canary running, roll the canary back (stable is untouched; `to` is refused as ambiguous). Otherwise
    return the stable version to its previous one, or to `to`. Decided on the state it commits on, so a canary
    started meanwhile is never overwritten by a stale decision."""

    gated_as: ClassVar[str] = "rollback"  # judged by the policy's rollback_approvals (modelstore.gates)

    model: str
    environment: str
    to: str | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        name, environment = self.model, self.environment
        deployment = require_deployment(state, name, environment)
        if deployment.canary is not None:
            if self.to is not None:
                raise InvalidTransition(f"a canary of {name} {deployment.canary.version} is running in {environment}: "
                                        "roll it back first (without --to), then roll the stable version back")
            return dataclasses.replace(_roll_back_canary(state, name, environment, now, change.reason, {}),
                                       event="deployment_rolled_back")
        target = self.to or deployment.previous_version
        if target is None:
            raise InvalidTransition(f"{name} in {environment} has no previous version to roll back to; use --to VERSION")
        require_version(state, name, target)
        bad = deployment.version
        if target == bad:
            raise InvalidTransition(f"{name} {target} is already the stable version in {environment}")
        set_stable(state, name, environment, target, now, replaced_status="rolled_back")
        state.deployments[name][environment].last_rollback = {"kind": "stable", "from": bad, "to": target, "at": now,
                                                               "reason": change.reason}
        return Outcome("rollback", name, environment, True, before=bad, after=target)


# --- the same, as calls -----------------------------------------------------------------------------------------


def start_canary(store: ModelRepository, name: str, version: str, environment: str, weight: float,
                 steps: Iterable[float] = (), interval_s: float | None = None, change: Change = Change(),
                 slo: SloPolicy | None = None, routing_salt: str | None = None, dry_run: bool = False) -> Outcome:
    """`routing_salt`: the salt a deployment without one gets (default: a fresh one)."""
    operation = StartCanary(name, environment, version, weight, tuple(steps), interval_s, slo,
                            routing_salt or new_routing_salt())
    return transition(store, operation, change, dry_run=dry_run)


def promote(store: ModelRepository, name: str, environment: str, change: Change = Change(), *,
            bake_s: float | None = None, expected_version: str | None = None, dry_run: bool = False) -> Outcome:
    return transition(store, Promote(name, environment, bake_s, expected_version), change, dry_run=dry_run)


def advance_canary_step(store: ModelRepository, name: str, environment: str, expected_weight: float,
                        change: Change = Change(), *, expected_version: str | None = None,
                        bake_s: float | None = None) -> Outcome:
    return transition(store, AdvanceCanary(name, environment, expected_weight, expected_version, bake_s), change)


def rollback_canary(store: ModelRepository, name: str, environment: str, change: Change = Change(),
                    details: dict | None = None, *, expected_version: str | None = None) -> Outcome:
    return transition(store, RollbackCanary(name, environment, details or {}, expected_version), change)


def rollback_bake(store: ModelRepository, name: str, environment: str, change: Change = Change(),
                  details: dict | None = None, *, expected_version: str | None = None) -> Outcome:
    return transition(store, RollbackBake(name, environment, details or {}, expected_version), change)


def start_shadow(store: ModelRepository, name: str, version: str, environment: str, weight: float = 100.0,
                 change: Change = Change(), routing_salt: str | None = None, *, dry_run: bool = False) -> Outcome:
    """`routing_salt`: the salt a deployment without one gets (default: a fresh one)."""
    return transition(store, StartShadow(name, environment, version, weight, routing_salt or new_routing_salt()),
                      change, dry_run=dry_run)


def stop_shadow(store: ModelRepository, name: str, environment: str, change: Change = Change(), *,
                dry_run: bool = False) -> Outcome:
    return transition(store, StopShadow(name, environment), change, dry_run=dry_run)


def rollback_environment(store: ModelRepository, name: str, environment: str, change: Change = Change(), *,
                         to: str | None = None, dry_run: bool = False) -> Outcome:
    return transition(store, Rollback(name, environment, to), change, dry_run=dry_run)
