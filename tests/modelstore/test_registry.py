from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from modelstore.deployments import Change, deploy
from modelstore.errors import CorruptRegistry
from modelstore.registry import Registry, VersionRecord


def _write_many(path: str, writer: int, count: int) -> None:
    registry = Registry(Path(path))
    for index in range(count):
        with registry.transaction() as data:
            data.models.setdefault(f"m{writer}", {})[f"v0.0.{index}"] = VersionRecord(registered_at="t")


def test_concurrent_writers_in_two_processes_lose_no_update(tmp_path):
    path = tmp_path / "registry.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(path), w, 150)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    data = Registry(path).read()
    assert {name: len(versions) for name, versions in data.models.items()} == {"m0": 150, "m1": 150}


def test_corrupt_registry_is_reported_with_its_path_and_left_untouched(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    store.registry_path.write_text('{"models": {"tiny": ')
    with pytest.raises(CorruptRegistry, match=str(store.registry_path)):
        Registry(store.registry_path).read()
    with pytest.raises(CorruptRegistry):
        deploy(store, "tiny", "v1.0.0", "staging")
    assert store.registry_path.read_text() == '{"models": {"tiny": '


def test_a_failed_transaction_writes_nothing(tmp_path):
    registry = Registry(tmp_path / "registry.json")
    with registry.transaction() as data:
        data.models["a"] = {"v1.0.0": VersionRecord(registered_at="t")}
    before = registry.path.read_bytes()
    with pytest.raises(RuntimeError), registry.transaction() as data:
        data.models["b"] = {}
        raise RuntimeError("boom")
    assert registry.path.read_bytes() == before


def test_deploy_marks_the_replaced_version_deprecated_unless_served_elsewhere(make_store):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    change = Change(actor="alice", reason="test")
    deploy(store, "tiny", "v1.0.0", "staging", change)
    deploy(store, "tiny", "v1.0.0", "production", change)
    assert deploy(store, "tiny", "v1.1.0", "staging", change) == "v1.0.0"
    data = Registry(store.registry_path).read()
    assert data.models["tiny"]["v1.0.0"].status == "deployed"  # production still serves it
    deploy(store, "tiny", "v1.1.0", "production", change)
    data = Registry(store.registry_path).read()
    assert data.models["tiny"]["v1.0.0"].status == "deprecated"
    assert data.deployments["tiny"]["production"].version == "v1.1.0"
    assert data.deployments["tiny"]["production"].previous_version == "v1.0.0"
