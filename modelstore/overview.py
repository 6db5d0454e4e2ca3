"""What the store holds, as plain data: what each environment serves, every model's versions, the audit log filtered,
the snapshots. The read side that `onnxgate status|list|show|history|snapshot list` print and the gateway's ops API
answers with, written once here so that both say the same thing."""
from __future__ import annotations

from modelstore.approvals import tally
from modelstore.backends import ModelRepository
from modelstore.errors import InvalidPolicy, StoreError
from modelstore.events import event_of
from modelstore.registry import RegistryData

HEADLINE_METRICS = ("accuracy", "f1", "roc_auc", "r2", "mae")
HISTORY_LIMIT = 50


def status_rows(data: RegistryData, environment: str | None = None) -> list[dict]:
    """One row per (model, environment): the stable version, its canary and shadow, the last rollback."""
    rows = []
    for model, by_env in sorted(data.deployments.items()):
        for env, deployment in sorted(by_env.items()):
            if environment is not None and env != environment:
                continue
            rows.append({
                "model": model,
                "environment": env,
                "version": deployment.version,
                "deployed_at": deployment.deployed_at,
                "status": deployment.status,
                "canary": f"{deployment.canary.version} ({deployment.canary.weight:g}%)" if deployment.canary else None,
                "shadow": f"{deployment.shadow.version} ({deployment.shadow.weight:g}%)" if deployment.shadow else None,
                "last_rollback": rollback_text(deployment.last_rollback),
            })
    return rows


def rollback_text(rollback: dict | None) -> str | None:
    """'v1.2.0->v1.0.0 canary (latency) 2026-01-31T12:00:00Z' for the table; the JSON output has the whole record."""
    if not rollback:
        return None
    causes = ",".join(rollback.get("causes") or []) or "manual"
    return f"{rollback['from']}->{rollback['to']} {rollback['kind']} ({causes}) {rollback['at']}"


def invalid_deployments(data: RegistryData, environment: str | None = None) -> list[str]:
    """Deployment entries set aside as invalid when the registry was read: reported, never silently left out."""
    return [entry.describe() for entry in data.invalid
            if entry.section == "deployments" and (environment is None or entry.key in (environment, None))]


def version_rows(store: ModelRepository, registry: RegistryData, names: list[str]) -> list[dict]:
    """One row per version of each model in `names`: registry status, where it serves, headline metrics. A version
    whose metadata cannot be read is a row with status 'broken' and the reason."""
    rows = []
    for name in names:
        versions = store.list_versions(name)
        latest = versions[-1] if versions else None
        for version in versions:
            record = registry.models.get(name, {}).get(version)
            serving = sorted(env for env, dep in registry.deployments.get(name, {}).items() if dep.version == version)
            row = {"name": name, "version": version, "latest": version == latest,
                   "status": record.status if record else "unregistered", "environments": serving}
            try:
                metadata = store.read_metadata(name, version)
            except StoreError as exc:
                rows.append({**row, "status": "broken", "error": str(exc), "framework": None, "task": None,
                             "metrics": {}, "created_at": None})
                continue
            rows.append({**row, "framework": metadata.framework, "task": metadata.task,
                         "metrics": {k: v for k, v in metadata.metrics.items() if k in HEADLINE_METRICS},
                         "created_at": metadata.created_at})
    return rows


def model_detail(store: ModelRepository, name: str) -> dict:
    """One model: each version's row with its evaluation and approval tallies, and its deployments. Unknown model:
    ModelNotFound (from the store)."""
    registry = store.registry.read().state
    versions = store.list_versions(name)  # raises ModelNotFound / InvalidName
    rows = version_rows(store, registry, [name])
    required = required_approvals(store)
    for row in rows:
        record = registry.models.get(name, {}).get(row["version"])
        row["evaluation"] = record.evaluation.model_dump(mode="json") if record and record.evaluation else None
        row["approvals"] = {} if record is None else {
            environment: {kind: approval_summary(record, environment, required(environment), kind)
                          for kind in ("deploy", "rollback") if record.approvals_for(environment, kind)}
            for environment in sorted(record.approvals)}
    deployments = {env: deployment.model_dump(mode="json")
                   for env, deployment in sorted(registry.deployments.get(name, {}).items())}
    return {"name": name, "latest": versions[-1] if versions else None, "versions": rows,
            "deployments": deployments}


def approval_summary(record, environment: str, required: int | None, kind: str) -> dict:
    decisions = {actor: decision.status for actor, decision in sorted(record.approvals_for(environment, kind).items())}
    status = "policy unreadable" if required is None else tally(record, environment, required, kind=kind).status
    return {"status": status, "required": required, "decisions": decisions}


def required_approvals(store: ModelRepository):
    """Environment -> approvals its policy requires (None: the policy cannot be read)."""
    try:
        policy = store.read_policy()
    except InvalidPolicy:
        return lambda environment: None

    def required(environment: str) -> int | None:
        rules = policy.for_environment(environment) if policy else None
        return rules.approvals if rules else 0

    return required


def history(store: ModelRepository, *, model: str | None = None, environment: str | None = None,
            event: str | None = None, limit: int = HISTORY_LIMIT) -> list[dict]:
    """The audit log's entries that match every filter given, oldest first; the newest `limit` of them (0 or less:
    all)."""
    entries = [e for e in store.registry.audit.entries()
               if (not model or e.get("model") == model) and (not environment or e.get("environment") == environment)
               and (not event or event_of(e) == event)]
    return entries[-limit:] if limit > 0 else entries


def snapshots(data: RegistryData) -> list[tuple[str, dict]]:
    """Every snapshot as (id, record), oldest first."""
    ordered = sorted(data.snapshots.items(), key=lambda item: (len(item[0]), item[0]))
    return [(snapshot_id, record.model_dump(mode="json")) for snapshot_id, record in ordered]
