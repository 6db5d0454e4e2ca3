"""The governance gates: the check the transition API runs on every change (modelstore.transitions, step 4).

A change is gated for each version it brings into an environment: a new stable version (deploy, promote, a canary's
step to 100, a snapshot restore, a rollback) or a new canary. Re-weighting a running canary, shadows (they answer no
one) and the judge's own rollbacks (which take a version out) are not gated. The environment's policy (policy.toml,
modelstore.policy) names the checks; every check is judged, and a refusal lists each failing one with its measured
value and its limit. A manual rollback (`onnxgate rollback`) to a version is judged by `rollback_approvals` only:
its target has served there before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelstore.approvals import tally
from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.errors import GateRefused, StoreError
from modelstore.policy import GateRules
from modelstore.registry import RegistryData, VersionRecord
from modelstore.transitions import Proposal


@dataclass(frozen=True)
class GateCheck:
    """One gate's finding: `value` against `limit` ('>= 0.7', 'true', ...), and where the value came from."""

    name: str
    passed: bool
    value: Any
    limit: str
    source: str | None = None

    def to_json(self) -> dict:
        return {"check": self.name, "passed": self.passed, "value": self.value, "limit": self.limit,
                **({"source": self.source} if self.source else {})}

    def describe(self) -> str:
        source = f" ({self.source})" if self.source else ""
        return f"{self.name} = {_shown(self.value)}{source}, needs {self.limit}"


@dataclass(frozen=True)
class Entry:
    """A version coming into an environment, and as what."""

    model: str
    environment: str
    version: str
    role: str  # "stable" or "canary"


def entering(before: RegistryData, after: RegistryData) -> list[Entry]:
    found = []
    for model, environments in after.deployments.items():
        for environment, deployment in environments.items():
            old = before.deployment(model, environment)
            if old is None or old.version != deployment.version:
                found.append(Entry(model, environment, deployment.version, "stable"))
            canary = deployment.canary
            if canary is not None and (old is None or old.canary is None or old.canary.version != canary.version):
                found.append(Entry(model, environment, canary.version, "canary"))
    return found


def enforce_policy(store: ModelRepository, proposal: Proposal) -> list[dict]:
    """The store's gate (a modelstore.backends.Check): raise GateRefused for the first version that fails its
    environment's policy, else return each checked version's verdict."""
    kind = getattr(proposal.operation, "gated_as", "deploy")
    if kind is None:
        return []
    entries = entering(proposal.before, proposal.after)
    if not entries:
        return []
    policy = store.read_policy()
    if policy is None:
        return []
    actor = proposal.change.actor or default_actor()
    verdicts = []
    for entry in entries:
        rules = policy.rules(entry.model, entry.environment)
        if rules is None:
            continue
        checks = judge(store, proposal.before, entry, rules, actor, kind)  # as it stood before this change
        verdict = {"model": entry.model, "environment": entry.environment, "version": entry.version,
                   "role": entry.role, "action": proposal.outcome.action, "kind": kind,
                   "passed": all(check.passed for check in checks), "checks": [check.to_json() for check in checks]}
        if not verdict["passed"]:
            failing = "; ".join(check.describe() for check in checks if not check.passed)
            raise GateRefused(f"{proposal.outcome.action} of {entry.model} {entry.version} to {entry.environment} "
                              f"refused by policy: {failing}", verdict)
        verdicts.append(verdict)
    return verdicts


def judge(store: ModelRepository, state: RegistryData, entry: Entry, rules: GateRules, actor: str,
          kind: str) -> list[GateCheck]:
    record = state.models[entry.model][entry.version]
    if kind == "rollback":
        return [approvals_check(record, entry, rules.rollback_approvals, actor, rules.self_approval, "rollback")]
    checks = [metric_check(record, name, limit, minimum=True) for name, limit in sorted(rules.min_metrics.items())]
    checks += [metric_check(record, name, limit, minimum=False) for name, limit in sorted(rules.max_metrics.items())]
    if rules.min_training_samples is not None:
        samples = record.training_samples
        checks.append(GateCheck("training_samples", samples is not None and samples >= rules.min_training_samples,
                            samples, f">= {rules.min_training_samples}"))
    checks += artifact_checks(store, entry, rules, record)
    checks += [GateCheck(f"deployed_to.{required}", _deployed_to(state, record, entry, required), sorted(
        record.deployed_to), f"includes {required}") for required in rules.requires]
    if rules.approvals or record.approvals.get(entry.environment):
        checks.append(approvals_check(record, entry, rules.approvals, actor, rules.self_approval, "deploy"))
    return checks


def metric_check(record: VersionRecord, name: str, limit: float, *, minimum: bool) -> GateCheck:
    """Measured (onnxgate evaluate) preferred over given (at export)."""
    measured = record.evaluation.metrics if record.evaluation else {}
    if name in measured:
        value, source = measured[name], "measured"
    elif name in record.metrics:
        value, source = record.metrics[name], "given"
    else:
        value, source = None, "missing"
    passed = value is not None and (value >= limit if minimum else value <= limit)
    return GateCheck(name, passed, value, f"{'>=' if minimum else '<='} {limit:g}", source)


def artifact_checks(store: ModelRepository, entry: Entry, rules: GateRules, record: VersionRecord) -> list[GateCheck]:
    checks = []
    try:
        metadata = store.verify_version(entry.model, entry.version) if rules.verify_sha256 else \
            store.read_metadata(entry.model, entry.version)
        problem = None
    except StoreError as exc:
        metadata, problem = None, str(exc)
    if rules.verify_sha256:
        checks.append(GateCheck("sha256_verified", problem is None, problem or "every file matches", "true"))
    if metadata is None:
        if not rules.verify_sha256:
            checks.append(GateCheck("artifact_readable", False, problem, "true"))
        return checks
    if rules.require_parity:
        checks.append(GateCheck("parity_passed", metadata.parity.passed, metadata.parity.passed, "true"))
    if rules.require_node_compatible:
        node = metadata.node_compatibility
        passed = node.compatible and (node.node_parity is None or not node.node_parity.checked
                                      or bool(node.node_parity.passed))
        checks.append(GateCheck("node_compatible", passed, passed, "true"))
    if rules.require_signature:
        checks.append(GateCheck("signature_verified", record.signature_verified, record.signature_verified, "true"))
    return checks


def approvals_check(record: VersionRecord, entry: Entry, required: int, actor: str, self_approval: bool,
                    kind: str) -> GateCheck:
    counted = tally(record, entry.environment, required, actor=actor, self_approval=self_approval, kind=kind)
    name = "approvals" if kind == "deploy" else "rollback_approvals"
    limit = f">= {required} distinct approver(s), none rejecting" + ("" if self_approval else f", not {actor}")
    return GateCheck(name, counted.status == "approved", counted.to_json(), limit)


def _deployed_to(state: RegistryData, record: VersionRecord, entry: Entry, environment: str) -> bool:
    """Whether the version has been the stable one of `environment` (registries from before `deployed_to` was kept
    count its current stable version)."""
    deployment = state.deployment(entry.model, environment)
    return environment in record.deployed_to or (deployment is not None and deployment.version == entry.version)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and "status" in value:
        return f"{value['status']} ({len(value['approvers'])} counted" + (
            f", rejected by {', '.join(value['rejected_by'])}" if value["rejected_by"] else "") + (
            f", own approval of {', '.join(value['not_counted'])} not counted" if value["not_counted"] else "") + ")"
    return str(value)
