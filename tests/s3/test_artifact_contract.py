"""The ArtifactStore contract (modelstore.backends), held by the file store and by the S3 store alike: the same
versions published through modelstore.writer read back the same through the same calls."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelstore.artifact_cache import ArtifactCache
from modelstore.errors import IntegrityError, InvalidMetadata, ModelNotFound, VersionNotFound
from modelstore.layout import METADATA_FILE, Store
from modelstore.s3_artifacts import S3Artifacts, S3Location, s3_client
from tests.factories import classifier_expected, make_store, publish_classifier, publish_text_classifier

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@dataclass
class Backend:
    store: Store
    put: Callable[[str, str, str, bytes], None]  # (model, version, file name, bytes): write one artifact directly


def file_backend(tmp_path: Path) -> Backend:
    store = make_store(tmp_path / "store")

    def put(name: str, version: str, file_name: str, data: bytes) -> None:
        path = store.version_dir(name, version) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return Backend(store, put)


def s3_backend(tmp_path: Path, bucket_url: str) -> Backend:
    location = S3Location.parse(bucket_url)
    client = s3_client()
    artifacts = S3Artifacts(location, client, ArtifactCache(tmp_path / "cache"))
    store = Store(make_store(tmp_path / "store").root, artifacts=artifacts)

    def put(name: str, version: str, file_name: str, data: bytes) -> None:
        client.put_object(Bucket=location.bucket, Key=location.key(name, version, file_name), Body=data)

    return Backend(store, put)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return file_backend(tmp_path)
    return s3_backend(tmp_path, request.getfixturevalue("bucket_url"))


def test_published_versions_list_and_read_back(backend: Backend):
    store = backend.store
    assert store.list_models() == []
    weights = publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    publish_text_classifier(store, "sentiment")
    assert store.list_models() == ["iris", "sentiment"]
    assert store.list_versions("iris") == ["v1.0.0", "v2.0.0"]
    assert store.resolve_version("iris", "latest") == "v2.0.0"
    metadata = store.read_metadata("iris", "v1.0.0")
    assert (metadata.name, metadata.version) == ("iris", "v1.0.0")
    assert store.read_metadata("iris", "latest").version == "v2.0.0"
    model = store.read_file("iris", "v1.0.0", metadata.model_file)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"X": ROWS})
    expected_labels, expected_probabilities = classifier_expected(weights, ROWS)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=1e-5)
    text = store.verify_version("sentiment", "v1.0.0")
    assert set(text.files) == {text.tokenizer.file}
    assert store.read_file("sentiment", "v1.0.0", METADATA_FILE).startswith(b"{")


def test_unknown_models_and_versions_are_named(backend: Backend):
    publish_classifier(backend.store, "iris", "v1.0.0")
    with pytest.raises(ModelNotFound, match="'nope'"):
        backend.store.list_versions("nope")
    with pytest.raises(VersionNotFound, match="v9.0.0"):
        backend.store.read_metadata("iris", "v9.0.0")
    assert backend.store.version_stamp("iris", "v9.0.0") == ""
    assert backend.store.has_version("iris", "v1.0.0") and not backend.store.has_version("iris", "v9.0.0")


def test_a_version_without_metadata_is_not_listed(backend: Backend):
    publish_classifier(backend.store, "iris", "v1.0.0")
    backend.put("iris", "v2.0.0", "model.onnx", b"half of a version")
    assert backend.store.list_versions("iris") == ["v1.0.0"]
    assert backend.store.resolve_version("iris", "latest") == "v1.0.0"


def test_a_changed_file_changes_the_stamp_and_is_refused(backend: Backend):
    publish_classifier(backend.store, "iris", "v1.0.0", seed=1)
    metadata = backend.store.verify_version("iris", "v1.0.0")
    stamp = backend.store.version_stamp("iris", "v1.0.0")
    assert stamp and stamp == backend.store.version_stamp("iris", "v1.0.0")
    original = backend.store.read_file("iris", "v1.0.0", metadata.model_file)
    backend.put("iris", "v1.0.0", metadata.model_file, original[:-1] + bytes([original[-1] ^ 0xFF]))
    assert backend.store.version_stamp("iris", "v1.0.0") != stamp
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        backend.store.verify_version("iris", "v1.0.0")


def test_broken_metadata_is_an_invalid_metadata_error(backend: Backend):
    publish_classifier(backend.store, "iris", "v1.0.0")
    backend.put("iris", "v1.0.0", METADATA_FILE, b'{"name": "iris"}')
    with pytest.raises(InvalidMetadata):
        backend.store.read_metadata("iris", "v1.0.0")
