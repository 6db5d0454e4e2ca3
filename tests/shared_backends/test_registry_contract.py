"""The RegistryBackend contract, on the file registry and on PostgreSQL alike: read, compare-and-set commit, conflicts
that write nothing, and an audit chain that verifies against the head the registry records. Then what only the
database has: its schema's version, a lost server, a row edited behind onnxgate's back."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from modelstore.audit import AuditHead
from modelstore.backends import RegistryBackend
from modelstore.errors import (
    AuditChainBroken,
    RegistrySchemaTooNew,
    RegistryUnavailable,
    RevisionConflict,
    SignatureError,
)
from modelstore.file_registry import FileRegistry
from modelstore.pg_registry import UNAVAILABLE, PgRegistry
from modelstore.pg_schema import SCHEMA_VERSION
from modelstore.registry import RegistryData, VersionRecord
from modelstore.signing import generate_keypair
from tests.factories import free_port


@pytest.fixture(params=["file", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryBackend]:
    if request.param == "file":
        yield FileRegistry(tmp_path / "registry.json", tmp_path / "audit.log")
        return
    registry = PgRegistry(request.getfixturevalue("registry_url"))
    yield registry
    registry.close()


def entry(action: str, model: str, after: str) -> dict:
    return {"action": action, "actor": "tests", "reason": "contract", "model": model, "environment": None,
            "before": None, "after": after, "details": {"n": 1}}


def register(state: RegistryData, model: str, version: str) -> None:
    state.models.setdefault(model, {})[version] = VersionRecord(registered_at="2026-01-01T00:00:00Z")


def test_empty_registry_reads_empty_with_a_stable_revision(backend: RegistryBackend):
    snapshot = backend.read()
    assert snapshot.state == RegistryData()
    assert backend.revision() == snapshot.revision == backend.read().revision
    assert backend.audit.entries() == [] and backend.audit.verify() == 0


def test_commit_writes_state_and_entries_and_moves_the_revision(backend: RegistryBackend):
    first = backend.read()
    state = first.state.model_copy(deep=True)
    register(state, "iris", "v1.0.0")
    new_revision = backend.commit(first.revision, state, [entry("register", "iris", "v1.0.0")])
    assert new_revision != first.revision and backend.revision() == new_revision
    after = backend.read()
    assert after.revision == new_revision and after.state.revision == 1
    assert list(after.state.models["iris"]) == ["v1.0.0"]

    state = after.state.model_copy(deep=True)
    register(state, "iris", "v2.0.0")
    backend.commit(after.revision, state, [entry("gates_passed", "iris", "v2.0.0"), entry("register", "iris", "v2.0.0")])
    entries = backend.audit.entries()
    assert [(e["action"], e["after"], e["revision"]) for e in entries] == [
        ("register", "v1.0.0", 1), ("gates_passed", "v2.0.0", 2), ("register", "v2.0.0", 2)]
    assert entries[0]["details"] == {"n": 1} and entries[0]["actor"] == "tests"
    status = backend.verify_audit()
    assert status.lines == 3 and status.head is not None and status.head.count == 3 and status.registry_found


def test_a_stale_revision_conflicts_and_writes_nothing(backend: RegistryBackend):
    start = backend.read()
    mine, theirs = start.state.model_copy(deep=True), start.state.model_copy(deep=True)
    register(theirs, "iris", "v1.0.0")
    won = backend.commit(start.revision, theirs, [entry("register", "iris", "v1.0.0")])
    register(mine, "other", "v1.0.0")
    with pytest.raises(RevisionConflict):
        backend.commit(start.revision, mine, [entry("register", "other", "v1.0.0")])
    assert backend.revision() == won
    assert list(backend.read().state.models) == ["iris"]
    assert [e["model"] for e in backend.audit.entries()] == ["iris"]
    assert backend.verify_audit().lines == 1


# -- PostgreSQL only ----------------------------------------------------------------------------------------------

def test_schema_is_created_once_and_a_newer_one_is_refused(registry_url: str):
    first, second = PgRegistry(registry_url), PgRegistry(registry_url)
    try:
        assert first.read().revision == second.read().revision == "0"
        with psycopg.connect(registry_url, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM onnxgate_schema_version").fetchall() == [(SCHEMA_VERSION,)]
            conn.execute("UPDATE onnxgate_schema_version SET version = %s", (SCHEMA_VERSION + 1,))
        newer = PgRegistry(registry_url)
        with pytest.raises(RegistrySchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, newer than"):
            newer.read()
        assert newer.revision() == UNAVAILABLE
        newer.close()
    finally:
        first.close()
        second.close()


def test_registries_opening_a_new_database_at_once_migrate_it_once(registry_url: str):
    registries = [PgRegistry(registry_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(registries)) as pool:
            revisions = list(pool.map(lambda registry: registry.read().revision, registries))
        assert revisions == ["0"] * len(registries)
        with psycopg.connect(registry_url, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM onnxgate_schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        for registry in registries:
            registry.close()


def test_an_unreachable_database_is_unavailable_and_its_revision_matches_no_good_one():
    registry = PgRegistry(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/nothing", timeout_s=1)
    try:
        with pytest.raises(RegistryUnavailable, match="cannot be reached") as caught:
            registry.read()
        assert "secret" not in str(caught.value)
        with pytest.raises(RegistryUnavailable):
            registry.commit("0", RegistryData(), [entry("register", "iris", "v1.0.0")])
        assert registry.revision() == UNAVAILABLE
    finally:
        registry.close()


def test_an_audit_row_edited_in_the_database_breaks_the_chain(registry_url: str):
    registry = PgRegistry(registry_url)
    try:
        for version in ("v1.0.0", "v2.0.0", "v3.0.0"):
            snapshot = registry.read()
            state = snapshot.state.model_copy(deep=True)
            register(state, "iris", version)
            registry.commit(snapshot.revision, state, [entry("register", "iris", version)])
        assert registry.verify_audit().head == AuditHead(3, registry.verify_audit().head.sha256)
        with psycopg.connect(registry_url, autocommit=True) as conn:
            conn.execute("UPDATE onnxgate_audit SET line = replace(line, 'v2.0.0', 'v9.9.9') WHERE position = 2")
        with pytest.raises(AuditChainBroken, match="line 3: chain breaks"):
            registry.verify_audit()
        with psycopg.connect(registry_url, autocommit=True) as conn:
            conn.execute("DELETE FROM onnxgate_audit WHERE position >= 2")
        with pytest.raises(AuditChainBroken, match="lines were removed"):
            registry.verify_audit()
    finally:
        registry.close()


def test_a_signed_head_verifies_and_a_state_edited_in_the_database_does_not(registry_url: str, tmp_path: Path):
    private_pem, public_pem = generate_keypair()
    key = tmp_path / "audit.key"
    key.write_bytes(private_pem)
    registry = PgRegistry(registry_url, audit_key=key)
    try:
        snapshot = registry.read()
        state = snapshot.state.model_copy(deep=True)
        register(state, "iris", "v1.0.0")
        registry.commit(snapshot.revision, state, [entry("register", "iris", "v1.0.0")])
        assert registry.verify_audit(public_pem).signature_checked
        with psycopg.connect(registry_url, autocommit=True) as conn:
            conn.execute("UPDATE onnxgate_registry SET document = replace(document, 'v1.0.0', 'v6.6.6')")
        with pytest.raises(SignatureError, match="audit_head's signature"):
            registry.verify_audit(public_pem)
    finally:
        registry.close()
