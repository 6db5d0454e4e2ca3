"""Fixtures for the shared backends: stores whose registry lives in a fresh database of the session's real PostgreSQL
(tests/conftest.py), their artifacts under tmp_path or in a fresh bucket of the session's S3-compatible server."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_pg_store, make_shared_store


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
