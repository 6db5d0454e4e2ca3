"""`onnxgate store migrate`: a file store copied into a real PostgreSQL registry and a real S3-compatible bucket, and
back into a directory, through the CLI's entry point: the registry, the audit chain (entry for entry, hashes
unchanged) and every version's files come back identical; a gateway over the migrated backends answers as one over
the original; a re-run changes nothing; a target holding other content and a tampered source are refused before
anything is written."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelstore.deployments import Change, deploy
from modelstore.file_artifacts import METADATA_FILE, expected_files
from modelstore.layout import AUDIT_FILE, REGISTRY_FILE, Store
from modelstore.migrate import all_versions, migrate, read_verified_files
from modelstore.rollout import StartCanary
from modelstore.transitions import transition
from modelstore.writer import place_version
from onnxgate.__main__ import main
from tests.factories import make_shared_store, make_store, publish_classifier, publish_text_classifier
from tests.shared_backends.gateways import serving

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
TARGET_NOT_EMPTY = 15
INTEGRITY_ERROR = 6


@pytest.fixture
def file_store(tmp_path: Path) -> Store:
    """A file store with history: three versions of two models (one with a tokenizer file), deploys and a canary."""
    store = make_store(tmp_path / "source")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    publish_text_classifier(store, "sentiment", "v1.0.0")
    deploy(store, "iris", "v1.0.0", "production", Change(actor="ana", reason="first"))
    deploy(store, "sentiment", "v1.0.0", "production", Change(actor="ana"))
    transition(store, StartCanary("iris", "production", "v2.0.0", 10), Change(actor="bo", reason="try v2"))
    return store


def to_shared(source: Path, registry_url: str, bucket_url: str) -> list[str]:
    return ["store", "migrate", "--from", str(source), "--to-registry", registry_url, "--to-artifacts", bucket_url]


def version_files(store: Store) -> dict[tuple[str, str, str], bytes]:
    files = {}
    for name, version in all_versions(store):
        metadata = store.read_metadata(name, version)
        for file_name in [*expected_files(metadata), METADATA_FILE]:
            files[(name, version, file_name)] = store.read_file(name, version, file_name)
    return files


def test_a_round_trip_file_shared_file_gives_back_the_same_store(
        file_store: Store, tmp_path: Path, registry_url: str, bucket_url: str, capsys: pytest.CaptureFixture):
    assert main(to_shared(file_store.root, registry_url, bucket_url)) == 0
    assert "3 version(s) copied" in capsys.readouterr().out
    shared = make_shared_store(tmp_path / "cache", registry_url, bucket_url)
    try:
        assert main(["audit", "verify", "--store", str(tmp_path / "cache"), "--registry", registry_url]) == 0
        assert shared.registry.audit.entries() == file_store.registry.audit.entries()
        assert shared.registry.read().state == file_store.registry.read().state
        assert version_files(shared) == version_files(file_store)
    finally:
        shared.close()

    backup = tmp_path / "backup"
    assert main(["store", "migrate", "--from-registry", registry_url, "--from-artifacts", bucket_url,
                 "--to", str(backup)]) == 0
    for file_name in (REGISTRY_FILE, AUDIT_FILE):
        assert (backup / file_name).read_bytes() == (file_store.root / file_name).read_bytes(), file_name
    restored = make_store(backup)
    assert version_files(restored) == version_files(file_store)
    assert restored.latest_version("iris") == "v2.0.0"
    assert main(["audit", "verify", "--store", str(backup)]) == 0


def test_a_rerun_changes_nothing_and_a_target_with_other_content_is_refused(
        file_store: Store, tmp_path: Path, registry_url: str, bucket_url: str, capsys: pytest.CaptureFixture):
    assert main(to_shared(file_store.root, registry_url, bucket_url)) == 0
    capsys.readouterr()
    assert main(to_shared(file_store.root, registry_url, bucket_url)) == 0
    assert "0 version(s) copied (3 already there)" in capsys.readouterr().out

    other = make_store(tmp_path / "other")
    publish_classifier(other, "iris", "v1.0.0", seed=7)
    assert main(to_shared(other.root, registry_url, bucket_url)) == TARGET_NOT_EMPTY
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nothing was written" in error
    shared = make_shared_store(tmp_path / "cache", registry_url, bucket_url)
    try:
        assert shared.registry.audit.entries() == file_store.registry.audit.entries()
        assert version_files(shared) == version_files(file_store)
    finally:
        shared.close()


def test_a_tampered_file_in_the_source_is_refused_before_anything_is_written(
        file_store: Store, tmp_path: Path, registry_url: str, bucket_url: str, capsys: pytest.CaptureFixture):
    model = file_store.model_path("sentiment", "v1.0.0")
    model.write_bytes(model.read_bytes() + b"\0")
    assert main(to_shared(file_store.root, registry_url, bucket_url)) == INTEGRITY_ERROR
    assert "sha256 mismatch" in capsys.readouterr().err
    shared = make_shared_store(tmp_path / "cache", registry_url, bucket_url)
    try:
        assert shared.list_models() == []
        assert shared.registry.export_raw() == (None, b"")
    finally:
        shared.close()


@pytest.mark.e2e
def test_a_gateway_over_the_migrated_backends_answers_like_the_original(
        file_store: Store, tmp_path: Path, registry_url: str, bucket_url: str, s3_env: dict[str, str]):
    assert main(to_shared(file_store.root, registry_url, bucket_url)) == 0
    answers = {}
    with serving(file_store.root, tmp_path / "file.log") as original, \
            serving(tmp_path / "gateway", tmp_path / "shared.log", registry_url=registry_url,
                    artifacts_url=bucket_url, env=s3_env) as migrated:
        for name, url in (("original", original), ("migrated", migrated)):
            by_version: dict[str, set[str]] = {}
            for _ in range(40):  # the canary splits traffic: each version's answers, whichever were picked
                response = httpx.post(f"{url}/predict/iris", json={"inputs": ROWS}, timeout=30)
                assert response.status_code == 200, response.text
                by_version.setdefault(response.json()["version"], set()).add(str(response.json()["outputs"]))
            text = httpx.post(f"{url}/predict/sentiment", json={"text": ["the movie was great"]}, timeout=30)
            assert text.status_code == 200, text.text
            health = httpx.get(f"{url}/health", timeout=30).json()
            answers[name] = (by_version, text.json()["outputs"],
                             sorted((m["model"], m["version"], m["loaded"], m["error"]) for m in health["models"]))
    (original_iris, *original_rest), (migrated_iris, *migrated_rest) = answers["original"], answers["migrated"]
    assert migrated_rest == original_rest
    assert set(migrated_iris) <= {"v1.0.0", "v2.0.0"} and "v1.0.0" in migrated_iris
    for version in set(migrated_iris) & set(original_iris):
        assert migrated_iris[version] == original_iris[version] and len(migrated_iris[version]) == 1


def test_a_migration_that_stopped_before_the_registry_is_completed(
        file_store: Store, tmp_path: Path, registry_url: str, bucket_url: str):
    shared = make_shared_store(tmp_path / "cache", registry_url, bucket_url)
    try:
        metadata = file_store.read_metadata("iris", "v1.0.0")  # one version uploaded, then the run stopped
        place_version(shared, metadata, read_verified_files(file_store, metadata))
        report = migrate(file_store, shared)
        assert (report.versions_copied, report.versions_present, report.registry_copied) == (2, 1, True)
        assert shared.registry.audit.entries() == file_store.registry.audit.entries()
        assert version_files(shared) == version_files(file_store)
    finally:
        shared.close()
