"""The response shape shared by the gateway's /predict and the Node loader: named outputs as nested lists, class ids
mapped to class names where metadata has labels. Kept here so both sides format answers the same way."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelstore.metadata import ModelMetadata


def format_outputs(metadata: ModelMetadata, raw: Mapping[str, np.ndarray]) -> dict[str, list]:
    formatted: dict[str, list] = {}
    label_output = metadata.label_output
    labels = metadata.labels
    for name, value in raw.items():
        # dtype.kind "iu" is np.issubdtype(dtype, np.integer), at a fraction of the cost
        if name == label_output and labels and value.dtype.kind in "iu":
            formatted[name] = _map_labels(value, labels)
        else:
            formatted[name] = value.tolist()
    return formatted


def _map_labels(class_ids: np.ndarray, labels: list[str]) -> list:
    """Class ids -> names; ids outside the labels stay ints. Plain Python over .tolist(): for the batch sizes served
    per request this is ~30x faster than numpy object-array indexing, and gives the same nested lists."""
    count = len(labels)
    if class_ids.ndim == 1:  # the usual shape, one id per row: one comprehension, no recursion
        ids = class_ids.tolist()
        if len(ids) == 1:  # one row (most requests): not even the comprehension
            value = ids[0]
            return [labels[value] if 0 <= value < count else value]
        return [labels[value] if 0 <= value < count else value for value in ids]

    def name(value: object) -> object:
        if isinstance(value, list):
            return [name(item) for item in value]
        return labels[value] if 0 <= value < count else value

    return name(class_ids.tolist())
