"""What only an object store does: the verified local cache (by sha256, checked against the object's ETag), multipart
uploads, versions visible only once whole, and reading with no local copy at all."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from modelstore.artifact_cache import ArtifactCache
from modelstore.errors import IntegrityError, InvalidLocation
from modelstore.fileio import sha256_bytes
from modelstore.layout import METADATA_FILE, Store
from modelstore.s3_artifacts import S3Artifacts, S3Location, s3_client
from tests.factories import make_store, publish_classifier, publish_mlp


def s3_store(root: Path, bucket_url: str, cache: Path, **transfer: int) -> Store:
    artifacts = S3Artifacts(S3Location.parse(bucket_url), s3_client(), ArtifactCache(cache), **transfer)
    return Store(make_store(root).root, artifacts=artifacts)


def count_object_reads(store: Store, key_suffix: str) -> list[str]:
    """Every GetObject the store's client sends for a key ending in `key_suffix` (boto3's public event hooks)."""
    reads: list[str] = []

    def record(params: dict, **_: object) -> None:
        if params["Key"].endswith(key_suffix):
            reads.append(params["Key"])

    store.artifacts.client.meta.events.register("provide-client-params.s3.GetObject", record)
    return reads


def test_the_second_load_reads_the_model_from_the_cache(tmp_path: Path, bucket_url: str):
    writer = s3_store(tmp_path / "writer", bucket_url, tmp_path / "writer-cache")
    publish_classifier(writer, "iris", "v1.0.0", seed=1)
    metadata = writer.read_metadata("iris", "v1.0.0")
    cache = tmp_path / "gateway-cache"

    first = s3_store(tmp_path / "gateway", bucket_url, cache)
    first_reads = count_object_reads(first, f"/{metadata.model_file}")
    model = first.read_file("iris", "v1.0.0", metadata.model_file)
    assert sha256_bytes(model) == metadata.model_sha256 and len(first_reads) == 1
    entry = cache / metadata.model_sha256
    assert entry.read_bytes() == model
    location = S3Location.parse(bucket_url)
    etag = s3_client().head_object(Bucket=location.bucket, Key=location.key("iris", "v1.0.0", metadata.model_file))["ETag"]
    assert Path(f"{entry}.etag").read_text() == etag
    written = entry.stat().st_mtime_ns, entry.stat().st_ino

    second = s3_store(tmp_path / "gateway", bucket_url, cache)  # a restarted gateway: a new client, the same cache
    second_reads = count_object_reads(second, f"/{metadata.model_file}")
    assert second.read_file("iris", "v1.0.0", metadata.model_file) == model
    assert second_reads == []
    assert (entry.stat().st_mtime_ns, entry.stat().st_ino) == written


def test_a_corrupted_cache_entry_is_not_used(tmp_path: Path, bucket_url: str):
    store = s3_store(tmp_path / "store", bucket_url, tmp_path / "cache")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    metadata = store.read_metadata("iris", "v1.0.0")
    model = store.read_file("iris", "v1.0.0", metadata.model_file)
    entry = tmp_path / "cache" / metadata.model_sha256
    entry.write_bytes(b"not the model")
    reads = count_object_reads(store, f"/{metadata.model_file}")
    assert store.read_file("iris", "v1.0.0", metadata.model_file) == model
    assert len(reads) == 1 and entry.read_bytes() == model


def test_a_tampered_object_is_refused_and_never_cached(tmp_path: Path, bucket_url: str):
    store = s3_store(tmp_path / "store", bucket_url, tmp_path / "cache")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    metadata = store.read_metadata("iris", "v1.0.0")
    good = store.read_file("iris", "v1.0.0", metadata.model_file)
    tampered = good[:-1] + bytes([good[-1] ^ 0xFF])
    location = S3Location.parse(bucket_url)
    s3_client().put_object(Bucket=location.bucket, Key=location.key("iris", "v1.0.0", metadata.model_file), Body=tampered)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.read_file("iris", "v1.0.0", metadata.model_file)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.verify_version("iris", "v1.0.0")
    cached = [p.read_bytes() for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".etag")]
    assert tampered not in cached and not (tmp_path / "cache" / sha256_bytes(tampered)).exists()


def test_a_large_file_is_uploaded_in_parts(tmp_path: Path, bucket_url: str):
    store = s3_store(tmp_path / "store", bucket_url, tmp_path / "cache",
                     multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    publish_mlp(store, "big", "v1.0.0", width=1024, layers=4)  # three 1024x1024 float32 layers and one 64x1024: ~12.8 MB
    metadata = store.read_metadata("big", "v1.0.0")
    assert metadata.model_size > 10 << 20
    location = S3Location.parse(bucket_url)
    head = s3_client().head_object(Bucket=location.bucket, Key=location.key("big", "v1.0.0", metadata.model_file))
    assert head["ContentLength"] == metadata.model_size
    assert head["ETag"].strip('"').endswith("-3")  # S3's multipart ETag: <digest>-<number of parts>
    small = s3_client().head_object(Bucket=location.bucket, Key=location.key("big", "v1.0.0", METADATA_FILE))
    assert "-" not in small["ETag"]
    assert sha256_bytes(store.read_file("big", "v1.0.0", metadata.model_file)) == metadata.model_sha256


def test_versions_are_read_from_the_bucket_with_no_local_copy(tmp_path: Path, bucket_url: str):
    writer = s3_store(tmp_path / "writer", bucket_url, tmp_path / "writer-cache")
    publish_classifier(writer, "iris", "v1.0.0", seed=1)
    shutil.rmtree(writer.model_dir("iris"))
    reader = s3_store(tmp_path / "reader", bucket_url, tmp_path / "reader-cache")
    assert reader.list_models() == ["iris"] and reader.list_versions("iris") == ["v1.0.0"]
    metadata = reader.verify_version("iris", "v1.0.0")
    assert (tmp_path / "reader-cache" / metadata.model_sha256).is_file()


def test_a_replaced_version_keeps_only_its_own_files(tmp_path: Path, bucket_url: str):
    store = s3_store(tmp_path / "store", bucket_url, tmp_path / "cache")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    location = S3Location.parse(bucket_url)
    s3_client().put_object(Bucket=location.bucket, Key=location.key("iris", "v1.0.0", "stale.bin"), Body=b"old")
    from modelstore.writer import write_version

    replaced = store.read_metadata("iris", "v1.0.0").model_copy(update={"metrics": {"accuracy": 0.5}})
    model = store.read_file("iris", "v1.0.0", replaced.model_file)
    write_version(store, replaced, model, force=True)
    assert "stale.bin" not in store.version_stamp("iris", "v1.0.0")
    assert store.read_metadata("iris", "v1.0.0").metrics == {"accuracy": 0.5}
    np.testing.assert_array_equal(np.frombuffer(store.read_file("iris", "v1.0.0", replaced.model_file), np.uint8),
                                  np.frombuffer(model, np.uint8))


@pytest.mark.parametrize("url", ["http://bucket/x", "s3://", "s3:///prefix", "s3://bucket/p?x=1"])
def test_a_bad_artifacts_url_is_refused(url: str):
    with pytest.raises(InvalidLocation, match="s3://bucket"):
        S3Location.parse(url)


def test_an_imported_package_is_uploaded_before_it_is_registered(tmp_path: Path, bucket_url: str):
    from modelstore.package import build_package
    from onnxgate.__main__ import main

    source = make_store(tmp_path / "source")
    publish_classifier(source, "iris", "v1.0.0", seed=3)
    package = build_package(source, "iris", "v1.0.0", tmp_path / "packages")
    target = tmp_path / "target"
    assert main(["import", str(package), "--store", str(target), "--artifacts", bucket_url]) == 0
    shutil.rmtree(target / "iris")
    reader = s3_store(tmp_path / "reader", bucket_url, tmp_path / "reader-cache")
    assert reader.verify_version("iris", "v1.0.0").model_sha256 == source.read_metadata("iris", "v1.0.0").model_sha256
    assert "v1.0.0" in Store(target).registry.read().state.models["iris"]
    # and back out of the bucket: a package built from it is the same archive, byte for byte
    rebuilt = build_package(reader, "iris", "v1.0.0", tmp_path / "rebuilt")
    assert rebuilt.read_bytes() == package.read_bytes()


def test_the_cli_names_a_bad_artifacts_url_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    from onnxgate.__main__ import main

    assert main(["list", "--store", str(tmp_path), "--artifacts", "https://bucket/models"]) == 1
    error = capsys.readouterr().err.strip()
    assert "https://bucket/models" in error and "s3://bucket" in error and "\n" not in error
