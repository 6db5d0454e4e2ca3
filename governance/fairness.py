"""Per-group metrics and the gaps between groups.

A metric's gap is the largest minus the smallest value among the groups where it is defined (two groups at least).
fairness_delta is the accuracy gap of a classifier, the MAE gap of a regressor.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from governance.errors import HoldoutError
from governance.metrics import measure
from governance.predictions import Predictions

MAX_GROUPS = 100
"""More distinct values than this in the group column is most likely an identifier, not a group."""
FAIRNESS_METRIC = {"classification": "accuracy", "regression": "mae"}


@dataclass(frozen=True)
class GroupReport:
    groups: dict[str, dict[str, float]]
    gaps: dict[str, float]
    fairness_delta: float | None
    omitted: dict[str, str] = field(default_factory=dict)


def group_report(names: Sequence[str], truth: np.ndarray, predictions: Predictions, groups: np.ndarray,
                 row_values: Mapping[str, np.ndarray] | None = None) -> GroupReport:
    """`row_values`: metrics that are a mean over rows (noise_sensitivity), averaged per group as well."""
    values = np.unique(groups)
    if len(values) > MAX_GROUPS:
        raise HoldoutError(f"the group column has {len(values)} distinct values; at most {MAX_GROUPS} groups are "
                           "measured")
    per_group, omitted = {}, {}
    for value in values.tolist():
        rows = np.flatnonzero(groups == value)
        measured, left_out = measure(names, truth, predictions, rows)
        for metric, per_row in (row_values or {}).items():
            measured[metric] = float(per_row[rows].mean())
        per_group[value] = measured
        omitted.update({f"{metric} in group {value!r}": why for metric, why in left_out.items()})
    gaps = {}
    for metric in [*names, *(row_values or {})]:
        defined = [measured[metric] for measured in per_group.values() if metric in measured]
        if len(defined) >= 2:
            gaps[metric] = max(defined) - min(defined)
    fairness_metric = FAIRNESS_METRIC[predictions.task]
    delta = gaps.get(fairness_metric)
    if delta is None:
        omitted["fairness_delta"] = f"{fairness_metric} is defined in fewer than two groups"
    return GroupReport(per_group, gaps, delta, omitted)
