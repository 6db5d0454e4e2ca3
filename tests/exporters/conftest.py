from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from exporters.node_check import node_unavailable_reason
from modelstore.layout import Store


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[[str], Store]:
    def factory(name: str = "store") -> Store:
        return Store(tmp_path / name)

    return factory


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, held-out x): every other row held out."""
    x, y = load_iris(return_X_y=True)
    return x[::2], y[::2], x[1::2]


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True)
    return x[::2], y[::2], x[1::2]


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x[::2], y[::2], x[1::2]


def run_stored(store: Store, name: str, version: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the version as written to disk, the way a consumer of the store would."""
    session = ort.InferenceSession(str(store.model_path(name, version)), providers=["CPUExecutionProvider"])
    values = session.run(None, feeds)
    return {out.name: value for out, value in zip(session.get_outputs(), values, strict=True)}


requires_node = pytest.mark.skipif(node_unavailable_reason() is not None,
                                   reason=f"Node loader unavailable: {node_unavailable_reason()}")
