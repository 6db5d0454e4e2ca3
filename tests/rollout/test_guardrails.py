"""The two guardrail causes of the SLO judge, on plain data with an explicit clock: prediction drift (the canary's
predicted-class shares against stable's on the same window) and quality (live accuracy from labelled feedback); the
class counts in the windows; the quality feed that brings the figures to the judge."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.guardrails import ArmQuality, QualityPair, prediction_distance
from gateway.judge import RolloutJudge, judge
from gateway.metrics import GatewayMetrics
from gateway.quality_feed import QualityFeed, no_quality_figures
from gateway.rollout_state import RolloutState, predicted_counts
from gateway.settings import GatewaySettings
from gateway.shadow import Tolerance
from gateway.traffic import MAX_CLASSES_PER_SLOT, OTHER_CLASSES, ArmWindows, SlidingWindow, WindowSummary
from modelstore.errors import InvalidSloPolicy
from modelstore.registry import CanaryState, Deployment
from modelstore.slo import SloLimits, SloPolicy, resolve_limits
from tests.rollout.conftest import feed, iso

T0 = 1_700_000_000.0
DRIFT = SloLimits(max_prediction_distance=0.1, min_prediction_rows=100)
QUALITY = SloLimits(max_quality_drop=0.05, min_labels=100)


def arm(classes: dict[str, int], requests: int = 500, version: str = "v") -> WindowSummary:
    return WindowSummary(requests, 0, 0.005, 0.95, version, classes=classes)


# --- prediction drift -------------------------------------------------------------------------------------------

def test_total_variation_distance_by_hand():
    assert prediction_distance({"a": 50, "b": 50}, {"a": 50, "b": 50}) == 0.0
    assert prediction_distance({"a": 10}, {"b": 7}) == 1.0
    # shares (0.6, 0.3, 0.1) vs (0.2, 0.3, 0.5): half of 0.4 + 0 + 0.4
    assert prediction_distance({"a": 60, "b": 30, "c": 10}, {"a": 20, "b": 30, "c": 50}) == pytest.approx(0.4)
    # a class only one arm predicted counts with a share of 0 in the other
    assert prediction_distance({"a": 90, "z": 10}, {"a": 100}) == pytest.approx(0.1)


def test_prediction_drift_breaches_with_its_figures():
    verdict = judge(arm({"0": 20, "1": 180}, version="v2"), arm({"0": 180, "1": 20}, version="v1"), DRIFT)
    assert verdict.kind == "breach" and verdict.causes == ("prediction_drift",)
    assert "total variation distance 0.800 above 0.1" in verdict.reasons[0]
    figures = verdict.figures
    assert (figures["prediction_distance"], figures["max_prediction_distance"]) == (0.8, 0.1)
    assert (figures["candidate_prediction_rows"], figures["reference_prediction_rows"]) == (200, 200)


def test_same_distribution_is_healthy():
    verdict = judge(arm({"0": 95, "1": 55, "2": 50}), arm({"0": 400, "1": 300, "2": 300}), DRIFT)
    assert verdict.kind == "healthy", verdict.reasons
    assert verdict.figures["prediction_distance"] == pytest.approx(0.075)


def test_prediction_drift_is_inconclusive_below_the_minimum_rows_in_either_arm():
    few = {"0": 99}
    verdict = judge(arm(few), arm({"1": 500}), DRIFT)
    assert verdict.kind == "inconclusive" and "prediction drift not compared" in verdict.reasons[0]
    assert verdict.figures["prediction_distance"] is None
    assert judge(arm({"1": 500}), arm(few), DRIFT).kind == "inconclusive"
    # another cause still breaches without it
    slow = WindowSummary(500, 0, 0.5, 0.95, "v", classes=few)
    breached = judge(slow, arm({"1": 500}), DRIFT)
    assert breached.kind == "breach" and breached.causes == ("latency",)


def test_prediction_drift_is_off_unless_set():
    verdict = judge(arm({"0": 500}), arm({"1": 500}), SloLimits())
    assert verdict.kind == "healthy" and "prediction_distance" not in verdict.figures


def test_a_regressor_has_no_classes_and_is_not_held_back_by_the_check():
    verdict = judge(arm({}), arm({}), DRIFT)
    assert verdict.kind == "healthy" and "not a classifier" in verdict.reasons[0]


def test_the_judge_breaches_on_drift_counted_by_the_windows_and_rolls_back():
    judge_, windows = RolloutJudge("iris", "prod"), ArmWindows()
    deployment = canary_deployment(SloPolicy(max_prediction_distance=0.1, min_prediction_rows=100))
    judge_.tick(deployment, windows, T0)
    decisions = []
    for window in range(2):
        start = T0 + window * 10
        feed(windows, "stable", "v1.0.0", start, start + 10, 300, 0.005)
        feed(windows, "canary", "v1.1.0", start, start + 10, 150, 0.005)
        for index in range(300):
            windows.record_classes("stable", "v1.0.0", [("setosa", 1)], start + index / 30)
        for index in range(150):
            windows.record_classes("canary", "v1.1.0", [("virginica" if index % 10 else "setosa", 1)],
                                   start + index / 15)
        decisions.append(judge_.tick(deployment, windows, start + 10))
    assert [d.action for d in decisions] == ["keep", "rollback_canary"]
    details = decisions[-1].details()
    assert details["causes"] == ["prediction_drift"]
    assert details["figures"]["prediction_distance"] == pytest.approx(0.9)


# --- quality ----------------------------------------------------------------------------------------------------

def test_quality_drop_breaches_with_its_figures():
    pair = QualityPair(ArmQuality(400, 0.82), ArmQuality(900, 0.91))
    verdict = judge(arm({}), arm({}), QUALITY, pair)
    assert verdict.kind == "breach" and verdict.causes == ("quality",)
    assert "live accuracy 82.00% is 9.00% below the reference's 91.00%" in verdict.reasons[0]
    figures = verdict.figures
    assert (figures["candidate_accuracy"], figures["reference_accuracy"], figures["quality_drop"]) == (0.82, 0.91, 0.09)
    assert (figures["max_quality_drop"], figures["min_labels"]) == (0.05, 100)
    assert (figures["candidate_labelled_rows"], figures["reference_labelled_rows"]) == (400, 900)


def test_quality_within_the_margin_or_better_is_healthy():
    assert judge(arm({}), arm({}), QUALITY, QualityPair(ArmQuality(400, 0.87), ArmQuality(900, 0.91))).kind == "healthy"
    assert judge(arm({}), arm({}), QUALITY, QualityPair(ArmQuality(400, 0.99), ArmQuality(900, 0.91))).kind == "healthy"


@pytest.mark.parametrize("pair", [
    QualityPair(ArmQuality(99, 0.1), ArmQuality(900, 0.91)),
    QualityPair(ArmQuality(400, 0.1), ArmQuality(99, 0.91)),
    QualityPair(None, ArmQuality(900, 0.91)),
    QualityPair(ArmQuality(400, None), ArmQuality(900, 0.91)),
    QualityPair(),
])
def test_quality_is_inconclusive_below_the_minimum_labels_or_without_figures(pair):
    verdict = judge(arm({}), arm({}), QUALITY, pair)
    assert verdict.kind == "inconclusive" and "quality not compared" in verdict.reasons[0]
    assert verdict.figures["quality_drop"] is None


def test_quality_is_off_unless_set_and_not_judged_where_it_does_not_apply():
    bad = QualityPair(ArmQuality(400, 0.1), ArmQuality(900, 0.91))
    assert judge(arm({}), arm({}), SloLimits(), bad).kind == "healthy"
    assert judge(arm({}), arm({}), QUALITY, None).kind == "healthy"  # a bake: no second arm labelled


def test_the_judge_reads_each_arms_quality_by_version_and_arm():
    judge_, windows = RolloutJudge("iris", "prod"), ArmWindows()
    deployment = canary_deployment(SloPolicy(max_quality_drop=0.05, min_labels=100, breaches_to_rollback=1))
    figures = {("v1.1.0", "canary"): ArmQuality(300, 0.70), ("v1.0.0", "stable"): ArmQuality(300, 0.90),
               ("v1.0.0", "canary"): ArmQuality(300, 0.99)}  # another version's figures are not the canary's
    judge_.tick(deployment, windows, T0, figures)
    feed(windows, "stable", "v1.0.0", T0, T0 + 10, 300, 0.005)
    feed(windows, "canary", "v1.1.0", T0, T0 + 10, 100, 0.005)
    decision = judge_.tick(deployment, windows, T0 + 10, figures)
    assert decision.action == "rollback_canary" and decision.verdict.causes == ("quality",)
    assert decision.details()["figures"]["quality_drop"] == pytest.approx(0.2)


# --- SLO validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("max_prediction_distance", 0.0), ("max_prediction_distance", 1.5), ("max_prediction_distance", float("nan")),
    ("min_prediction_rows", 0), ("max_quality_drop", -0.01), ("max_quality_drop", 2.0), ("min_labels", 0),
])
def test_invalid_guardrail_values_are_refused(field, value):
    with pytest.raises(InvalidSloPolicy, match=field):
        SloPolicy(**{field: value}).checked()
    with pytest.raises(InvalidSloPolicy, match=field):
        SloLimits(**{field: value})


def test_the_gateways_defaults_refuse_invalid_guardrails(tmp_path):
    with pytest.raises(ValidationError, match="max_quality_drop must be between 0 and 1"):
        GatewaySettings(store=tmp_path, slo={"max_quality_drop": 1.5})
    settings = GatewaySettings(store=tmp_path, slo={"max_prediction_distance": 0.1, "min_prediction_rows": 50})
    assert (settings.slo_limits.max_prediction_distance, settings.slo_limits.min_prediction_rows) == (0.1, 50)


def test_guardrails_resolve_like_the_other_fields():
    limits = resolve_limits(SloPolicy(max_prediction_distance=0.2, min_labels=50), SloLimits(min_prediction_rows=30))
    assert (limits.max_prediction_distance, limits.min_prediction_rows, limits.max_quality_drop, limits.min_labels) \
        == (0.2, 30, None, 50)
    assert SloLimits().max_prediction_distance is None and SloLimits().max_quality_drop is None


# --- class counts in the windows --------------------------------------------------------------------------------

def test_windows_count_classes_per_arm_and_version_and_forget_old_ones():
    windows = ArmWindows()
    windows.record("canary", "v2", 0.001, True, T0)
    windows.record_classes("canary", "v2", [("a", 3), ("b", 1)], T0)
    windows.record_classes("canary", "v1", [("a", 100)], T0)  # not the version this arm measures: dropped
    windows.record_classes("stable", "v1", [("a", 100)], T0)  # nothing recorded on stable yet: dropped
    assert windows.summary("canary", "v2", T0 + 1, 10, 0.95).classes == {"a": 3, "b": 1}
    assert windows.summary("stable", "v1", T0 + 1, 10, 0.95).classes == {}
    window = SlidingWindow(horizon_s=60)
    window.record_classes([("a", 1)], T0)
    window.record_classes([("b", 1)], T0 + 30)
    assert window.summary(T0 + 31, 10, 0.95).classes == {"b": 1}


def test_distinct_classes_per_slot_are_capped_and_still_add_up():
    window = SlidingWindow()
    window.record_classes([(f"class-{index}", 2) for index in range(1000)], T0)
    classes = window.summary(T0, 10, 0.95).classes
    assert len(classes) == MAX_CLASSES_PER_SLOT and sum(classes.values()) == 2000
    assert classes[OTHER_CLASSES] == 2 * (1000 - MAX_CLASSES_PER_SLOT + 1)


def test_predicted_counts_of_int_and_string_labels():
    assert sorted(predicted_counts(np.array([2, 0, 2, 2], dtype=np.int64))) == [("0", 1), ("2", 3)]
    assert predicted_counts(np.array(["cat"], dtype=object)) == [("cat", 1)]
    assert predicted_counts(np.array([b"dog", b"dog"], dtype=object)) == [("dog", 2)]


def test_rollout_state_counts_classes_only_while_prediction_drift_is_judged():
    state = RolloutState("iris", "prod", SloLimits(), GatewayMetrics(CollectorRegistry()), Tolerance(1e-3, 1e-6))
    deployment = canary_deployment()
    state.follow(deployment, True)
    state.record("canary", "v1.1.0", 0.001, True, T0)
    state.record_classes("canary", "v1.1.0", np.array([1, 1]), T0)
    assert state.windows.summary("canary", "v1.1.0", T0, 10, 0.95).classes == {}
    state.follow(canary_deployment(SloPolicy(max_prediction_distance=0.1)), True)
    state.record_classes("canary", "v1.1.0", np.array([1, 1]), T0)
    assert state.windows.summary("canary", "v1.1.0", T0, 10, 0.95).classes == {"1": 2}


# --- the quality feed -------------------------------------------------------------------------------------------

def test_the_default_source_reports_nothing():
    assert no_quality_figures("iris", "prod", 60.0) == {}


def test_quality_feed_asks_its_source_off_the_loop_at_most_every_refresh_s_and_keeps_figures_through_a_failure():
    calls: list[tuple[str, str, float, str]] = []
    failing = threading.Event()

    def source(model: str, environment: str, since_s: float):
        calls.append((model, environment, since_s, threading.current_thread().name))
        if failing.is_set():
            raise OSError("labels log unreadable")
        return {("v2", "canary"): ArmQuality(len(calls), 0.9)}

    async def scenario() -> list:
        feed_ = QualityFeed(source, refresh_s=5.0)
        seen = [await feed_.figures("iris", "prod", 10.0, T0), await feed_.figures("iris", "prod", 11.0, T0 + 4.9),
                await feed_.figures("iris", "prod", 15.0, T0 + 5.0)]
        failing.set()
        seen.append(await feed_.figures("iris", "prod", 25.0, T0 + 15.0))
        return seen

    seen = asyncio.run(scenario())
    assert [c[:3] for c in calls] == [("iris", "prod", 10.0), ("iris", "prod", 15.0), ("iris", "prod", 25.0)]
    assert all(c[3] != threading.main_thread().name for c in calls)
    assert [s[("v2", "canary")].labelled_rows for s in seen] == [1, 1, 2, 2]


def canary_deployment(slo: SloPolicy | None = None) -> Deployment:
    canary = CanaryState(version="v1.1.0", weight=10, steps=[], interval_s=None, started_at=iso(T0),
                         step_started_at=iso(T0))
    return Deployment(version="v1.0.0", deployed_at=iso(T0 - 3600), canary=canary, slo=slo)
