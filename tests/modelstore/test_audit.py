from __future__ import annotations

import pytest

from modelstore.audit import AuditLog
from modelstore.deployments import Change, deploy
from modelstore.errors import AuditChainBroken
from modelstore.rollout import rollback_environment


def test_every_change_is_audited_with_actor_reason_and_versions(make_store):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    deploy(store, "tiny", "v1.0.0", "production", Change("alice", "first"))
    deploy(store, "tiny", "v1.1.0", "production", Change("bob", "upgrade"))
    rollback_environment(store, "tiny", "production", Change("carol", "latency"))
    entries = store.registry.audit.entries()
    assert [e["action"] for e in entries] == ["register", "register", "deploy", "deploy", "rollback"]
    assert entries[-1]["actor"] == "carol"
    assert (entries[-1]["before"], entries[-1]["after"], entries[-1]["reason"]) == ("v1.1.0", "v1.0.0", "latency")
    assert store.registry.audit.verify() == 5


def test_verify_names_the_first_line_where_the_chain_breaks(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    for index in range(5):
        log.append("deploy", actor="a", model="m", after=f"v1.{index}.0")
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"v1.2.0"', b'"v6.6.6"')
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditChainBroken, match="line 4"):
        log.verify()


def test_deleted_line_breaks_the_chain(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    for index in range(3):
        log.append("deploy", actor="a", after=f"v1.{index}.0")
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[0] + lines[2])
    with pytest.raises(AuditChainBroken, match="line 2"):
        log.verify()
