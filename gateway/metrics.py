"""Every Prometheus metric the gateway exports, on an injected CollectorRegistry.

Label values are bounded: model and version come from the registry (never from a URL), environments from settings,
classes from metadata labels (anything else is "other"). The per-request series (requests, latency, predicted classes)
are plain numbers kept per model/version/environment on the loaded model (ModelMetrics) and exported at scrape time;
everything else uses prometheus_client's own metric types.
"""
from __future__ import annotations

import functools
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelstore.metadata import ModelMetadata

OUTCOMES = ("ok", "invalid_input", "too_large", "unavailable", "error")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
latency_bucket = functools.partial(bisect_left, LATENCY_BUCKETS)  # bucket `le` counts values <= its bound
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_DELAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
OTHER_CLASS = "other"
UNKNOWN_MODEL = "_unknown"


class ModelMetrics:
    """One (model, version, environment)'s request counts, latency histogram and predicted-class counts.

    Plain numbers, exported by `_RequestSeries` when /metrics is scraped: prometheus_client's own Counter and
    Histogram take a lock and several calls per update, which cost ~8% of a small model's request over HTTP
    (bench/README.md). Answered requests are counted a batch at a time, by the answer ledger (gateway/answer_ledger.py),
    which a scrape settles first (GatewayMetrics.before_collect). Updated only from the event loop's thread, which also
    serves /metrics, so no lock is needed."""

    __slots__ = ("labels", "outcomes", "buckets", "latency_sum", "class_labels", "class_index", "class_counts",
                 "other_count", "counts_classes")

    def __init__(self, labels: tuple[str, str, str], class_labels: list[str], counts_classes: bool) -> None:
        self.labels = labels
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.latency_sum = 0.0
        self.class_labels = class_labels
        # names (string label outputs) -> their first index, as list.index would give
        self.class_index = {label: index for index, label in reversed(list(enumerate(class_labels)))}
        self.class_counts = [0] * len(class_labels)
        self.other_count = 0
        self.counts_classes = counts_classes

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # bucket `le` counts values <= its bound
        self.latency_sum += seconds

    def record_answer(self, seconds: float, labels: np.ndarray | None) -> None:
        """An answered request (outcome "ok"): its latency, and its predicted classes (the label output's values)
        when the version has a label output (None when it has none)."""
        self.record_answers((seconds,), (labels,))

    def record_answers(self, seconds: Sequence[float], labels: Sequence[np.ndarray | None]) -> None:
        """`record_answer` of each (seconds, labels) pair, in one call, the buckets counted in C: how the answer
        ledger counts what it held (gateway/answer_ledger.py)."""
        self.outcomes["ok"] += len(seconds)
        buckets = self.buckets
        for index, count in Tally(map(latency_bucket, seconds)).items():
            buckets[index] += count
        latency_sum = self.latency_sum
        for value in seconds:  # one by one, as a Histogram adds them (sum() may compensate rounding)
            latency_sum += value
        self.latency_sum = latency_sum
        if not self.counts_classes:
            return
        class_counts = self.class_counts
        for values in labels:
            if values is None:
                continue
            if values.size != 1:
                self.record_classes(values)
                continue
            value = values.item()  # one row: its class id is counted without _count's checks
            if type(value) is int and 0 <= value < len(class_counts):
                class_counts[value] += 1
            else:
                self._count(value, 1)

    def record_classes(self, values: np.ndarray) -> None:
        if not self.counts_classes:
            return
        unique, counts = np.unique(values, return_counts=True)
        for value, count in zip(unique.tolist(), counts.tolist(), strict=True):
            self._count(value, count)

    def _count(self, value: object, count: int) -> None:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, int):
            index = value if 0 <= value < len(self.class_labels) else -1
        else:
            index = self.class_index.get(value, -1)
        if index < 0:
            self.other_count += count
        else:
            self.class_counts[index] += count


