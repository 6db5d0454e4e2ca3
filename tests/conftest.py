"""Shared fixtures for every test package: a fresh store per test; an S3-compatible server for the whole session
(moto's, as a real process), the AWS variables pointing at it, and a fresh bucket per test (tests/s3 and
tests/shared_backends both use them, so one server serves both)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_store
from tests.s3_server import S3Server, running_s3_server


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "models")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed: pip install 'onnxgate[s3]'")
    pytest.importorskip("moto.server", reason="moto's server is not installed: pip install 'moto[server]'")
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        with running_s3_server(log_path) as server:
            yield server
    except RuntimeError as exc:
        pytest.skip(f"SKIPPED LOUDLY: no S3-compatible server could be started: {exc}")


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables of the server, set in this process (boto3 reads them) and returned for subprocesses."""
    for key, value in s3_server.environment.items():
        monkeypatch.setenv(key, value)
    return s3_server.environment


@pytest.fixture
def bucket_url(s3_server: S3Server, s3_env: dict[str, str]) -> str:
    return f"s3://{s3_server.new_bucket()}/models"
