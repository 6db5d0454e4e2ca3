"""Real scikit-learn models exported to ONNX into a tmp store, and holdout CSV files written from real datasets."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from exporters.publish import PublishOptions, export_sklearn
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata
from tests.factories import make_store

NO_NODE = PublishOptions(check_node=False)
IRIS_NAMES = ["setosa", "versicolor", "virginica"]
CANCER_NAMES = ["malignant", "benign"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "store")


def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, holdout x, holdout y): every other row held out."""
    return x[::2], y[::2], x[1::2], y[1::2]


@pytest.fixture(scope="session")
def iris():
    return split(*load_iris(return_X_y=True))


@pytest.fixture(scope="session")
def cancer():
    return split(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="session")
def diabetes():
    return split(*load_diabetes(return_X_y=True))


def export(store: Store, model: object, name: str, sample: np.ndarray, **options: object) -> ModelMetadata:
    return export_sklearn(store, model, name=name, version="v1.0.0", sample=sample, options=NO_NODE, **options)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def holdout_csv(path: Path, x: np.ndarray, labels: Sequence[object], *, names: Sequence[str] | None = None,
                label: str = "y", extra: dict[str, Sequence[object]] | None = None) -> Path:
    """Feature columns (f0.. unless named), then the label column, then any extra columns."""
    names = list(names or [f"f{index}" for index in range(x.shape[1])])
    extra = extra or {}
    rows = [[*(repr(float(v)) for v in row), labels[i], *(values[i] for values in extra.values())]
            for i, row in enumerate(x)]
    return write_csv(path, [*names, label, *extra], rows)
