"""What counting a drift buffer costs per row: `DriftLayout.count_features` on 1,024-row tables of the benchmark's
logistic regression's data (breast cancer, 30 features), as the gateway's window counts them, with the PSI counts
derived from the quantile cells (versions exported now) and counted per row (`derive_psi=False`: older versions).
The two are interleaved, so that a noisy machine weighs on both alike.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    data = load_breast_cancer().data
    metadata = minimal_metadata("lr", "v1.0.0", [TensorSpec(name=INPUT_NAME, dtype="float32", shape=["batch", 30])],
                                [TensorSpec(name="label", dtype="int64", shape=["batch"])])
    metadata = metadata.model_copy(update={"reference_stats": reference_stats(data, INPUT_NAME)})
    layouts = {"derived PSI": DriftLayout.of(metadata), "per-row PSI": DriftLayout.of(metadata, derive_psi=False)}
    rows = data[np.random.default_rng(0).integers(0, len(data), ROWS)].astype(np.float32)
    table = layouts["derived PSI"].feature_table({INPUT_NAME: rows})
    results: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, layout in layouts.items():
            best = min(timeit.repeat(lambda layout=layout: layout.count_features(table), number=20, repeat=3))
            results[name].append(best / 20 / ROWS * 1e6)
    for name, runs in results.items():
        print(f"{name}: {statistics.median(runs):.2f} µs a row (median of {args.rounds} rounds of best-of-3 x 20 "
              f"calls; best {min(runs):.2f})")


if __name__ == "__main__":
    main()
