"""Snapshots: the stable version of every model in every environment, saved (`onnxgate snapshot create`) and
restored (`snapshot restore`) as changes through the transition API, so a restore passes the gates like any deploy.

A restore makes each (model, environment) of the snapshot serve the version it served then. A canary, shadow or bake
running there ends (the snapshot records stable versions only); a model or environment deployed since the snapshot
is left as it is, and the plan says so: a restore never stops a model from serving.
"""
from __future__ import annotations

from dataclasses import dataclass

from modelstore.audit import default_actor
from modelstore.backends import ModelRepository
from modelstore.deployments import RegistryOperation, require_version, set_stable
from modelstore.errors import InvalidTransition, SnapshotNotFound
from modelstore.registry import RegistryData, SnapshotRecord
from modelstore.transitions import Change, Outcome, transition


@dataclass(frozen=True)
class CreateSnapshot(RegistryOperation):
    name: str | None = None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        snapshot_id = str(1 + max((int(key) for key in state.snapshots if key.isdigit()), default=0))
        deployments = {model: {environment: deployment.version for environment, deployment in environments.items()}
                       for model, environments in state.deployments.items() if environments}
        state.snapshots[snapshot_id] = SnapshotRecord(name=self.name, created_at=now, actor=change.actor or
                                                      default_actor(), revision=state.revision,
                                                      deployments=deployments)
        return Outcome("snapshot_create", None, None, True, after=snapshot_id,
                       details={"id": snapshot_id, "name": self.name, "deployments": deployments})


@dataclass(frozen=True)
class RestoreSnapshot(RegistryOperation):
    snapshot_id: str

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        snapshot = state.snapshots.get(self.snapshot_id)
        if snapshot is None:
            known = ", ".join(sorted(state.snapshots, key=_order)) or "none"
            raise SnapshotNotFound(f"no snapshot {self.snapshot_id!r} (snapshots: {known})")
        plan = restore_plan(state, snapshot)
        if not plan["changes"]:
            raise InvalidTransition(f"snapshot {self.snapshot_id} is what is deployed already: nothing to restore")
        for change_ in plan["changes"]:
            require_version(state, change_["model"], change_["to"])
            set_stable(state, change_["model"], change_["environment"], change_["to"], now,
                       replaced_status="deprecated")
        return Outcome("snapshot_restore", None, None, True, after=self.snapshot_id,
                       details={"id": self.snapshot_id, **plan})


def restore_plan(state: RegistryData, snapshot: SnapshotRecord) -> dict:
    """What restoring `snapshot` would change: the (model, environment) pairs whose stable version differs or that
    run a canary, and those deployed since the snapshot, left as they are."""
    changes, unchanged = [], 0
    for model, environments in sorted(snapshot.deployments.items()):
        for environment, version in sorted(environments.items()):
            current = state.deployment(model, environment)
            if current is not None and current.version == version and current.canary is None and current.bake is None:
                unchanged += 1
                continue
            changes.append({"model": model, "environment": environment, "from": current.version if current else None,
                            "to": version, **({"ends_canary": current.canary.version}
                                             if current is not None and current.canary else {})})
    kept = [{"model": model, "environment": environment, "version": deployment.version}
            for model, environments in sorted(state.deployments.items())
            for environment, deployment in sorted(environments.items())
            if environment not in snapshot.deployments.get(model, {})]
    return {"changes": changes, "unchanged": unchanged, "left_as_is": kept}


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 62, key)


def create_snapshot(store: ModelRepository, name: str | None = None, change: Change = Change()) -> Outcome:
    return transition(store, CreateSnapshot(name), change)


def restore_snapshot(store: ModelRepository, snapshot_id: str, change: Change = Change(), *,
                     dry_run: bool = False) -> Outcome:
    return transition(store, RestoreSnapshot(snapshot_id), change, dry_run=dry_run)
