"""What counting a drift buffer costs per row: `DriftLayout.count_features` on 1,024-row tables of the benchmark's
logistic regression's data (breast cancer, 30 features), as the gateway's window counts them: rows drawn from the data,
and one row repeated (what bench/wrk/predict.lua sends), beside the same cells found value by value (a searchsorted per
feature, what count_features did before it sorted the columns). Interleaved, so that a noisy machine weighs on all.

Run (repo root): .venv/bin/python -m bench.drift_count [--rounds 21]
"""
from __future__ import annotations

import argparse
import statistics
import timeit

import numpy as np
from sklearn.datasets import load_breast_cancer

from bench.drift_cost import INPUT_NAME
from exporters.stats import reference_stats
from modelstore.metadata import TensorSpec
from monitoring.drift import DriftLayout
from tests.factories import minimal_metadata

ROWS = 1024


def value_by_value(layout: DriftLayout, table: np.ndarray) -> np.ndarray:
    """The cells of each value on its own (one searchsorted per feature and kind of cell), then one bincount."""
    cells = [cell for column, bins in enumerate(layout._features) for cell in bins.cells(table[:, column])]
    return np.bincount(np.concatenate(cells), minlength=len(layout.empty_feature_counts()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    data = load_breast_cancer().data
    metadata = minimal_metadata("lr", "v1.0.0", [TensorSpec(name=INPUT_NAME, dtype="float32", shape=["batch", 30])],
                                [TensorSpec(name="label", dtype="int64", shape=["batch"])])
    layout = DriftLayout.of(metadata.model_copy(update={"reference_stats": reference_stats(data, INPUT_NAME)}))
    drawn = data[np.random.default_rng(0).integers(0, len(data), ROWS)].astype(np.float32)
    tables = {"drawn rows": layout.feature_table({INPUT_NAME: drawn}),
              "one row repeated": layout.feature_table({INPUT_NAME: np.repeat(drawn[:1], ROWS, axis=0)})}
    ways = {"count_features": layout.count_features, "value by value": lambda table: value_by_value(layout, table)}
    results: dict[tuple[str, str], list[float]] = {(t, w): [] for t in tables for w in ways}
    for _ in range(args.rounds):
        for table_name, table in tables.items():
            for way_name, way in ways.items():
                best = min(timeit.repeat(lambda way=way, table=table: way(table), number=20, repeat=3))
                results[(table_name, way_name)].append(best / 20 / ROWS * 1e6)
    for (table_name, way_name), runs in results.items():
        print(f"{table_name}, {way_name}: {statistics.median(runs):.2f} µs a row (median of {args.rounds} rounds of "
              f"best-of-3 x 20 calls; best {min(runs):.2f})")


if __name__ == "__main__":
    main()
