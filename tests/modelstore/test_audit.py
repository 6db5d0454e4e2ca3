from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from modelstore import fileio
from modelstore.audit import AuditHead, AuditLog
from modelstore.deployments import Change, deploy
from modelstore.errors import AuditChainBroken, CorruptRegistry
from modelstore.file_registry import AUDIT_KEY_ENV, AuditStatus
from modelstore.registry import registry_json
from modelstore.replay import replay
from modelstore.rollout import rollback_environment
from modelstore.signing import generate_keypair
from tests.factories import edit_registry


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


def test_every_commit_records_the_head_of_the_log_it_appended_to(make_store):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    deploy(store, "tiny", "v1.0.0", "production")
    lines = store.audit_path.read_bytes().splitlines()
    recorded = json.loads(store.registry_path.read_bytes())["audit_head"]
    assert recorded == {"count": 3, "sha256": hashlib.sha256(lines[-1]).hexdigest()}
    assert store.registry.verify_audit() == AuditStatus(3, AuditHead(3, recorded["sha256"]), True, False)
    assert "audit_head" not in registry_json(store.registry.read().state)  # not state: operations and replay ignore it


def test_an_aborted_write_leaves_lines_after_the_head_that_verify_accepts_until_the_next_commit(make_store,
                                                                                              monkeypatch):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")
    real_replace = fileio.os.replace

    def disk_full(source, target):
        if Path(target) == store.registry_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", disk_full)
    with pytest.raises(CorruptRegistry):
        deploy(store, "tiny", "v1.1.0", "prod")
    monkeypatch.undo()
    status = store.registry.verify_audit()
    assert (status.lines, status.head.count) == (5, 3)  # the withdrawn deploy and its `aborted` line follow the head
    deploy(store, "tiny", "v1.1.0", "prod")
    assert store.registry.verify_audit().head.count == 6


def test_a_logged_change_the_registry_does_not_show_is_not_anchored(make_store):
    """A crash between the log append and the registry write, or a line added by hand, as the next line after the
    head: named, since no `aborted` entry withdraws it."""
    store = make_store({"tiny": ["v1.0.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")
    store.registry.audit.append("deploy", actor="mallory", model="tiny", environment="prod", after="v1.0.0")
    with pytest.raises(AuditChainBroken, match=r"line 3: not anchored"):
        store.registry.verify_audit()


def test_the_entries_of_a_commit_that_crashed_before_its_registry_write_are_withdrawn_by_the_next(make_store,
                                                                                                  monkeypatch):
    """A crash between the log append and the registry write (simulated: the process dies in the write) leaves a
    logged deploy that registry.json does not show. The next commit withdraws it first, so verify passes and replay
    rebuilds exactly the registry that was written."""
    store = make_store({"tiny": ["v1.0.0", "v1.1.0", "v1.2.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")

    def crash(path, data, mode=None):
        raise SystemExit("killed during the registry write")

    monkeypatch.setattr("modelstore.file_registry.atomic_write", crash)
    with pytest.raises(SystemExit):
        deploy(store, "tiny", "v1.1.0", "prod")
    monkeypatch.undo()
    with pytest.raises(AuditChainBroken, match="not anchored"):
        store.registry.verify_audit()
    deploy(store, "tiny", "v1.2.0", "prod")
    status = store.registry.verify_audit()
    assert status.lines == status.head.count
    actions = [entry["action"] for entry in store.registry.audit.entries()]
    assert actions[-3:] == ["deploy", "aborted", "deploy"]
    rebuilt = replay(store.registry.audit.entries())
    assert registry_json(rebuilt) == registry_json(store.registry.read().state)
    assert rebuilt.deployment("tiny", "prod").previous_version == "v1.0.0"  # v1.1.0 never happened


def test_a_line_added_by_hand_after_the_head_is_never_anchored_by_a_commit(make_store):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")
    store.registry.audit.append("deploy", actor="mallory", model="tiny", environment="prod", after="v9.9.9")
    before = store.registry_path.read_bytes(), store.registry.audit.read_bytes()
    with pytest.raises(AuditChainBroken, match="line 4: not anchored, and not the entry of a commit that crashed"):
        deploy(store, "tiny", "v1.1.0", "prod")
    assert (store.registry_path.read_bytes(), store.registry.audit.read_bytes()) == before


@pytest.mark.parametrize(("head", "message"), [
    ({"count": "2", "sha256": "0" * 64}, "audit_head is malformed"),
    ({"count": True, "sha256": "0" * 64}, "audit_head is malformed"),
    ({"count": 2, "sha256": None}, "audit_head is malformed"),
    ([], "audit_head is malformed"),
])
def test_a_malformed_head_is_named(make_store, head, message):
    store = make_store({"tiny": ["v1.0.0"]})
    edit_registry(store, lambda registry: registry.update(audit_head=head))
    with pytest.raises(AuditChainBroken, match=message):
        store.registry.verify_audit()
    assert store.registry.read().state.models["tiny"]  # readers do not mind it


@pytest.mark.parametrize(("edit", "message"), [
    (lambda entry: entry.pop("action"), "line 2: field 'action' is missing"),
    (lambda entry: entry.update(details=[]), "line 2: field 'details' has the wrong type"),
    (lambda entry: entry.update(revision=True), "line 2: field 'revision' is not a whole number"),
    (lambda entry: entry.update(prev_sha256=entry["prev_sha256"].upper()), "line 2: prev_sha256 is not a sha256"),
])
def test_entries_with_wrong_fields_are_named(tmp_path, edit, message):
    log = AuditLog(tmp_path / "audit.log")
    for index in range(3):
        log.append("deploy", actor="a", model="m", after=f"v1.{index}.0", revision=index + 1)
    lines = log.path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    edit(entry)
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditChainBroken, match=re.escape(message)):
        log.verify()


def test_a_signing_key_signs_every_head_and_restore_signs_too(make_store, tmp_path, monkeypatch):
    private_pem, public_pem = generate_keypair()
    (tmp_path / "audit.key").write_bytes(private_pem)
    monkeypatch.setenv(AUDIT_KEY_ENV, str(tmp_path / "audit.key"))
    store = make_store({"tiny": ["v1.0.0"]})
    deploy(store, "tiny", "v1.0.0", "prod")
    assert store.registry.verify_audit(public_pem).signature_checked
    store.registry_path.unlink()
    store.registry.restore(replay(store.registry.audit.entries()))
    assert store.registry.verify_audit(public_pem).head.count == 2


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces_or_takes_the_umask(tmp_path):
    target = tmp_path / "registry.json"
    previous = os.umask(0o027)
    try:
        fileio.atomic_write(target, b"{}")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        target.chmod(0o604)
        fileio.atomic_write(target, b"{}")
        assert stat.S_IMODE(target.stat().st_mode) == 0o604
        fileio.atomic_write(target, b"{}", mode=0o600)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    finally:
        os.umask(previous)
