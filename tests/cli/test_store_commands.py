"""The CLI as a user runs it: a real `onnxgate` process per command, on a real store: a file store, and the shared
backends (the registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket) where a test does not
edit the store's files by hand."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelstore.layout import Store
from modelstore.writer import publish
from tests.factories import make_shared_store, store_flags
from tests.modelstore.conftest import tiny_classifier_onnx, tiny_metadata


@pytest.fixture(params=["file", "shared"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """make_store(versions={"tiny": ["v1.0.0"]}) -> a real store with real ONNX models in it: each a directory, or
    (shared) a fresh database and a fresh bucket with a directory for local copies."""
    opened: list[Store] = []

    def build(versions: dict[str, list[str]] | None = None, root: Path | None = None) -> Store:
        root = root or tmp_path / "store"
        root.mkdir(parents=True, exist_ok=True)
        if request.param == "file":
            store = Store(root)
        else:
            postgres, s3_server = request.getfixturevalue("postgres"), request.getfixturevalue("s3_server")
            request.getfixturevalue("s3_env")
            store = make_shared_store(root, postgres.create_database(), f"s3://{s3_server.new_bucket()}/models")
            opened.append(store)
        for name, names in (versions or {}).items():
            for index, version in enumerate(names):
                publish(store, tiny_metadata(name, version), tiny_classifier_onnx(seed=index))
        return store

    yield build
    for store in opened:
        store.close()


def onnxgate(*args: str, store: Store | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "onnxgate", *args, *(store_flags(store) if store is not None else [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_list_show_package_verify_import_history(make_store, tmp_path):
    store = make_store({"tiny": ["v1.0.0", "v1.1.0"]})
    listed = json.loads(onnxgate("list", "--json", store=store).stdout)
    assert [(r["version"], r["latest"]) for r in listed] == [("v1.0.0", False), ("v1.1.0", True)]
    shown = json.loads(onnxgate("show", "tiny", "--json", store=store).stdout)
    assert shown["version"] == "v1.1.0" and shown["labels"] == ["no", "yes"]
    packaged = onnxgate("package", "tiny", "v1.1.0", "--out", str(tmp_path / "pkgs"), store=store)
    assert packaged.returncode == 0, packaged.stderr
    archive = tmp_path / "pkgs" / "tiny_v1.1.0.tar.gz"
    assert onnxgate("verify", str(archive)).returncode == 0
    fresh = make_store(root=tmp_path / "fresh")
    imported = onnxgate("import", str(archive), "--actor", "ci", store=fresh)
    assert imported.returncode == 0, imported.stderr
    assert onnxgate("verify", "tiny", "v1.1.0", store=fresh).returncode == 0
    history = json.loads(onnxgate("history", "--json", store=fresh).stdout)
    assert [(e["action"], e["actor"], e["after"]) for e in history] == [("register", "ci", "v1.1.0")]
    assert onnxgate("audit", "verify", store=fresh).returncode == 0


def test_signing_with_generated_keys(make_store, tmp_path):
    store = make_store({"tiny": ["v1.0.0"]})
    assert onnxgate("keygen", str(tmp_path / "k" / "release")).returncode == 0
    out = tmp_path / "pkgs"
    assert onnxgate("package", "tiny", "v1.0.0", "--out", str(out), "--sign", str(tmp_path / "k/release.key"),
                    store=store).returncode == 0
    verified = onnxgate("verify", str(out / "tiny_v1.0.0.tar.gz"), "--public-key", str(tmp_path / "k/release.pub"))
    assert verified.returncode == 0 and "signature verified" in verified.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "nope"], 3, "model 'nope' not found"),
        (["show", "tiny", "v9.0.0"], 3, "no version 'v9.0.0'"),
        (["verify", "/does/not/exist.tar.gz"], 6, "no such package file"),
        (["package", "tiny", "v1.0.0", "--sign", "/no/key.pem"], 2, "cannot read signing key"),
    ],
)
def test_errors_are_one_line_and_a_nonzero_exit(make_store, args, code, message):
    store = make_store({"tiny": ["v1.0.0"]})
    result = onnxgate(*args, store=store)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_corrupt_registry_and_broken_audit_chain_are_reported(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    if store.registry_backend is not None:
        pytest.skip("edits registry.json and audit.log by hand: the file store only")
    lines = store.audit_path.read_text().splitlines(keepends=True)
    store.audit_path.write_text(lines[0].replace("v1.0.0", "v6.6.6") + "".join(lines[1:]) + lines[0])
    broken = onnxgate("audit", "verify", store=store)
    assert broken.returncode == 1 and "line 2" in broken.stderr
    store.registry_path.write_text("{not json")
    result = onnxgate("list", store=store)
    assert result.returncode == 5 and "registry.json" in result.stderr and "Traceback" not in result.stderr


def test_duplicate_import_is_refused_unless_forced(make_store, tmp_path):
    store = make_store({"tiny": ["v1.0.0"]})
    assert onnxgate("package", "tiny", "v1.0.0", "--out", str(tmp_path), store=store).returncode == 0
    again = onnxgate("import", str(tmp_path / "tiny_v1.0.0.tar.gz"), store=store)
    assert again.returncode == 4 and "already exists" in again.stderr
    assert onnxgate("import", str(tmp_path / "tiny_v1.0.0.tar.gz"), "--force", store=store).returncode == 0


@pytest.mark.parametrize(("command", "name", "version"), [
    ("deploy", "tiny\n", "v1.0.0"),
    ("deploy", "tiny", "v1.0.0\n"),
    ("deploy", "tiny", "v1.0.0-" + "a" * 5000),
    ("deploy", "t" * 5000, "v1.0.0"),
    ("show", "tiny", "v1.0.0-" + "a" * 5000),
])
def test_bad_and_over_long_names_are_one_line_errors(make_store, command, name, version):
    store = make_store({"tiny": ["v1.0.0"]})
    args = [command, name, version] + (["--env", "production"] if command == "deploy" else [])
    result = onnxgate(*args, store=store)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "invalid" in result.stderr and len(result.stderr) < 400, result.stderr
    assert "Traceback" not in result.stderr and "File name too long" not in result.stderr
    assert store.registry.read().state.deployments == {}
