"""Fixtures for the rollout tests: real stores with tiny real ONNX models, and plain-data builders for the judge."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.traffic import Arm, ArmWindows
from modelstore.deployments import deploy
from modelstore.layout import Store
from modelstore.writer import publish
from tests.modelstore.conftest import tiny_classifier_onnx, tiny_metadata

VERSIONS = ("v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0")


def build_store(root: Path, name: str = "tiny", versions: Iterable[str] = VERSIONS,
                environments: Iterable[str] = ("prod",)) -> Store:
    """A store with every version published and the first deployed as stable to each environment."""
    store = Store(root)
    store.root.mkdir(parents=True, exist_ok=True)
    versions = list(versions)
    for index, version in enumerate(versions):
        publish(store, tiny_metadata(name, version), tiny_classifier_onnx(seed=index))
    for environment in environments:
        deploy(store, name, versions[0], environment)
    return store


@pytest.fixture
def make_rollout_store(tmp_path: Path) -> Callable[..., Store]:
    def build(**kwargs) -> Store:
        return build_store(tmp_path / "store", **kwargs)

    return build


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def feed(windows: ArmWindows, arm: Arm, version: str, start: float, end: float, count: int,
         latency_s: float | Callable[[int], float], errors: int = 0) -> None:
    """`count` observations spread evenly over [start, end); the first `errors` of them failed."""
    step = (end - start) / count
    for index in range(count):
        latency = latency_s(index) if callable(latency_s) else latency_s
        windows.record(arm, version, latency, index >= errors, start + index * step)
