"""The ops API's read routes for remote loaders, against a real gateway over a real store: the version listing with
metadata.json's sha256 and the digests it records, a listed file's exact bytes, and a 404 for anything not listed."""
from __future__ import annotations

import hashlib
import json

import pytest

from tests.admin.conftest import OpsGateway
from tests.factories import publish_classifier

pytestmark = pytest.mark.e2e
VERSIONS = "/admin/v1/models/iris/versions"


def test_listing_names_every_version_with_the_digests_on_disk(ops: OpsGateway) -> None:
    with ops.client("read") as client:
        answer = client.get(VERSIONS)
    assert answer.status_code == 200, answer.text
    listing = answer.json()
    assert [entry["version"] for entry in listing["versions"]] == ops.store.list_versions("iris")
    assert listing["latest"] == ops.store.list_versions("iris")[-1]
    for entry in listing["versions"]:
        directory = ops.store.version_dir("iris", entry["version"])
        raw = (directory / "metadata.json").read_bytes()
        assert entry["metadata"] == {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
        metadata = json.loads(raw)
        assert entry["files"] == {metadata["model_file"]: metadata["model_sha256"], **metadata["files"]}
        assert entry["model_size"] == (directory / entry["model_file"]).stat().st_size


def test_a_listed_file_is_served_as_stored(ops: OpsGateway) -> None:
    directory = ops.store.version_dir("iris", "v2.0.0")
    with ops.client("read") as client:
        for name in ("model.onnx", "metadata.json"):
            answer = client.get(f"{VERSIONS}/v2.0.0/files/{name}")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/octet-stream"
            assert answer.content == (directory / name).read_bytes()


def test_files_not_listed_unknown_versions_and_models_are_404(ops: OpsGateway) -> None:
    (ops.store.version_dir("iris", "v1.0.0") / "notes.txt").write_text("not in metadata.json")
    with ops.client("read") as client:
        for path in (f"{VERSIONS}/v1.0.0/files/notes.txt", f"{VERSIONS}/v1.0.0/files/registry.json",
                     f"{VERSIONS}/v1.0.0/files/..", f"{VERSIONS}/v9.9.9/files/model.onnx",
                     "/admin/v1/models/nope/versions", "/admin/v1/models/nope/versions/v1.0.0/files/model.onnx"):
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert "error" in answer.json()


def test_a_listed_file_missing_from_the_store_is_409_not_500(ops: OpsGateway) -> None:
    publish_classifier(ops.store, "iris", "v4.0.0", seed=4)
    (ops.store.version_dir("iris", "v4.0.0") / "model.onnx").unlink()
    with ops.client("read") as client:
        answer = client.get(f"{VERSIONS}/v4.0.0/files/model.onnx")
    assert answer.status_code == 409, answer.text
    assert "missing" in answer.json()["error"]


def test_reading_files_needs_a_valid_token(ops: OpsGateway) -> None:
    with ops.client() as anonymous:
        assert anonymous.get(VERSIONS).status_code == 401
        assert anonymous.get(f"{VERSIONS}/v1.0.0/files/model.onnx").status_code == 401
    with ops.client() as wrong:
        answer = wrong.get(VERSIONS, headers={"Authorization": "Bearer not-a-token"})
        assert answer.status_code == 401
    for role in ("deploy", "approve", "admin"):
        with ops.client(role) as client:
            assert client.get(VERSIONS).status_code == 200, role