class _RequestSeries(Collector):
    """requests_total, request_latency_seconds and predictions_total, from the ModelMetrics kept per version and the
    requests refused before a version was known."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("requests", "Requests answered, by outcome",
                                       labels=["model", "version", "environment", "outcome"])
        latency = HistogramMetricFamily("request_latency_seconds", "Time from parsed route to response body, per "
                                        "request", labels=["model", "version", "environment"])
        predictions = CounterMetricFamily("predictions", "Predicted classes (label output), by class",
                                          labels=["model", "version", "environment", "class"])
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for settle in self.metrics.before_collect:
            settle()
        for series in list(self.metrics.series()):
            labels = list(series.labels)
            for outcome, count in series.outcomes.items():
                requests.add_metric([*labels, outcome], count)
            latency.add_metric(labels, list(zip(bounds, accumulate(series.buckets), strict=True)),
                               sum_value=series.latency_sum)
            for label, count in zip(series.class_labels, series.class_counts, strict=True):
                predictions.add_metric([*labels, label], count)
            predictions.add_metric([*labels, OTHER_CLASS], series.other_count)
        for (model, environment, outcome), count in list(self.metrics.refused.items()):
            requests.add_metric([model, "", environment, outcome], count)
        yield requests
        yield latency
        yield predictions


class BatchMetrics:
    """One (model, version)'s adaptive batching: rows per session.run, and how long each request waited in the queue.
    Plain numbers, like ModelMetrics (updated on the event loop's thread, exported at scrape time)."""

    __slots__ = ("labels", "size_buckets", "size_sum", "delay_buckets", "delay_sum")

    def __init__(self, labels: tuple[str, str]) -> None:
        self.labels = labels
        self.size_buckets = [0] * (len(BATCH_SIZE_BUCKETS) + 1)
        self.size_sum = 0
        self.delay_buckets = [0] * (len(QUEUE_DELAY_BUCKETS) + 1)
        self.delay_sum = 0.0

    def record_run(self, rows: int) -> None:
        self.size_buckets[bisect_left(BATCH_SIZE_BUCKETS, rows)] += 1
        self.size_sum += rows

    def record_wait(self, seconds: float) -> None:
        self.delay_buckets[bisect_left(QUEUE_DELAY_BUCKETS, seconds)] += 1
        self.delay_sum += seconds


class _BatchSeries(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        if not self.metrics.batch_series:  # batching off everywhere: /metrics stays as it was
            return
        sizes = HistogramMetricFamily("batch_size", "Rows per session.run of versions with adaptive batching",
                                      labels=["model", "version"])
        delays = HistogramMetricFamily("batch_queue_delay_seconds", "Time a request waited for its batch's run to "
                                       "start, with adaptive batching", labels=["model", "version"])
        size_bounds = [*map(floatToGoString, BATCH_SIZE_BUCKETS), "+Inf"]
        delay_bounds = [*map(floatToGoString, QUEUE_DELAY_BUCKETS), "+Inf"]
        for series in list(self.metrics.batch_series.values()):
            labels = list(series.labels)
            sizes.add_metric(labels, list(zip(size_bounds, accumulate(series.size_buckets), strict=True)),
                             sum_value=series.size_sum)
            delays.add_metric(labels, list(zip(delay_bounds, accumulate(series.delay_buckets), strict=True)),
                              sum_value=series.delay_sum)
        yield sizes
        yield delays


class _ShadowDistance(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "shadow_distribution_distance", "How far the shadow's outputs are from stable's on the same requests: "
            "total variation distance of predicted classes, or the two-sample KS statistic of the first output for "
            "regressors (0 = same)", labels=["model", "version", "environment"])
        for model, version, environment, distance in self.source():
            family.add_metric([model, version, environment], distance)
        yield family


class DriftFigures(NamedTuple):
    """One route's live drift (gateway/drift_monitor.py), as the gauges show it."""

    model: str
    environment: str
    status: str  # "ok", "drift" or "insufficient data"
    window_rows: int
    drifted_share: float | None  # None below the minimum window
    prediction_psi: float | None  # None without an output reference, or before any row
    features: list[tuple[str, float | None, float | None]]  # (name, psi, ks); None when no finite value was seen


DRIFT_STATUSES = ("ok", "drift", "insufficient data")


class _DriftSeries(Collector):
    """drift_* gauges per model and environment (the stable version's window in that environment), from figures the drift
    flush timer computed; per-feature gauges only for models with at most `max_feature_labels` features."""

    def __init__(self, source: Callable[[], Iterable[DriftFigures]], max_feature_labels: int) -> None:
        self.source = source
        self.max_feature_labels = max_feature_labels

    def collect(self) -> Iterator[Metric]:
        figures = list(self.source())
        if not figures:
            return
        labels = ["model", "environment"]
        status = GaugeMetricFamily("drift_status", "Live drift verdict of the stable version's window: 1 for the "
                                   "current status", labels=[*labels, "status"])
        rows = GaugeMetricFamily("drift_window_rows", "Rows in the live drift window", labels=labels)
        share = GaugeMetricFamily("drift_drifted_share", "Share of features whose PSI or KS is over its threshold "
                                  "(absent below the minimum window)", labels=labels)
        prediction = GaugeMetricFamily("drift_prediction_psi", "PSI of the outputs' distribution against the "
                                       "reference", labels=labels)
        feature_psi = GaugeMetricFamily("drift_feature_psi", "PSI of one feature against the reference",
                                        labels=[*labels, "feature"])
        feature_ks = GaugeMetricFamily("drift_feature_ks", "Kolmogorov-Smirnov statistic of one feature against the "
                                       "reference", labels=[*labels, "feature"])
        for figure in figures:
            route = [figure.model, figure.environment]
            for name in DRIFT_STATUSES:
                status.add_metric([*route, name], float(figure.status == name))
            rows.add_metric(route, figure.window_rows)
            if figure.drifted_share is not None:
                share.add_metric(route, figure.drifted_share)
            if figure.prediction_psi is not None:
                prediction.add_metric(route, figure.prediction_psi)
            if len(figure.features) <= self.max_feature_labels:
                for name, psi, ks in figure.features:
                    if psi is not None:
                        feature_psi.add_metric([*route, name], psi)
                    if ks is not None:
                        feature_ks.add_metric([*route, name], ks)
        yield from (status, rows, share, prediction, feature_psi, feature_ks)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[str, str, str], ModelMetrics] = {}
        self.refused: dict[tuple[str, str, str], int] = {}
        self.batch_series: dict[tuple[str, str], BatchMetrics] = {}
        self.before_collect: list[Callable[[], None]] = []  # counts what is not counted yet (AnswerLedger.settle)
        registry.register(_RequestSeries(self))
        registry.register(_BatchSeries(self))
        self.model_load_seconds = Gauge("model_load_seconds", "Seconds to verify and load a model version",
                                        ["model", "version"], registry=registry)
        self.version_loads = Counter("version_loads", "Model versions loaded on demand for a pin (a cache miss), by "
                                     "outcome (ok, failed)", ["model", "outcome"], registry=registry)
        self.models_loaded = Gauge("models_loaded", "Model versions with a loaded onnxruntime session",
                                   registry=registry)
        self.reloads = Counter("reloads", "Pool reloads attempted", registry=registry)
        self.reload_failures = Counter("reload_failures", "Reloads with a version that could not be loaded, or an "
                                       "unreadable registry", ["model"], registry=registry)
        self.canary_weight = Gauge("canary_weight", "Percent of traffic routed to the canary",
                                   ["model", "environment"], registry=registry)
        self.rollbacks = Counter("rollbacks", "Automatic rollbacks this gateway applied, by kind (canary, bake) and "
                                 "cause (latency, error_rate, load_failure, prediction_drift, quality)",
                                 ["model", "environment", "kind", "cause"], registry=registry)
        self.rollout_steps = Counter("rollout_steps", "Canary steps and promotions this gateway applied",
                                     ["model", "environment", "action"], registry=registry)
        self.shadow_requests = Counter("shadow_requests", "Requests mirrored to a shadow version, by outcome",
                                       ["model", "version", "environment", "outcome"], registry=registry)
        self.shadow_rows = Counter("shadow_rows", "Rows the shadow answered, compared with stable's answers",
                                   ["model", "version", "environment", "result"], registry=registry)
        self.shadow_latency = Histogram("shadow_latency_seconds", "Shadow run time per mirrored request",
                                        ["model", "version", "environment"], buckets=LATENCY_BUCKETS, registry=registry)

    def export_shadow_distances(self, source: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        """shadow_distribution_distance, computed from `source` (model, version, environment, distance) at scrape
        time: the distance needs a sort over kept values, too costly to redo on every mirrored request."""
        self.registry.register(_ShadowDistance(source))

    def export_drift(self, source: Callable[[], Iterable[DriftFigures]], max_feature_labels: int) -> None:
        """The drift_* gauges, from the figures `source` gives at scrape time (computed by the drift flush timer,
        never on the request path)."""
        self.registry.register(_DriftSeries(source, max_feature_labels))

    def for_model(self, metadata: ModelMetadata, environment: str) -> ModelMetrics:
        key = (metadata.name, metadata.version, environment)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._resolve(metadata, environment)
        return children

    def _resolve(self, metadata: ModelMetadata, environment: str) -> ModelMetrics:
        return ModelMetrics((metadata.name, metadata.version, environment), list(metadata.labels or []),
                            counts_classes=metadata.label_output is not None)

    def for_batching(self, model: str, version: str) -> BatchMetrics:
        key = (model, version)
        series = self.batch_series.get(key)
        if series is None:
            series = self.batch_series[key] = BatchMetrics(key)
        return series

    def series(self) -> Iterable[ModelMetrics]:
        return self._children.values()

    def rejected(self, model: str, environment: str, outcome: str) -> None:
        """A request refused before a version was resolved (the caller bounds `model` and `environment`)."""
        key = (model, environment, outcome)
        self.refused[key] = self.refused.get(key, 0) + 1
