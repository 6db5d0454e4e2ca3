from __future__ import annotations

import os
import threading

import pytest

from modelstore.errors import IntegrityError, ModelNotFound, VersionNotFound
from modelstore.layout import resolve_store_root


def test_publish_writes_version_dir_latest_link_and_registry(make_store):
    store = make_store({"tiny": ["v1.2.0", "v1.10.0", "v1.9.1"]})
    assert store.list_versions("tiny") == ["v1.2.0", "v1.9.1", "v1.10.0"]
    link = store.model_dir("tiny") / "latest"
    assert link.is_symlink() and os.readlink(link) == "v1.10.0"  # relative, newest by version order
    metadata = store.verify_version("tiny", "latest")
    assert metadata.version == "v1.10.0" and len(metadata.model_sha256) == 64
    registry = store.registry.read().state
    assert set(registry.models["tiny"]) == {"v1.2.0", "v1.9.1", "v1.10.0"}
    assert registry.models["tiny"]["v1.2.0"].status == "registered"


def test_unknown_model_and_version_are_named(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    with pytest.raises(ModelNotFound, match="nope"):
        store.read_metadata("nope", "v1.0.0")
    with pytest.raises(VersionNotFound, match="v9.9.9"):
        store.read_metadata("tiny", "v9.9.9")


def test_tampered_model_fails_verification(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    path = store.model_path("tiny", "v1.0.0")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.verify_version("tiny", "v1.0.0")


def test_store_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("ONNXGATE_STORE", raising=False)
    monkeypatch.delenv("MODELS_DIR", raising=False)
    assert str(resolve_store_root()) == "ml/models"
    monkeypatch.setenv("MODELS_DIR", "/seed")
    assert str(resolve_store_root()) == "/seed"
    monkeypatch.setenv("ONNXGATE_STORE", "/env")
    assert str(resolve_store_root()) == "/env"
    assert str(resolve_store_root(tmp_path)) == str(tmp_path)


def test_latest_swap_never_leaves_a_reader_without_a_version(make_store):
    store = make_store({"tiny": ["v1.0.0"]})
    link = store.model_dir("tiny") / "latest"
    failures: list[Exception] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(os.readlink(link))
                assert (link / "metadata.json").is_file()
            except Exception as exc:  # any failure to resolve is what this test is about
                failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for minor in range(1, 40):
            make_store({"tiny": [f"v1.{minor}.0"]})
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert os.readlink(link) == "v1.39.0"
    assert len(seen) > 1
