"""modelstore.outputs._map_labels was rewritten for speed (the gateway calls it per request); it must give exactly
what the original numpy formulation gave, ids outside the labels included."""
from __future__ import annotations

import numpy as np
import pytest

from modelstore.outputs import _map_labels

LABELS = ["a", "b", "c"]


def numpy_formulation(class_ids: np.ndarray, labels: list[str]) -> list:
    table = np.asarray(labels, dtype=object)
    in_range = (class_ids >= 0) & (class_ids < len(labels))
    return np.where(in_range, table[np.clip(class_ids, 0, len(labels) - 1)], class_ids.astype(object)).tolist()


def kinds(value: object) -> object:
    return [kinds(item) for item in value] if isinstance(value, list) else type(value)


@pytest.mark.parametrize("class_ids", [
    np.array([0, 1, 2, 3, -1]), np.array([[0, 5], [2, 1]]), np.array(1), np.array(7), np.array([], dtype=np.int64),
    np.array([[[-2]]], dtype=np.int32), np.array([2**40]), np.array([1, 2], dtype=np.uint8),
    np.zeros((2, 0), dtype=np.int64),
])
def test_same_nested_lists_and_types_as_the_numpy_formulation(class_ids: np.ndarray):
    expected = numpy_formulation(class_ids, LABELS)
    mapped = _map_labels(class_ids, LABELS)
    assert mapped == expected and kinds(mapped) == kinds(expected)
