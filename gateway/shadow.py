"""Shadow traffic: how a shadow version's answers compare with stable's on the same requests.

The service runs the shadow after the response has been sent and hands both answers to the rollout state of the
route, whose ShadowTally (one per shadow version) keeps the agreement count and what the distribution distance needs
and counts them in metrics (the distance is computed when /metrics is scraped); /health reads `report`. Nothing here
reaches a client.

Agreement is per row: equal labels for a classifier (its label output), else the first output compared with
`np.isclose(rtol, atol)`. Distribution distance: the total variation distance between the two predicted-class
histograms (0 = same, 1 = disjoint), or for outputs without labels the two-sample Kolmogorov-Smirnov statistic of the
first output's values over the last KEPT_VALUES rows.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from gateway.loader import LoadedModel
from gateway.metrics import GatewayMetrics

KEPT_VALUES = 4096


@dataclass(frozen=True)
class Tolerance:
    """Agreement of non-label outputs: np.isclose(rtol, atol)."""

    rtol: float
    atol: float


@dataclass
class ShadowTally:
    model: str
    version: str
    environment: str
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

    def record(self, stable: LoadedModel, stable_out: dict, shadow_out: dict | None, latency_s: float,
               metrics: GatewayMetrics, tolerance: Tolerance) -> None:
        """One mirrored request: `shadow_out` None when the shadow failed on it."""
        labels = (self.model, self.version, self.environment)
        self.requests += 1
        metrics.shadow_latency.labels(*labels).observe(latency_s)
        if shadow_out is None:
            self.errors += 1
            metrics.shadow_requests.labels(*labels, "error").inc()
            return
        metrics.shadow_requests.labels(*labels, "ok").inc()
        output, labelled = compared_output(stable, stable_out, shadow_out)
        if output is None:
            return
        self.output, self.labelled = output, labelled
        ours, theirs = stable_out[output], shadow_out[output]
        agree = agreeing_rows(ours, theirs, labelled, tolerance.rtol, tolerance.atol)
        agreed = int(agree.sum())
        self.rows += agree.size
        self.agreed += agreed
        metrics.shadow_rows.labels(*labels, "agree").inc(agreed)
        metrics.shadow_rows.labels(*labels, "disagree").inc(agree.size - agreed)
        if labelled:
            self.stable_classes.update(ours.ravel().tolist())
            self.shadow_classes.update(theirs.ravel().tolist())
        else:
            self.stable_values.extend(first_column(ours))
            self.shadow_values.extend(first_column(theirs))

    def report(self) -> dict:
        rate, distance = self.agreement_rate, self.distance()
        return {"mirrored": self.requests, "errors": self.errors, "rows_compared": self.rows,
                "output": self.output, "agreement_rate": None if rate is None else round(rate, 4),
                "distribution_distance": None if distance is None else round(distance, 4),
                "distance_measure": "total_variation" if self.labelled else "ks"}


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


def first_column(values: np.ndarray) -> list[float]:
    rows = values.shape[0] if values.ndim else 1
    return values.reshape(rows, -1)[:, 0].astype(np.float64).tolist()
