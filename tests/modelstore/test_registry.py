from __future__ import annotations

import errno
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelstore import fileio
from modelstore.deployments import Change, Register, deploy
from modelstore.errors import ChangeRefused, CorruptRegistry
from modelstore.layout import Store
from modelstore.registry import RegistryData
from modelstore.replay import replay, same_registry
from modelstore.transitions import Outcome, transition


def _write_many(root: str, writer: int, count: int) -> None:
    store = Store(Path(root))
    for index in range(count):
        transition(store, Register(f"m{writer}", f"v0.0.{index}", "0" * 64), Change(actor=f"writer-{writer}"))


def test_concurrent_writers_in_two_processes_lose_no_update(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(root), w, 150)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = Store(root)
    data = store.registry.read().state
    assert {name: len(versions) for name, versions in data.models.items()} == {"m0": 150, "m1": 150}
    assert data.revision == 300 and [e["revision"] for e in store.registry.audit.entries()] == list(range(1, 301))


def test_corrupt_registry_is_reported_with_its_path_and_left_untouched(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    store.registry_path.write_text('{"models": {"tiny": ')
    with pytest.raises(CorruptRegistry, match=str(store.registry_path)):
        store.registry.read()
    with pytest.raises(CorruptRegistry):
        deploy(store, "tiny", "v1.0.0", "staging")
    assert store.registry_path.read_text() == '{"models": {"tiny": '


@dataclass(frozen=True)
class Exploding:
    """An operation that edits the state, then fails."""

    def prepare(self, store: Store) -> Exploding:
        return self

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        state.models["b"] = {}
        raise RuntimeError("boom")


def test_a_failed_or_refused_transition_writes_nothing(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    before, audited = store.registry_path.read_bytes(), len(store.registry.audit.entries())
    with pytest.raises(RuntimeError):
        transition(store, Exploding())

    def refuse(store, proposal) -> list[dict]:
        raise ChangeRefused(f"no {proposal.outcome.action} today")

    guarded = Store(store.root, checks=(refuse,))
    with pytest.raises(ChangeRefused, match="no deploy today"):
        deploy(guarded, "tiny", "v1.0.0", "staging")
    assert store.registry_path.read_bytes() == before and len(store.registry.audit.entries()) == audited


def test_deploy_marks_the_replaced_version_deprecated_unless_served_elsewhere(make_store):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    change = Change(actor="alice", reason="test")
    deploy(store, "tiny", "v1.0.0", "staging", change)
    deploy(store, "tiny", "v1.0.0", "production", change)
    assert deploy(store, "tiny", "v1.1.0", "staging", change) == "v1.0.0"
    data = store.registry.read().state
    assert data.models["tiny"]["v1.0.0"].status == "deployed"  # production still serves it
    deploy(store, "tiny", "v1.1.0", "production", change)
    data = store.registry.read().state
    assert data.models["tiny"]["v1.0.0"].status == "deprecated"
    assert data.deployments["tiny"]["production"].version == "v1.1.0"
    assert data.deployments["tiny"]["production"].previous_version == "v1.0.0"


def test_a_registry_write_that_fails_is_withdrawn_in_the_audit_log(make_store, monkeypatch):
    """The audit entry is written first; when registry.json then cannot be replaced (a full disk), the log withdraws
    the entry, nothing changes, and replaying the log still gives the registry."""
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")
    before = store.registry_path.read_bytes()
    real_replace = fileio.os.replace

    def disk_full(source, target):
        if Path(target) == store.registry_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", disk_full)
    with pytest.raises(CorruptRegistry, match="No space left on device"):
        deploy(store, "tiny", "v1.1.0", "prod", Change(actor="ana"))
    monkeypatch.undo()
    assert store.registry_path.read_bytes() == before
    *_, attempted, aborted = store.registry.audit.entries()
    assert (attempted["action"], aborted["action"], aborted["details"]["revision"]) == ("deploy", "aborted",
                                                                                         attempted["revision"])
    assert store.registry.audit.verify() == len(store.registry.audit.entries())
    assert same_registry(replay(store.registry.audit.entries()), store.registry.read().state)

    deploy(store, "tiny", "v1.1.0", "prod", Change(actor="ana"))
    data = store.registry.read().state
    assert data.deployments["tiny"]["prod"].version == "v1.1.0" and data.revision == attempted["revision"]
    assert same_registry(replay(store.registry.audit.entries()), data)
