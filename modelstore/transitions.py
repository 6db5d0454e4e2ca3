"""The one way to change the registry: `transition(store, operation, change)`.

Whoever asks (the CLI, the gateway's judge, later the ops API or a retraining loop) hands an operation to this
function, which
1. lets the operation check the artifacts it names (sha256, 'latest' resolved) before anything is read;
2. reads the registry's state and revision;
3. lets the operation compute the new state (pure: modelstore.deployments and modelstore.rollout); an operation
   whose decision is already applied (a second gateway worker deciding the same rollback) changes nothing, and
   nothing is written or audited;
4. runs the store's checks (the governance gates of policy.toml, modelstore.gates): a check that refuses raises
   ChangeRefused, and a GateRefused is recorded as a `deployment_denied` audit entry with its figures before it
   reaches the caller; a check that passes returns the figures it checked, logged as a `gates_passed` entry;
5. commits the new state with its audit entries, compare-and-set on the revision it read; if another writer got there
   first, it starts again from 2, so no update is lost and the operation always judges the latest state.

`dry_run=True` stops after 4: the outcome (with the gates' figures) of a change that is not made, and nothing written,
a refusal included.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.clock import utc_now
from modelstore.errors import GateRefused, RevisionConflict
from modelstore.registry import RegistryData

CONFLICT_DEADLINE_S = 30.0
"""How long to keep retrying a commit that other writers keep beating: a conflict is retried, never dropped, and
after this long reported."""


@dataclass(frozen=True)
class Change:
    """Who changed what, and why: carried into the audit log."""

    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an operation did. `changed` is False for the no-op of an already-applied decision. `details` (the
    operation's parameters and figures) go into the audit entry as they are."""

    action: str
    model: str | None
    environment: str | None
    changed: bool
    before: str | None = None
    after: str | None = None
    weight: float | None = None
    details: dict = field(default_factory=dict)
    event: str | None = None
    """The lifecycle event, when the action alone does not say it (modelstore.events.EVENT_BY_ACTION)."""
    checks: tuple[dict, ...] = ()
    """What the store's checks verified (their `gates_passed` records): filled in by `transition`."""


class Operation(Protocol):
    """One kind of change. `apply` is pure: it reads and edits `state` (a private copy) at time `now` for `change`
    (who asks, and why: a rollback records its reason), raises a StoreError for a change the state does not allow,
    and returns what it did."""

    def prepare(self, store: ModelRepository) -> Operation:
        """Checks against the artifacts (they do not change with the registry): return the operation to apply."""

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome: ...


@dataclass(frozen=True)
class Proposal:
    """A change about to be committed, as checks see it."""

    operation: Operation
    change: Change
    before: RegistryData
    after: RegistryData
    outcome: Outcome


def transition(store: ModelRepository, operation: Operation, change: Change = Change(), *,
               dry_run: bool = False) -> Outcome:
    operation = operation.prepare(store)
    deadline = time.monotonic() + CONFLICT_DEADLINE_S
    attempt = 0
    while True:
        snapshot = store.registry.read()
        now = utc_now()
        state = snapshot.state.model_copy(deep=True)
        outcome = operation.apply(state, now, change)
        if not outcome.changed:
            return outcome
        proposal = Proposal(operation, change, snapshot.state, state, outcome)
        try:
            passed = tuple(record for check in store.checks for record in check(store, proposal))
        except GateRefused as refusal:
            if not dry_run:
                record_refusal(store, refusal, change)
            raise
        outcome = dataclasses.replace(outcome, checks=passed)
        if dry_run:
            return outcome
        entries = [audit_entry(check_outcome(outcome, record), change, now) for record in passed]
        try:
            store.registry.commit(snapshot.revision, state, [*entries, audit_entry(outcome, change, now)])
        except RevisionConflict:
            attempt += 1
            if time.monotonic() > deadline:
                raise RevisionConflict(f"{outcome.action} of {outcome.model}: the registry kept changing under it for "
                                       f"{CONFLICT_DEADLINE_S:g} s ({attempt} attempts); nothing was written") from None
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))
            continue
        return outcome


def check_outcome(outcome: Outcome, record: dict) -> Outcome:
    """The `gates_passed` entry logged before a change, with the figures a check verified."""
    return Outcome("gates_passed", record.get("model", outcome.model), record.get("environment", outcome.environment),
                   True, after=record.get("version"), details=record)


DENIED = "deployment_denied"


def record_refusal(store: ModelRepository, refusal: GateRefused, change: Change) -> None:
    """Log a refusal as its own change (the registry's state is untouched; only its revision moves)."""
    from modelstore.events import RecordEvent  # events builds on this module

    verdict = refusal.verdict
    event = RecordEvent(DENIED, verdict.get("model"), verdict.get("environment"), verdict.get("version"), verdict)
    transition(store, event, change)


def audit_entry(outcome: Outcome, change: Change, now: str) -> dict:
    from modelstore.events import EVENT_BY_ACTION

    return {"time": now, "action": outcome.action, "event": outcome.event or EVENT_BY_ACTION.get(outcome.action),
            "actor": change.actor or default_actor(), "reason": change.reason, "model": outcome.model,
            "environment": outcome.environment, "before": outcome.before, "after": outcome.after,
            "details": outcome.details}
