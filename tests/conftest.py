"""Shared fixtures for every test package: a fresh store per test; for the shared backends, a real PostgreSQL server
and an S3-compatible server (moto's, as a real process) for the whole session, a fresh database and bucket per test,
and the AWS variables pointing at the server (tests of several packages use them, so one server of each serves all)."""
from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_store
from tests.postgres_server import SUPERUSER, PostgresServer, postgres_server, server_binaries
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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if server_binaries() is None:
        pytest.skip("NO POSTGRESQL SERVER INSTALLED (no /usr/lib/postgresql/*/bin, no initdb on PATH): the PostgreSQL "
                    "registry's tests did not run; install postgresql (Debian: apt-get install postgresql)")
    if os.geteuid() == 0 and not user_exists(SUPERUSER):
        pytest.skip(f"RUNNING AS ROOT WITH NO {SUPERUSER!r} USER: PostgreSQL refuses to run as root, so the PostgreSQL "
                    f"registry's tests did not run; create the user (Debian's postgresql package does)")
    with postgres_server() as server:
        yield server


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def registry_url(postgres: PostgresServer) -> str:
    return postgres.create_database()
