"""Shadow traffic: how a shadow version's answers compare with stable's on the same requests.

The service runs the shadow after the response has been sent and hands both answers here; nothing here reaches a
client. Per (model, environment, shadow version) it keeps the agreement count and what the distribution distance
needs, and exports them as metrics (the distance computed when /metrics is scraped); /health reads `report`.

Agreement is per row: equal labels for a classifier (its label output), else the first output compared with
`np.isclose(rtol, atol)`. Distribution distance: the total variation distance between the two predicted-class
histograms (0 = same, 1 = disjoint), or for outputs without labels the two-sample Kolmogorov-Smirnov statistic of the
first output's values over the last KEPT_VALUES rows.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gateway.loader import LoadedModel
from gateway.metrics import GatewayMetrics

KEPT_VALUES = 4096


@dataclass
class ShadowTally:
    output: str | None = None
    labelled: bool = False
    requests: int = 0
    errors: int = 0
    rows: int = 0
    agreed: int = 0
    stable_classes: Counter = field(default_factory=Counter)
    shadow_classes: Counter = field(default_factory=Counter)
    stable_values: deque = field(default_factory=lambda: deque(maxlen=KEPT_VALUES))
    shadow_values: deque = field(default_factory=lambda: deque(maxlen=KEPT_VALUES))

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed / self.rows if self.rows else None

    def distance(self) -> float | None:
        if self.labelled:
            return total_variation(self.stable_classes, self.shadow_classes)
        if not self.stable_values or not self.shadow_values:
            return None
        return ks_statistic(np.fromiter(self.stable_values, float), np.fromiter(self.shadow_values, float))


def total_variation(first: Counter, second: Counter) -> float | None:
    first_total, second_total = sum(first.values()), sum(second.values())
    if not first_total or not second_total:
        return None
    keys = first.keys() | second.keys()
    return 0.5 * sum(abs(first[k] / first_total - second[k] / second_total) for k in keys)


def ks_statistic(first: np.ndarray, second: np.ndarray) -> float:
    """sup |F1(x) - F2(x)| over the pooled values (what scipy.stats.ks_2samp reports as its statistic)."""
    first, second = np.sort(first), np.sort(second)
    pooled = np.concatenate([first, second])
    cdf_first = np.searchsorted(first, pooled, side="right") / first.size
    cdf_second = np.searchsorted(second, pooled, side="right") / second.size
    return float(np.max(np.abs(cdf_first - cdf_second)))


def compared_output(stable: LoadedModel, stable_out: dict, shadow_out: dict) -> tuple[str | None, bool]:
    """(the output to compare, whether it holds labels)."""
    label = stable.metadata.label_output
    if label is not None and label in stable_out and label in shadow_out:
        return label, True
    name = next((n for n in stable.output_names if n in stable_out and n in shadow_out), None)
    return name, False


def agreeing_rows(stable: np.ndarray, shadow: np.ndarray, labelled: bool, rtol: float, atol: float) -> np.ndarray:
    rows = stable.shape[0] if stable.ndim else 1
    if stable.shape != shadow.shape:
        return np.zeros(rows, dtype=bool)
    if labelled or stable.dtype.kind in "OUSb":
        same = stable == shadow
    else:
        same = np.isclose(stable.astype(np.float64), shadow.astype(np.float64), rtol=rtol, atol=atol)
    return np.asarray(same).reshape(rows, -1).all(axis=1)


class Shadows:
    def __init__(self, metrics: GatewayMetrics, rtol: float, atol: float) -> None:
        self.metrics = metrics
        self.rtol = rtol
        self.atol = atol
        self._tallies: dict[tuple[str, str, str], ShadowTally] = {}
        metrics.export_shadow_distances(self.distances)

    def distances(self) -> Iterator[tuple[str, str, str, float]]:
        for (model, environment, version), tally in list(self._tallies.items()):
            distance = tally.distance()
            if distance is not None:
                yield model, version, environment, distance

    def record(self, environment: str, stable: LoadedModel, shadow: LoadedModel, stable_out: dict,
               shadow_out: dict | None, latency_s: float) -> None:
        """One mirrored request: `shadow_out` None when the shadow failed on it."""
        model, version = shadow.name, shadow.version
        tally = self._tallies.setdefault((model, environment, version), ShadowTally())
        tally.requests += 1
        metrics = self.metrics
        metrics.shadow_latency.labels(model, version, environment).observe(latency_s)
        if shadow_out is None:
            tally.errors += 1
            metrics.shadow_requests.labels(model, version, environment, "error").inc()
            return
        metrics.shadow_requests.labels(model, version, environment, "ok").inc()
        output, labelled = compared_output(stable, stable_out, shadow_out)
        if output is None:
            return
        tally.output, tally.labelled = output, labelled
        ours, theirs = stable_out[output], shadow_out[output]
        agree = agreeing_rows(ours, theirs, labelled, self.rtol, self.atol)
        agreed = int(agree.sum())
        tally.rows += agree.size
        tally.agreed += agreed
        metrics.shadow_rows.labels(model, version, environment, "agree").inc(agreed)
        metrics.shadow_rows.labels(model, version, environment, "disagree").inc(agree.size - agreed)
        if labelled:
            tally.stable_classes.update(ours.ravel().tolist())
            tally.shadow_classes.update(theirs.ravel().tolist())
        else:
            tally.stable_values.extend(first_column(ours))
            tally.shadow_values.extend(first_column(theirs))


    def report(self, model: str, environment: str, version: str) -> dict:
        tally = self._tallies.get((model, environment, version))
        if tally is None:
            return {"mirrored": 0}
        rate, distance = tally.agreement_rate, tally.distance()
        return {"mirrored": tally.requests, "errors": tally.errors, "rows_compared": tally.rows,
                "output": tally.output, "agreement_rate": None if rate is None else round(rate, 4),
                "distribution_distance": None if distance is None else round(distance, 4),
                "distance_measure": "total_variation" if tally.labelled else "ks"}


def first_column(values: np.ndarray) -> list[float]:
    rows = values.shape[0] if values.ndim else 1
    return values.reshape(rows, -1)[:, 0].astype(np.float64).tolist()
