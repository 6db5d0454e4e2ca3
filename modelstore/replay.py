"""The registry rebuilt from the audit log: every entry names its operation and parameters, so applying the same
operations, in order, at the times recorded, reproduces the registry. A registry that differs from its replay had a
change nobody logged (or a log entry of a change that was not made); `onnxgate audit replay` checks it, and rebuilds a
lost registry.json from the log."""
from __future__ import annotations

from collections.abc import Iterable

from modelstore.approvals import Approve
from modelstore.audit import withdrawn_positions
from modelstore.capture_rate import SetCaptureRate
from modelstore.deployments import Deploy, Register
from modelstore.errors import AuditChainBroken
from modelstore.evaluations import RecordEvaluation
from modelstore.events import RecordEvent
from modelstore.registry import EvaluationRecord, RegistryData, registry_json
from modelstore.rollout import (
    AdvanceCanary,
    EndBake,
    Promote,
    Rollback,
    RollbackBake,
    RollbackCanary,
    StartCanary,
    StartShadow,
    StopShadow,
)
from modelstore.slo import SloPolicy
from modelstore.snapshots import CreateSnapshot, RestoreSnapshot
from modelstore.transitions import Change, Operation

RECORDS_ONLY = {"gates_passed", "deployment_denied", "challenge", "retrain_pending", "retrain_running",
                "retrain_validation", "retrain_deploying", "retrain_completed", "retrain_rejected", "retrain_failed",
                "retrain_abandoned"}
"""Actions that record a decision and change no state."""


def _without(details: dict, *keys: str) -> dict:
    return {key: value for key, value in details.items() if key not in keys}


def operation_of(entry: dict) -> Operation:
    """The operation an audit entry records, ready to apply again."""
    action, model, environment, after = entry["action"], entry["model"], entry["environment"], entry["after"]
    details = entry.get("details") or {}
    if action == "register":
        return Register(model, after, details.get("sha256"), details.get("metrics") or {},
                        details.get("training_samples"), details.get("force", False),
                        details.get("signature_verified", False))
    if action == "deploy":
        return Deploy(model, environment, after)
    if action == "rollback":
        return Rollback(model, environment, after)
    if action == "canary":
        slo = SloPolicy(**details["slo"]) if details.get("slo") else None
        return StartCanary(model, environment, after, details["weight"], tuple(details.get("steps") or ()),
                           details.get("interval_s"), slo, details.get("routing_salt"))
    if action == "canary_step":
        return AdvanceCanary(model, environment, details["weight_from"])
    if action == "promote":
        return Promote(model, environment, details.get("bake_s"))
    if action == "canary_rollback":
        return RollbackCanary(model, environment, _without(details, "weight"))
    if action == "bake_rollback":
        return RollbackBake(model, environment, _without(details, "bake_until"))
    if action == "bake_end":
        return EndBake(model, environment, figures=_without(details, "bake_until"))
    if action == "shadow":
        return StartShadow(model, environment, after, details["weight"], details.get("routing_salt"))
    if action == "shadow_stop":
        return StopShadow(model, environment)
    if action == "evaluate":
        return RecordEvaluation(model, after, EvaluationRecord.model_validate(details))
    if action == "approval":
        return Approve(model, after, environment, details["status"], details.get("kind", "deploy"))
    if action == "snapshot_create":
        return CreateSnapshot(details.get("name"))
    if action == "snapshot_restore":
        return RestoreSnapshot(details["id"])
    if action == "capture":
        return SetCaptureRate(model, environment, details.get("rate"))
    if action in RECORDS_ONLY:
        return RecordEvent(action, model, environment, after, details)
    raise AuditChainBroken(f"audit entry of revision {entry.get('revision')} records an unknown action {action!r}")


def replay(entries: Iterable[dict]) -> RegistryData:
    entries = list(entries)
    withdrawn = withdrawn_positions(entries)
    state = RegistryData()
    for position, entry in enumerate(entries):
        if position in withdrawn:
            continue
        change = Change(actor=entry.get("actor"), reason=entry.get("reason"))
        outcome = operation_of(entry).apply(state, entry["time"], change)
        if not outcome.changed:
            raise AuditChainBroken(f"audit entry of revision {entry.get('revision')} ({entry['action']} of "
                                   f"{entry['model']}) changes nothing when replayed")
        state.revision = entry.get("revision", state.revision + 1)
    return state


def same_registry(first: RegistryData, second: RegistryData) -> bool:
    return registry_json(first) == registry_json(second)
