"""The one way to change the registry: `transition(store, operation, change)`.

Whoever asks (the CLI, the gateway's judge, later the ops API or a retraining loop) hands an operation to this
function, which
1. lets the operation check the artifacts it names (sha256, 'latest' resolved) before anything is read;
2. reads the registry's state and revision;
3. lets the operation compute the new state (pure: modelstore.deployments and modelstore.rollout); an operation
   whose decision is already applied (a second gateway worker deciding the same rollback) changes nothing, and
   nothing is written or audited;
4. runs the store's checks (policies that may refuse the change; the governance issue adds real ones);
5. commits the new state with its audit entry, compare-and-set on the revision it read; if another writer got there
   first, it starts again from 2, so no update is lost and the operation always judges the latest state.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.clock import utc_now
from modelstore.errors import RevisionConflict
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
    model: str
    environment: str | None
    changed: bool
    before: str | None = None
    after: str | None = None
    weight: float | None = None
    details: dict = field(default_factory=dict)


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


def transition(store: ModelRepository, operation: Operation, change: Change = Change()) -> Outcome:
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
        for check in store.checks:
            check(proposal)
        try:
            store.registry.commit(snapshot.revision, state, [audit_entry(outcome, change, now)])
        except RevisionConflict:
            attempt += 1
            if time.monotonic() > deadline:
                raise RevisionConflict(f"{outcome.action} of {outcome.model}: the registry kept changing under it for "
                                       f"{CONFLICT_DEADLINE_S:g} s ({attempt} attempts); nothing was written") from None
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))
            continue
        return outcome


def audit_entry(outcome: Outcome, change: Change, now: str) -> dict:
    return {"time": now, "action": outcome.action, "actor": change.actor or default_actor(), "reason": change.reason,
            "model": outcome.model, "environment": outcome.environment, "before": outcome.before,
            "after": outcome.after, "details": outcome.details}
