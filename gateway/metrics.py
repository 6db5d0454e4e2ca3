"""Every Prometheus metric the gateway exports, on an injected CollectorRegistry.

Label values are bounded: model and version come from the registry (never from a URL), environments from settings,
classes from metadata labels (anything else is "other"). Per-request work uses children resolved once per
model/version/environment and kept on the loaded model.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelstore.metadata import ModelMetadata

OUTCOMES = ("ok", "invalid_input", "too_large", "unavailable", "error")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OTHER_CLASS = "other"
UNKNOWN_MODEL = "_unknown"


@dataclass
class ModelMetrics:
    """Children for one (model, version, environment)."""

    outcomes: dict[str, object]
    latency: object
    class_ids: list  # child per class id, in label order
    class_names: dict[str, object]
    other_class: object
    counts_classes: bool

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome].inc()
        self.latency.observe(seconds)

    def record_classes(self, values: np.ndarray) -> None:
        if not self.counts_classes:
            return
        if values.size == 1:
            self._child(values.item()).inc()
            return
        unique, counts = np.unique(values, return_counts=True)
        for value, count in zip(unique.tolist(), counts.tolist(), strict=True):
            self._child(value).inc(count)

    def _child(self, value: object) -> object:
        if isinstance(value, int):
            return self.class_ids[value] if 0 <= value < len(self.class_ids) else self.other_class
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return self.class_names.get(value, self.other_class)


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


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("requests", "Requests answered, by outcome",
                                ["model", "version", "environment", "outcome"], registry=registry)
        self.latency = Histogram("request_latency_seconds", "Time from parsed route to response body, per request",
                                 ["model", "version", "environment"], buckets=LATENCY_BUCKETS, registry=registry)
        self.predictions = Counter("predictions", "Predicted classes (label output), by class",
                                   ["model", "version", "environment", "class"], registry=registry)
        self.model_load_seconds = Gauge("model_load_seconds", "Seconds to verify and load a model version",
                                        ["model", "version"], registry=registry)
        self.models_loaded = Gauge("models_loaded", "Model versions with a loaded onnxruntime session",
                                   registry=registry)
        self.reloads = Counter("reloads", "Pool reloads attempted", registry=registry)
        self.reload_failures = Counter("reload_failures", "Reloads with a version that could not be loaded, or an "
                                       "unreadable registry", ["model"], registry=registry)
        self.canary_weight = Gauge("canary_weight", "Percent of traffic routed to the canary",
                                   ["model", "environment"], registry=registry)
        self.rollbacks = Counter("rollbacks", "Automatic rollbacks this gateway applied, by kind (canary, bake) and "
                                 "cause (latency, error_rate, load_failure)", ["model", "environment", "kind", "cause"],
                                 registry=registry)
        self.rollout_steps = Counter("rollout_steps", "Canary steps and promotions this gateway applied",
                                     ["model", "environment", "action"], registry=registry)
        self.shadow_requests = Counter("shadow_requests", "Requests mirrored to a shadow version, by outcome",
                                       ["model", "version", "environment", "outcome"], registry=registry)
        self.shadow_rows = Counter("shadow_rows", "Rows the shadow answered, compared with stable's answers",
                                   ["model", "version", "environment", "result"], registry=registry)
        self.shadow_latency = Histogram("shadow_latency_seconds", "Shadow run time per mirrored request",
                                        ["model", "version", "environment"], buckets=LATENCY_BUCKETS, registry=registry)
        self._children: dict[tuple[str, str, str], ModelMetrics] = {}

    def export_shadow_distances(self, source: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        """shadow_distribution_distance, computed from `source` (model, version, environment, distance) at scrape
        time: the distance needs a sort over kept values, too costly to redo on every mirrored request."""
        self.registry.register(_ShadowDistance(source))

    def for_model(self, metadata: ModelMetadata, environment: str) -> ModelMetrics:
        key = (metadata.name, metadata.version, environment)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._resolve(metadata, environment)
        return children

    def _resolve(self, metadata: ModelMetadata, environment: str) -> ModelMetrics:
        name, version = metadata.name, metadata.version
        labels = metadata.labels or []
        predicted = self.predictions.labels
        by_id = [predicted(name, version, environment, label) for label in labels]
        return ModelMetrics(
            outcomes={o: self.requests.labels(name, version, environment, o) for o in OUTCOMES},
            latency=self.latency.labels(name, version, environment),
            class_ids=by_id,
            class_names=dict(zip(labels, by_id, strict=True)),
            other_class=predicted(name, version, environment, OTHER_CLASS),
            counts_classes=metadata.label_output is not None,
        )

    def rejected(self, model: str, environment: str, outcome: str) -> None:
        """A request refused before a version was resolved (the caller bounds `model` and `environment`)."""
        self.requests.labels(model, "", environment, outcome).inc()
