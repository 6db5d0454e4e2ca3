"""The SLO a canary (or a freshly promoted version) is judged by, in its two forms: `SloPolicy` as given (every field
optional: a deployment's overrides, the gateway's --slo-file) and `SloLimits` resolved (every field set). The CLI, the
gateway's settings, the registry and the judge all use these; each field's rule is written once, in RULES."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from modelstore.errors import InvalidSloPolicy

DEFAULT_BAKE_S = 300.0
"""How long a promoted version is watched against its predecessor's figures unless a policy says otherwise."""

RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "latency_quantile": (lambda v: 0 < v < 1, "must be between 0 and 1 (e.g. 0.95)"),
    "max_latency_ms": (lambda v: v > 0, "must be positive"),
    "max_latency_ratio": (lambda v: v >= 1, "must be at least 1"),
    "max_error_rate": (lambda v: 0 <= v <= 1, "must be between 0 and 1 (0.01 is 1%)"),
    "window_s": (lambda v: v > 0, "must be positive"),
    "min_requests": (lambda v: v >= 1, "must be at least 1"),
    "min_sources": (lambda v: v >= 1, "must be at least 1"),
    "breaches_to_rollback": (lambda v: v >= 1, "must be at least 1"),
    "bake_s": (lambda v: v >= 0, "must not be negative"),
    "latency_margin_ms": (lambda v: v >= 0, "must not be negative"),
    "max_prediction_distance": (lambda v: 0 < v <= 1, "must be above 0 and at most 1 (a total variation distance)"),
    "min_prediction_rows": (lambda v: v >= 1, "must be at least 1"),
    "max_quality_drop": (lambda v: 0 <= v <= 1, "must be between 0 and 1 (0.05 is 5 points of accuracy)"),
    "min_labels": (lambda v: v >= 1, "must be at least 1"),
}


def _check(values: dict[str, float | None]) -> None:
    problems = [f"{name} {message}" for name, (holds, message) in RULES.items()
                if values.get(name) is not None and not (math.isfinite(values[name]) and holds(values[name]))]
    if problems:
        raise InvalidSloPolicy("invalid SLO policy: " + "; ".join(problems))


class SloPolicy(BaseModel):
    """An SLO as given: unset fields take the defaults it is resolved against. Constructing one does not check the
    values (so that a caller can report every problem at once); `checked()` does."""

    model_config = ConfigDict(extra="forbid")

    latency_quantile: float | None = None
    max_latency_ms: float | None = None
    max_latency_ratio: float | None = None
    max_error_rate: float | None = None
    window_s: float | None = None
    min_requests: int | None = None
    min_sources: int | None = None
    breaches_to_rollback: int | None = None
    bake_s: float | None = None
    max_prediction_distance: float | None = None
    min_prediction_rows: int | None = None
    max_quality_drop: float | None = None
    min_labels: int | None = None

    def checked(self) -> SloPolicy:
        _check(self.model_dump())
        return self

    def given(self) -> dict[str, float | int]:
        return self.model_dump(exclude_none=True)

    def merged(self, override: SloPolicy | None) -> SloPolicy:
        """This policy with the fields `override` sets replaced (override is checked first)."""
        if override is None:
            return self
        return SloPolicy(**{**self.model_dump(), **override.checked().given()})


@dataclass(frozen=True)
class SloLimits:
    """A complete policy: the gateway's defaults, or a deployment's policy resolved against them.

    Latency is judged per unit of work (per row; for text, per row and per 1,000 characters), `max_latency_ms`
    included, so that large requests do not read as a slow version. It breaches when the canary's quantile exceeds
    max(ratio * stable's, stable's + margin): the margin keeps microsecond jitter on tiny models from reading as a 50%
    regression. The error rate breaches per request, or per source (the mean of each source's error rate) once
    `min_sources` distinct sources sent requests in the window.

    Two causes are off unless set. Prediction drift (`max_prediction_distance`) breaches when the total variation
    distance between the two arms' predicted-class shares over the same window is above it, once each arm predicted
    `min_prediction_rows` rows (classifiers only). Quality (`max_quality_drop`) breaches when the canary's live
    accuracy from labelled feedback is below stable's by more than it, once each arm has `min_labels` labelled rows.
    """

    latency_quantile: float = 0.95
    max_latency_ms: float | None = None
    max_latency_ratio: float = 1.5
    latency_margin_ms: float = 2.0
    max_error_rate: float = 0.01
    window_s: float = 10.0
    min_requests: int = 20
    min_sources: int = 3
    breaches_to_rollback: int = 2
    bake_s: float = DEFAULT_BAKE_S
    max_prediction_distance: float | None = None
    min_prediction_rows: int = 200
    max_quality_drop: float | None = None
    min_labels: int = 200

    def __post_init__(self) -> None:
        _check(dataclasses.asdict(self))


def resolve_limits(policy: SloPolicy | None, defaults: SloLimits = SloLimits()) -> SloLimits:
    """The fields `policy` sets win over `defaults`."""
    if policy is None:
        return defaults
    return dataclasses.replace(defaults, **policy.given())
