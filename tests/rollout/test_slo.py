"""The SLO judge and the rollout state machine, on plain data with an explicit clock."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.judge import ONE_SOURCE_FAILURES, EarlyFailureTest, RolloutJudge, judge, shadow_verdict
from gateway.metrics import GatewayMetrics
from gateway.rollout_state import RolloutState
from gateway.shadow import Tolerance
from gateway.traffic import ArmWindows, WindowSummary
from modelstore.errors import InvalidSloPolicy
from modelstore.registry import BakeState, CanaryState, Deployment, ShadowState
from modelstore.slo import SloLimits, SloPolicy, resolve_limits
from tests.rollout.conftest import feed, iso

LIMITS = SloLimits()
T0 = 1_700_000_000.0


def summary(requests: int, errors: int = 0, latency_ms: float | None = 5.0, version: str = "v") -> WindowSummary:
    return WindowSummary(requests, errors, None if latency_ms is None or not requests else latency_ms / 1000,
                         0.95, version)


def test_healthy_when_close_to_stable():
    verdict = judge(summary(100, latency_ms=6.0), summary(500, latency_ms=5.0), LIMITS)
    assert verdict.kind == "healthy" and verdict.reasons == ()
    assert verdict.figures["latency_limit_ms"] == pytest.approx(max(1.5 * 5.0, 5.0 + 2.0))


def test_breach_on_latency_relative_to_stable():
    verdict = judge(summary(100, latency_ms=20.0), summary(500, latency_ms=5.0), LIMITS)
    assert verdict.kind == "breach"
    assert "latency" in verdict.reasons[0] and verdict.figures["candidate_latency_ms"] == pytest.approx(20.0)


def test_breach_on_absolute_latency_limit():
    limits = SloLimits(max_latency_ms=10.0, max_latency_ratio=100.0)
    assert judge(summary(100, latency_ms=12.0), summary(500, latency_ms=5.0), limits).kind == "breach"


def test_breach_on_errors():
    verdict = judge(summary(200, errors=5), summary(500), LIMITS)
    assert verdict.kind == "breach" and "error rate 2.50%" in verdict.reasons[0]
    assert judge(summary(200, errors=2), summary(500), LIMITS).kind == "healthy"


def test_microsecond_jitter_on_tiny_models_is_not_a_breach():
    # 4x slower, but 0.15 ms in absolute terms: under the +2 ms margin
    assert judge(summary(100, latency_ms=0.2), summary(500, latency_ms=0.05), LIMITS).kind == "healthy"
    assert judge(summary(100, latency_ms=2.2), summary(500, latency_ms=0.05), LIMITS).kind == "breach"


def test_below_min_requests_or_empty_is_inconclusive_never_a_breach():
    every_request_failed = summary(LIMITS.min_requests - 1, errors=LIMITS.min_requests - 1, latency_ms=900.0)
    assert judge(every_request_failed, summary(500), LIMITS).kind == "inconclusive"
    assert judge(summary(0), summary(0), LIMITS).kind == "inconclusive"
    assert judge(WindowSummary(), WindowSummary(), LIMITS).figures["candidate_error_rate"] is None


def test_reference_without_data_judges_errors_but_not_latency():
    assert judge(summary(100, latency_ms=50.0), summary(3), LIMITS).kind == "inconclusive"
    assert judge(summary(100, errors=10), summary(0), LIMITS).kind == "breach"


def test_registry_policy_overrides_defaults_field_by_field():
    limits = resolve_limits(SloPolicy(max_error_rate=0.05, window_s=2), SloLimits(min_requests=7))
    assert (limits.max_error_rate, limits.window_s, limits.min_requests, limits.max_latency_ratio) == (0.05, 2, 7, 1.5)
    assert resolve_limits(None, LIMITS) is LIMITS
    with pytest.raises(InvalidSloPolicy):
        resolve_limits(SloPolicy(latency_quantile=95), LIMITS)


# --- the state machine ------------------------------------------------------------------------------------------

def canary_deployment(weight: float = 10, steps: tuple = (), interval_s: float | None = None,
                      step_started: float = T0, slo: SloPolicy | None = None) -> Deployment:
    canary = CanaryState(version="v1.1.0", weight=weight, steps=list(steps), interval_s=interval_s,
                         started_at=iso(T0), step_started_at=iso(step_started))
    return Deployment(version="v1.0.0", deployed_at=iso(T0 - 3600), canary=canary, slo=slo)


def run_windows(judge_: RolloutJudge, deployment: Deployment, windows: ArmWindows, start: float,
                plan: list[tuple[float, int]]) -> list:
    """One window per plan entry: stable at 5 ms, the canary at (latency_ms, errors out of 100); tick at its end."""
    decisions = []
    for index, (canary_ms, canary_errors) in enumerate(plan):
        begin, end = start + index * 10, start + (index + 1) * 10
        feed(windows, "stable", deployment.version, begin, end, 300, 0.005)
        feed(windows, "canary", deployment.canary.version, begin, end, 100, canary_ms / 1000, errors=canary_errors)
        decisions.append(judge_.tick(deployment, windows, end))
    return decisions


def test_judges_once_per_window_starting_one_window_after_the_canary_appears():
    judge_, windows, deployment = RolloutJudge("tiny", "prod"), ArmWindows(), canary_deployment()
    assert judge_.tick(deployment, windows, T0).action == "keep" and judge_.last_verdict is None
    feed(windows, "canary", "v1.1.0", T0, T0 + 9, 100, 0.005, errors=100)
    assert judge_.tick(deployment, windows, T0 + 9).verdict is None
    assert judge_.tick(deployment, windows, T0 + 10).verdict.kind == "breach"


def test_rollback_after_consecutive_breaches_only():
    judge_, windows, deployment = RolloutJudge("tiny", "prod"), ArmWindows(), canary_deployment()
    judge_.tick(deployment, windows, T0)
    decisions = run_windows(judge_, deployment, windows, T0, [(40, 0), (5, 0), (40, 0), (5, 0), (5, 30), (40, 0)])
    kinds = [d.verdict.kind for d in decisions]
    assert kinds == ["breach", "healthy", "breach", "healthy", "breach", "breach"]
    assert [d.action for d in decisions] == ["keep"] * 5 + ["rollback_canary"]
    last = decisions[-1]
    assert (last.version, last.expected_weight) == ("v1.1.0", 10)
    assert last.details()["figures"]["candidate_requests"] == 100 and last.details()["reasons"]


def test_low_traffic_canary_is_never_rolled_back():
    judge_, windows, deployment = RolloutJudge("tiny", "prod"), ArmWindows(), canary_deployment()
    judge_.tick(deployment, windows, T0)
    for index in range(6):
        feed(windows, "canary", "v1.1.0", T0 + index * 10, T0 + index * 10 + 10, 5, 0.9, errors=5)
        decision = judge_.tick(deployment, windows, T0 + index * 10 + 10)
        assert decision.action == "keep" and decision.verdict.kind == "inconclusive"


def test_steps_advance_after_a_healthy_interval_and_the_step_to_100_promotes():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    deployment = canary_deployment(weight=10, steps=(50, 100), interval_s=25)
    judge_.tick(deployment, windows, T0)
    decisions = run_windows(judge_, deployment, windows, T0, [(5, 0), (5, 0), (5, 0)])
    assert [d.action for d in decisions] == ["keep", "keep", "advance"]
    assert (decisions[-1].expected_weight, decisions[-1].next_weight) == (10, 50)

    at_50 = canary_deployment(weight=50, steps=(50, 100), interval_s=25, step_started=T0 + 30)
    decisions = run_windows(judge_, at_50, windows, T0 + 30, [(40, 0), (5, 0), (5, 0), (5, 0)])
    # the breach at T0+40 restarts the interval: 25 s of calm after it is reached at T0+70
    assert [d.action for d in decisions] == ["keep", "keep", "keep", "promote"]
    assert decisions[-1].next_weight == 100


def test_no_step_without_a_healthy_verdict():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    deployment = canary_deployment(weight=10, steps=(50,), interval_s=5)
    judge_.tick(deployment, windows, T0)
    feed(windows, "canary", "v1.1.0", T0, T0 + 10, 100, 0.005)  # stable has no traffic: latency not compared
    assert judge_.tick(deployment, windows, T0 + 10).action == "keep"


def test_deployment_slo_changes_the_rules():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    deployment = canary_deployment(slo=SloPolicy(breaches_to_rollback=1, window_s=5))
    judge_.tick(deployment, windows, T0)
    feed(windows, "canary", "v1.1.0", T0, T0 + 5, 50, 0.005, errors=10)
    assert judge_.tick(deployment, windows, T0 + 5).action == "rollback_canary"


def test_a_new_canary_starts_a_new_count():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    deployment = canary_deployment()
    judge_.tick(deployment, windows, T0)
    assert run_windows(judge_, deployment, windows, T0, [(40, 0)])[0].verdict.kind == "breach"
    other = deployment.model_copy(update={"canary": deployment.canary.model_copy(update={"started_at": iso(T0 + 10)})})
    assert judge_.tick(other, windows, T0 + 10).verdict is None
    assert run_windows(judge_, other, windows, T0 + 10, [(40, 0)])[0].action == "keep"


def baked(until: float) -> Deployment:
    return Deployment(version="v1.1.0", deployed_at=iso(T0 + 20), previous_version="v1.0.0",
                      bake=BakeState(previous_version="v1.0.0", until=iso(until)))


def test_bake_period_rolls_back_against_the_previous_versions_kept_figures():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    judge_.tick(canary_deployment(), windows, T0)
    run_windows(judge_, canary_deployment(), windows, T0, [(5, 0), (5, 0)])  # stable v1.0.0 measured at 5 ms
    promoted = baked(until=T0 + 300)
    assert judge_.tick(promoted, windows, T0 + 20).action == "keep"
    decisions = []
    for index in range(3):
        begin = T0 + 20 + index * 10
        feed(windows, "stable", "v1.1.0", begin, begin + 10, 300, 0.030)
        decisions.append(judge_.tick(promoted, windows, begin + 10))
    assert [d.action for d in decisions[:2]] == ["keep", "rollback_bake"]
    assert decisions[1].version == "v1.1.0"
    figures = decisions[1].verdict.figures
    assert (figures["reference_version"], figures["candidate_version"]) == ("v1.0.0", "v1.1.0")
    assert figures["reference_latency_ms"] == pytest.approx(5.0, rel=0.03)


def test_bake_healthy_version_is_kept_and_the_bake_ends():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()
    judge_.tick(canary_deployment(), windows, T0)
    run_windows(judge_, canary_deployment(), windows, T0, [(5, 0)])
    promoted = baked(until=T0 + 60)
    judge_.tick(promoted, windows, T0 + 10)
    for index in range(4):
        begin = T0 + 10 + index * 10
        feed(windows, "stable", "v1.1.0", begin, begin + 10, 300, 0.005)
        decision = judge_.tick(promoted, windows, begin + 10)
        assert decision.action == "keep" and decision.verdict.kind == "healthy"
    feed(windows, "stable", "v1.1.0", T0 + 60, T0 + 80, 300, 0.5, errors=300)
    assert judge_.tick(promoted, windows, T0 + 80).action == "keep" and judge_.last_verdict is None


def test_bake_without_kept_figures_still_rolls_back_on_errors():
    judge_, windows = RolloutJudge("tiny", "prod"), ArmWindows()  # e.g. a worker restarted after the promotion
    promoted = baked(until=T0 + 300)
    judge_.tick(promoted, windows, T0)
    verdicts = []
    for index in range(2):
        feed(windows, "stable", "v1.1.0", T0 + index * 10, T0 + index * 10 + 10, 100, 0.050)
        verdicts.append(judge_.tick(promoted, windows, T0 + index * 10 + 10).verdict.kind)
    assert verdicts == ["inconclusive", "inconclusive"]
    actions = []
    for begin in (T0 + 20, T0 + 30):
        feed(windows, "stable", "v1.1.0", begin, begin + 10, 100, 0.005, errors=10)
        actions.append(judge_.tick(promoted, windows, begin + 10).action)
    assert actions == ["keep", "rollback_bake"]


def test_shadow_verdict_compares_shadow_with_stable():
    windows = ArmWindows()
    feed(windows, "stable", "v1.0.0", T0, T0 + 10, 200, 0.005)
    feed(windows, "shadow", "v1.2.0", T0, T0 + 10, 200, 0.050)
    with_shadow = Deployment(version="v1.0.0", deployed_at=iso(T0),
                             shadow=ShadowState(version="v1.2.0", weight=100, started_at=iso(T0)))
    assert shadow_verdict(with_shadow, windows, T0 + 10).kind == "breach"
    assert shadow_verdict(with_shadow.model_copy(update={"shadow": None}), windows, T0 + 10) is None


# --- errors per source ------------------------------------------------------------------------------------------

def sourced(requests: int, errors: int, sources: int, failing: int, rate: float) -> WindowSummary:
    return WindowSummary(requests, errors, 0.005, 0.95, "v", sources, failing, rate)


def test_error_rate_per_source_cannot_be_diluted_by_one_source():
    # 1,000 good requests from one source, 3 failures from 3 others: 0.3% per request, 75% per source
    verdict = judge(sourced(1003, 3, 4, 3, 0.75), summary(500), LIMITS)
    assert verdict.kind == "breach" and verdict.causes == ("error_rate",)
    assert "per source 75.00%" in verdict.reasons[0] and "3 of 4 sources" in verdict.reasons[0]
    assert verdict.figures["candidate_source_error_rate"] == 0.75 and verdict.figures["candidate_sources"] == 4


def test_error_rate_per_source_needs_min_sources_and_is_one_vote_each():
    assert judge(sourced(1001, 1, 2, 1, 0.5), summary(500), LIMITS).kind == "healthy"  # below min_sources
    assert judge(sourced(1001, 1, 2, 1, 0.5), summary(500), SloLimits(min_sources=2)).kind == "breach"
    # a healthy version's rare errors spread over many sources: each source's rate is low, so is their mean
    assert judge(sourced(10_000, 50, 100, 40, 0.005), summary(500), LIMITS).kind == "healthy"
    with pytest.raises(InvalidSloPolicy, match="min_sources"):
        SloPolicy(min_sources=0).checked()


def test_windows_feed_the_per_source_rule():
    judge_, windows, deployment = RolloutJudge("tiny", "prod"), ArmWindows(), canary_deployment()
    judge_.tick(deployment, windows, T0)
    feed(windows, "stable", "v1.0.0", T0, T0 + 10, 300, 0.005)
    for index in range(500):
        windows.record("canary", "v1.1.0", 0.005, True, T0 + index / 50, "flood")
    for source in ("a", "b", "c"):
        windows.record("canary", "v1.1.0", 0.005, False, T0 + 5, source)
    verdict = judge_.tick(deployment, windows, T0 + 10).verdict
    assert verdict.kind == "breach" and verdict.figures["candidate_error_rate"] < LIMITS.max_error_rate
    assert verdict.figures["candidate_failing_sources"] == 3


# --- the early test ---------------------------------------------------------------------------------------------

def test_early_test_withholds_a_canary_failing_every_request_within_a_few_failures():
    test = EarlyFailureTest("v1.1.0", ("v1.1.0", "t"))
    decided = [test.failed(n, f"user-{n}", 0.01) for n in range(1, 11)]
    first = decided.index(True) + 1
    assert first <= 6 and not any(decided[:first - 1])
    verdict = test.verdict(first, first)
    assert verdict.kind == "breach" and verdict.causes == ("error_rate",)
    assert verdict.figures["sequential_statistic"] >= verdict.figures["sequential_threshold"]
    assert verdict.figures["failing_sources"] == "several" and verdict.figures["decided"] == "early"


def test_early_test_ignores_a_healthy_rate_and_needs_several_sources_or_many_failures():
    healthy = EarlyFailureTest("v1.1.0", ())
    assert not any(healthy.failed(n, f"user-{n}", 0.01) for n in range(100, 100_000, 100))  # 1% failing: never
    one_source = EarlyFailureTest("v1.1.0", ())
    decided = [one_source.failed(n, "attacker", 0.01) for n in range(1, ONE_SOURCE_FAILURES + 1)]
    assert decided.index(True) == ONE_SOURCE_FAILURES - 1  # alone, only after ONE_SOURCE_FAILURES failures
    stable_fails_too = EarlyFailureTest("v1.1.0", ())
    assert not any(stable_fails_too.failed(n, f"user-{n}", 0.5) for n in range(1, 100))


def test_early_test_restarts_after_a_healthy_stretch_and_catches_a_later_turn():
    test = EarlyFailureTest("v1.1.0", ())
    assert not test.failed(1, "a", 0.01)
    assert not test.failed(10_000, "b", 0.01)  # 10,000 successes in between: the run restarts from 0
    assert test.run_failures == 1
    decided = [test.failed(10_000 + n, f"user-{n}", 0.01) for n in range(1, 11)]
    assert True in decided[:6]


def test_early_failure_withholds_at_once_and_leaves_the_rollback_pending():
    state = RolloutState("tiny", "prod", LIMITS, GatewayMetrics(CollectorRegistry()), Tolerance(1e-4, 1e-6))
    deployment = canary_deployment(weight=30)
    withheld_at = None
    for n in range(1, 20):
        state.record("canary", "v1.1.0", 0.001, False, T0 + n / 100, f"user-{n}")
        state.record("stable", "v1.0.0", 0.001, True, T0 + n / 100, f"user-{n}")
        if state.canary_failed(deployment, True, f"user-{n}"):
            withheld_at = n
            break
    assert withheld_at is not None and withheld_at <= 6
    assert state.withheld == "v1.1.0" and state.effective_weight(deployment, True) == 0
    decision = state.decide(deployment, None, T0 + 1)
    assert (decision.action, decision.version, decision.expected_weight) == ("rollback_canary", "v1.1.0", 30)
    assert decision.details()["figures"]["candidate_requests"] == withheld_at
    assert state.pending is None
