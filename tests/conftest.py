"""Shared fixtures for every test package: a fresh store per test."""
from __future__ import annotations

from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "models")
