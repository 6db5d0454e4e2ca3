"""Approvals: a reviewer approves or rejects a version for an environment (`onnxgate approve`), and what the
approvals of a version add up to (pending / approved / rejected) under an environment's policy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.deployments import RegistryOperation, require_version
from modelstore.registry import ApprovalRecord, ApprovalStatus, RegistryData, VersionRecord
from modelstore.transitions import Change, Outcome, transition

ApprovalKind = Literal["deploy", "rollback"]


@dataclass(frozen=True)
class Approve(RegistryOperation):
    model: str
    version: str
    environment: str
    status: ApprovalStatus = "approved"
    kind: ApprovalKind = "deploy"

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        require_version(state, self.model, self.version)
        record = ApprovalRecord(actor=change.actor or default_actor(), status=self.status, at=now, reason=change.reason,
                                kind=self.kind)
        state.models[self.model][self.version].approvals.setdefault(self.environment, []).append(record)
        event = "deployment_approved" if self.status == "approved" else "deployment_rejected"
        return Outcome("approval", self.model, self.environment, True, after=self.version, event=event,
                       details={"status": self.status, "kind": self.kind})


@dataclass(frozen=True)
class ApprovalTally:
    """A version's approvals for an environment, as a policy counts them for a change made by `actor`."""

    status: Literal["pending", "approved", "rejected"]
    approvers: list[str]
    rejected_by: list[str]
    not_counted: list[str]
    required: int

    def to_json(self) -> dict:
        return {"status": self.status, "approvers": self.approvers, "rejected_by": self.rejected_by,
                "not_counted": self.not_counted, "required": self.required}


def tally(record: VersionRecord, environment: str, required: int, *, actor: str | None = None,
          self_approval: bool = False, kind: ApprovalKind = "deploy") -> ApprovalTally:
    """Each reviewer's latest decision counts once. Any rejection rejects; else `required` distinct approvers
    (the actor's own approval not among them unless `self_approval`) approve; else it is pending."""
    latest = record.approvals_for(environment, kind)
    rejected = sorted(name for name, decision in latest.items() if decision.status == "rejected")
    approving = sorted(name for name, decision in latest.items() if decision.status == "approved")
    own = [name for name in approving if name == actor and not self_approval]
    counted = [name for name in approving if name not in own]
    status = "rejected" if rejected else "approved" if len(counted) >= required else "pending"
    return ApprovalTally(status, counted, rejected, own, required)


def approve(store: ModelRepository, name: str, version: str, environment: str, change: Change = Change(), *,
            status: ApprovalStatus = "approved", kind: ApprovalKind = "deploy") -> Outcome:
    return transition(store, Approve(name, version, environment, status, kind), change)
