"""Fixtures for the shared backends: a real PostgreSQL server for the session, a fresh database per test, and stores
whose registry lives in it (their artifacts under tmp_path)."""
from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_pg_store, make_shared_store
from tests.shared_backends.postgres_server import SUPERUSER, PostgresServer, postgres_server, server_binaries


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


@pytest.fixture
def pg_store(tmp_path: Path, registry_url: str) -> Iterator[Store]:
    """A store with its artifacts under tmp_path and its registry in a fresh database."""
    store = make_pg_store(tmp_path / "models", registry_url)
    yield store
    store.close()


@pytest.fixture
def shared_store(tmp_path: Path, registry_url: str, bucket_url: str) -> Iterator[Store]:
    """A store with its registry in a fresh database and its versions' files in a fresh bucket (tmp_path/writer
    holds only the writer's local copies)."""
    store = make_shared_store(tmp_path / "writer", registry_url, bucket_url)
    yield store
    store.close()
