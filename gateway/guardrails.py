"""The SLO judge's guardrails on what a canary answers rather than how: prediction drift (its predicted-class shares
against stable's over the same window) and quality (its live accuracy from labelled feedback against stable's).

Pure, like the judge that calls them: each check reads plain figures, adds its own to the verdict's `figures`, and
returns its outcome (gateway.judge.judge folds it into the verdict).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.traffic import WindowSummary
from modelstore.slo import SloLimits


@dataclass(frozen=True)
class ArmQuality:
    """One arm's live quality from labelled feedback: how many of its answers were labelled, and the share of those
    it got right (None without labels)."""

    labelled_rows: int
    accuracy: float | None


QualityFigures = Mapping[tuple[str, str], ArmQuality]
"""(version, arm) -> that arm's quality, as a quality source reports it (gateway.quality_feed)."""


@dataclass(frozen=True)
class QualityPair:
    """What the quality check compares: the candidate's and the reference's figures (None: none reported)."""

    candidate: ArmQuality | None = None
    reference: ArmQuality | None = None


CheckResult = tuple[Literal["breach", "undone", "remark"], str, str | None] | None
"""A guardrail's outcome: None when it passed or is off; else a breach (with its cause), a check left undone for want
of evidence (the verdict cannot be healthy), or a remark."""


def prediction_distance(candidate: Mapping[str, int], reference: Mapping[str, int]) -> float:
    """Total variation distance between two arms' predicted-class shares: half the sum over classes of the absolute
    difference in shares (0: the same distribution, 1: no class in common). Both must have rows."""
    candidate_rows, reference_rows = sum(candidate.values()), sum(reference.values())
    return 0.5 * sum(abs(candidate.get(label, 0) / candidate_rows - reference.get(label, 0) / reference_rows)
                     for label in candidate.keys() | reference.keys())


def prediction_drift_check(candidate: WindowSummary, reference: WindowSummary, limits: SloLimits,
                           figures: dict) -> CheckResult:
    limit = limits.max_prediction_distance
    if limit is None:
        return None
    rows, reference_rows = candidate.predicted_rows, reference.predicted_rows
    figures.update({"candidate_prediction_rows": rows, "reference_prediction_rows": reference_rows,
                    "prediction_distance": None, "max_prediction_distance": limit,
                    "min_prediction_rows": limits.min_prediction_rows})
    if rows == 0 and reference_rows == 0:
        return "remark", "no predicted classes in either arm (not a classifier): prediction drift not judged", None
    if min(rows, reference_rows) < limits.min_prediction_rows:
        return "undone", (f"{rows} predicted rows from {candidate.version or 'the candidate'} and {reference_rows} "
                          f"from {reference.version or 'the reference'}, fewer than {limits.min_prediction_rows} "
                          f"in one: prediction drift not compared"), None
    distance = prediction_distance(candidate.classes, reference.classes)
    figures["prediction_distance"] = _rounded(distance)
    if distance > limit:
        return "breach", (f"predicted classes differ from {reference.version or 'the reference'}'s: total variation "
                          f"distance {distance:.3f} above {limit:g}"), "prediction_drift"
    return None


def quality_check(quality: QualityPair, limits: SloLimits, figures: dict) -> CheckResult:
    drop_limit = limits.max_quality_drop
    if drop_limit is None:
        return None
    candidate, reference = quality.candidate, quality.reference
    figures.update({"candidate_labelled_rows": candidate.labelled_rows if candidate else 0,
                    "reference_labelled_rows": reference.labelled_rows if reference else 0,
                    "candidate_accuracy": _rounded(candidate.accuracy) if candidate else None,
                    "reference_accuracy": _rounded(reference.accuracy) if reference else None,
                    "quality_drop": None, "max_quality_drop": drop_limit, "min_labels": limits.min_labels})
    if (candidate is None or reference is None or candidate.accuracy is None or reference.accuracy is None
            or min(candidate.labelled_rows, reference.labelled_rows) < limits.min_labels):
        return "undone", (f"{figures['candidate_labelled_rows']} labelled rows for the candidate and "
                          f"{figures['reference_labelled_rows']} for the reference, fewer than {limits.min_labels} "
                          f"in one: quality not compared"), None
    drop = reference.accuracy - candidate.accuracy
    figures["quality_drop"] = _rounded(drop)
    if drop > drop_limit:
        return "breach", (f"live accuracy {candidate.accuracy:.2%} is {drop:.2%} below the reference's "
                          f"{reference.accuracy:.2%}, more than {drop_limit:.2%}"), "quality"
    return None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
