"""What each audit entry means in the lifecycle vocabulary tools expect (the `event` of an entry), and the operation
that records an event without changing any deployment (a refusal, a champion/challenger decision)."""
from __future__ import annotations

from dataclasses import dataclass, field

from modelstore.backends import ModelRepository
from modelstore.deployments import RegistryOperation
from modelstore.registry import RegistryData
from modelstore.transitions import Change, Outcome, transition

EVENT_BY_ACTION = {
    "register": "model_registered",
    "evaluate": "model_evaluated",
    "gates_passed": "deployment_verified",
    "deployment_denied": "deployment_denied",
    "canary": "deployment_initiated",
    "canary_step": "deployment_progressed",
    "deploy": "deployment_completed",
    "promote": "deployment_completed",
    "canary_rollback": "deployment_failed",
    "bake_rollback": "deployment_failed",
    "rollback": "deployment_rolled_back",
    "bake_end": "deployment_baked",
    "shadow": "shadow_started",
    "shadow_stop": "shadow_stopped",
    "challenge": "challenge_decided",
    "snapshot_create": "snapshot_created",
    "snapshot_restore": "snapshot_restored",
    "capture": "capture_configured",
    # a retraining job's steps (retrain/): one entry per status it reaches
    "retrain_pending": "retrain_requested",
    "retrain_running": "retrain_training",
    "retrain_validation": "retrain_validating",
    "retrain_deploying": "retrain_deploying",
    "retrain_completed": "retrain_completed",
    "retrain_rejected": "retrain_rejected",
    "retrain_failed": "retrain_failed",
    "retrain_abandoned": "retrain_abandoned",
}
"""An entry's event when its operation does not name one (an approval is approved or rejected; a canary rolled back
by hand is rolled back, by the judge it failed)."""
LIFECYCLE_EVENTS: frozenset[str] = frozenset({*EVENT_BY_ACTION.values(), "deployment_approved", "deployment_rejected"})
"""Every event an audit entry can carry (the names events.toml subscribes to)."""


def event_of(entry: dict) -> str | None:
    """The event of an audit entry, also for entries written before events were recorded."""
    return entry.get("event") or EVENT_BY_ACTION.get(entry.get("action", ""))


@dataclass(frozen=True)
class RecordEvent(RegistryOperation):
    """An audit entry that changes no deployment: a gate's refusal, a gate's pass, a challenge's decision."""

    action: str
    model: str | None
    environment: str | None = None
    version: str | None = None
    details: dict = field(default_factory=dict)

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        return Outcome(self.action, self.model, self.environment, True, after=self.version, details=self.details)


def record_event(store: ModelRepository, action: str, model: str | None, environment: str | None,
                 version: str | None, details: dict, change: Change = Change()) -> Outcome:
    return transition(store, RecordEvent(action, model, environment, version, details), change)
