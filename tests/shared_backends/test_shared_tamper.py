"""A gateway with its registry in a real PostgreSQL and the versions' files in a real S3-compatible bucket: an object
tampered in the bucket after its upload is refused at load (named in /health), and the last good version keeps
serving."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from modelstore.layout import Store
from modelstore.s3_artifacts import S3Location, s3_client
from tests.factories import deploy_unverified, deploy_version, publish_classifier
from tests.shared_backends.gateways import serving

pytestmark = pytest.mark.e2e
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
DEADLINE_S = 60.0


def tamper_object(bucket_url: str, name: str, version: str, file_name: str = "model.onnx") -> None:
    """Flip the last byte of one object through the S3 API, as anyone with write access to the bucket could."""
    location = S3Location.parse(bucket_url)
    client = s3_client()
    key = location.key(name, version, file_name)
    original = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=location.bucket, Key=key, Body=original[:-1] + bytes([original[-1] ^ 0xFF]))


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {DEADLINE_S:g} s")


def test_a_tampered_object_is_refused_at_load_with_the_registry_in_postgres(
        shared_store: Store, registry_url: str, bucket_url: str, s3_env: dict[str, str], tmp_path: Path):
    publish_classifier(shared_store, "iris", "v1.0.0", seed=1)
    publish_classifier(shared_store, "iris", "v2.0.0", seed=2)
    deploy_version(shared_store, "iris", "v1.0.0")
    with serving(tmp_path / "gateway", tmp_path / "gateway.log", registry_url=registry_url, artifacts_url=bucket_url,
                 env=s3_env) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = client.post("/predict/iris", json={"inputs": ROWS})
        assert before.status_code == 200 and before.json()["version"] == "v1.0.0"
        tamper_object(bucket_url, "iris", "v2.0.0")
        deploy_unverified(shared_store, "iris", "v2.0.0")  # the registry (in PostgreSQL) now names the tampered one
        body = wait_for(lambda: (h := client.get("/health/iris").json()).get("error") and h,
                        "/health/iris naming the fault")
        assert "sha256 mismatch" in body["error"] and "s3://" in body["error"], body
        assert body["version"] == "v1.0.0" and body["metadata"]["version"] == "v2.0.0" and body["loadable"] is False
        assert client.get("/health").json()["status"] == "degraded"
        after = client.post("/predict/iris", json={"inputs": ROWS})
        assert after.status_code == 200
        assert (after.json()["version"], after.json()["outputs"]) == ("v1.0.0", before.json()["outputs"])
    assert not (tmp_path / "gateway" / "iris").exists()  # served from the bucket, never from a local copy
