"""End to end through the CLI: `onnxgate export --artifacts s3://...` uploads a version to a real S3-compatible server
(moto's, over HTTP), and `onnxgate serve --artifacts` serves it with no local copy, answering as a gateway over a local
store does; a tampered object in the bucket is refused at load while the last good session keeps serving."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelstore.layout import open_store
from modelstore.s3_artifacts import S3Location, s3_client
from onnxgate.__main__ import main
from tests.factories import (
    IRIS_LABELS,
    classifier_onnx,
    classifier_weights,
    deploy_unverified,
    free_port,
    stop_server,
    wait_ready,
)

pytestmark = pytest.mark.e2e
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def export(source: Path, version: str, store: Path, artifacts: str | None) -> None:
    flags = ["--artifacts", artifacts] if artifacts else []
    assert main(["export", str(source), "--name", "iris", "--version", version, "--labels", ",".join(IRIS_LABELS),
                 "--no-check-node", "--store", str(store), *flags, "--actor", "tests", "--reason", "s3 test"]) == 0


def deploy(version: str, store: Path, artifacts: str | None) -> None:
    flags = ["--artifacts", artifacts] if artifacts else []
    assert main(["deploy", "iris", version, "--env", "production", "--store", str(store), *flags]) == 0


@contextmanager
def serving(store: Path, artifacts: str | None, s3_env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONNXGATE_", "AWS_"))}
    env.update(s3_env if artifacts else {})
    flags = ["--artifacts", artifacts] if artifacts else []
    with open(log, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port),
                                    "--store", str(store), *flags], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout_s=60)
        yield url
    finally:
        stop_server(process)


def predict(url: str) -> dict:
    response = httpx.post(f"{url}/predict/iris", json={"inputs": ROWS}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for version, seed in (("v1.0.0", 1), ("v2.0.0", 2)):
        paths[version] = tmp_path / f"iris-{version}.onnx"
        paths[version].write_bytes(classifier_onnx(classifier_weights(seed)))
    return paths


def tamper_object(bucket_url: str, version: str, file_name: str = "model.onnx") -> None:
    location = S3Location.parse(bucket_url)
    client = s3_client()
    key = location.key("iris", version, file_name)
    original = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=location.bucket, Key=key, Body=original[:-1] + bytes([original[-1] ^ 0xFF]))


def test_a_version_exported_to_the_bucket_is_served_as_from_a_local_store(
        tmp_path: Path, sources: dict[str, Path], bucket_url: str, s3_env: dict[str, str]):
    local, shared = tmp_path / "local", tmp_path / "shared"
    for store, artifacts in ((local, None), (shared, bucket_url)):
        export(sources["v1.0.0"], "v1.0.0", store, artifacts)
        deploy("v1.0.0", store, artifacts)
    shutil.rmtree(shared / "iris")  # the writer's local copy: the gateway must read the bucket
    metadata = open_store(shared, artifacts_url=bucket_url).read_metadata("iris", "v1.0.0")
    with serving(local, None, s3_env, tmp_path / "local.log") as local_url, \
            serving(shared, bucket_url, s3_env, tmp_path / "shared.log") as shared_url:
        from_disk, from_bucket = predict(local_url), predict(shared_url)
    assert from_bucket["version"] == from_disk["version"] == "v1.0.0"
    assert from_bucket["outputs"]["label"] == from_disk["outputs"]["label"]
    np.testing.assert_array_equal(np.array(from_bucket["outputs"]["probabilities"]),
                                  np.array(from_disk["outputs"]["probabilities"]))
    assert not (shared / "iris").exists()
    assert (shared / ".cache" / "artifacts" / metadata.model_sha256).is_file()  # verified, then cached


def health(url: str, path: str = "/health/iris") -> dict:
    return httpx.get(url + path, timeout=30).json()


def test_a_tampered_object_in_the_bucket_is_refused_and_the_last_good_version_serves(
        tmp_path: Path, sources: dict[str, Path], bucket_url: str, s3_env: dict[str, str]):
    shared = tmp_path / "shared"
    for version in ("v1.0.0", "v2.0.0"):
        export(sources[version], version, shared, bucket_url)
    deploy("v1.0.0", shared, bucket_url)
    with serving(shared, bucket_url, s3_env, tmp_path / "serve.log") as url:
        assert predict(url)["version"] == "v1.0.0"
        tamper_object(bucket_url, "v2.0.0")
        deploy_unverified(open_store(shared, artifacts_url=bucket_url), "iris", "v2.0.0")
        body = wait_for(lambda: (h := health(url)).get("error") and h, what="/health/iris to name the fault")
        assert "sha256 mismatch" in body["error"] and "s3://" in body["error"]
        assert body["status"] == "unhealthy" and body["available"] is True and body["loadable"] is False
        assert body["version"] == "v1.0.0" and body["metadata"]["version"] == "v2.0.0"
        assert health(url, "/health")["status"] == "degraded"
        assert predict(url)["version"] == "v1.0.0"


def test_the_served_version_tampered_in_the_bucket_is_noticed_and_the_loaded_session_keeps_serving(
        tmp_path: Path, sources: dict[str, Path], bucket_url: str, s3_env: dict[str, str]):
    """No registry change here: only the bucket's listing (an ETag) changes, which the gateway's slow poll sees."""
    shared = tmp_path / "shared"
    export(sources["v1.0.0"], "v1.0.0", shared, bucket_url)
    deploy("v1.0.0", shared, bucket_url)
    with serving(shared, bucket_url, s3_env, tmp_path / "serve.log") as url:
        before = predict(url)
        tamper_object(bucket_url, "v1.0.0")
        body = wait_for(lambda: (h := health(url)).get("error") and h, what="/health/iris to name the fault")
        assert "sha256 mismatch" in body["error"] and body["loadable"] is False and body["available"] is True
        after = predict(url)
        assert after["version"] == "v1.0.0" and after["outputs"] == before["outputs"]
