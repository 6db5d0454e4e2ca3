"""The judge's recent windows (gateway.judge.JudgedWindow) and the dashboard's charts drawn from them, on plain data
with an explicit clock."""
from __future__ import annotations

import pytest

from gateway.judge import RECENT_WINDOWS, RolloutJudge
from gateway.traffic import ArmWindows
from gateway.ui.charts import HEIGHT, PAD, window_charts
from modelstore.registry import CanaryState, Deployment
from tests.rollout.conftest import feed, iso

T0 = 1_700_000_000.0


def canary_deployment() -> Deployment:
    canary = CanaryState(version="v2", weight=10, started_at=iso(T0), step_started_at=iso(T0))
    return Deployment(version="v1", deployed_at=iso(T0 - 3600), canary=canary)


def judged(plan: list[tuple[float, int]]) -> list[dict]:
    """One 10 s window per plan entry: stable 200 requests at 5 ms, the canary 100 at (latency_ms, errors)."""
    judge_, windows, deployment = RolloutJudge("m", "prod"), ArmWindows(), canary_deployment()
    judge_.tick(deployment, windows, T0)
    for index, (canary_ms, errors) in enumerate(plan):
        begin, end = T0 + index * 10, T0 + (index + 1) * 10
        feed(windows, "stable", "v1", begin, end, 200, 0.005)
        feed(windows, "canary", "v2", begin, end, 100, canary_ms / 1000, errors=errors)
        judge_.tick(deployment, windows, end)
    return [window.as_json() for window in judge_.recent]


def test_each_judged_window_keeps_both_arms_the_limits_and_the_verdict():
    windows = judged([(5, 0), (40, 0), (5, 30)])
    assert [w["verdict"] for w in windows] == ["healthy", "breach", "breach"]
    first = windows[0]
    assert first["arms"]["stable"]["version"] == "v1" and first["arms"]["canary"]["version"] == "v2"
    assert first["arms"]["canary"]["requests"] == 100 and first["arms"]["stable"]["requests"] == 200
    assert first["arms"]["canary"]["latency_ms"] == pytest.approx(5.0, rel=0.05)
    assert first["latency_limit_ms"] == pytest.approx(7.5, rel=0.05)  # max(1.5 x 5 ms, 5 ms + 2 ms)
    assert first["max_error_rate"] == 0.01 and first["quantile"] == 0.95
    assert windows[1]["arms"]["canary"]["latency_ms"] == pytest.approx(40.0, rel=0.05)
    assert windows[2]["arms"]["canary"]["error_rate"] == pytest.approx(0.3)


def test_only_the_latest_windows_are_kept():
    windows = judged([(5, 0)] * (RECENT_WINDOWS + 5))
    assert len(windows) == RECENT_WINDOWS
    assert windows[-1]["at"] == T0 + (RECENT_WINDOWS + 5) * 10


def test_a_stable_version_alone_is_charted_as_read():
    judge_, windows = RolloutJudge("m", "prod"), ArmWindows()
    deployment = Deployment(version="v1", deployed_at=iso(T0))
    judge_.tick(deployment, windows, T0)
    feed(windows, "stable", "v1", T0, T0 + 10, 50, 0.003, errors=1)
    judge_.tick(deployment, windows, T0 + 10)
    [window] = [w.as_json() for w in judge_.recent]
    assert window["verdict"] is None and set(window["arms"]) == {"stable"}
    assert window["arms"]["stable"]["error_rate"] == pytest.approx(0.02)


def points(line: str) -> list[tuple[float, float]]:
    return [tuple(map(float, point.split(","))) for point in line.split()]


def test_charts_draw_each_arm_against_its_limit_and_mark_breaches():
    latency, errors = window_charts(judged([(5, 0), (40, 0), (5, 30)]))
    assert latency.title == "p95 latency (ms)" and errors.title == "error rate"
    lines = dict(latency.lines)
    assert set(lines) == {"limit", "stable", "canary"}
    canary = points(lines["canary"])
    assert len(canary) == 3 and canary[0][0] < canary[1][0] < canary[2][0]
    assert canary[1][1] < canary[0][1], "the 40 ms window is drawn higher (smaller y) than the 5 ms one"
    assert all(PAD <= y <= HEIGHT - PAD for _, y in canary)
    assert len(latency.breaches) == 2 and latency.breaches == errors.breaches
    assert float(latency.top) > 40 and latency.latest["canary"] == f"{judged([(5, 0)])[0]['arms']['canary']['latency_ms']:.2f}"
    error_lines = dict(errors.lines)
    limit = points(error_lines["limit"])
    assert len({y for _, y in limit}) == 1, "one error-rate limit throughout"
    assert points(error_lines["canary"])[2][1] < limit[0][1], "30% of errors is drawn above the 1% limit"
    assert errors.latest["canary"] == "30.0%"


def test_no_windows_no_charts():
    assert window_charts([]) == []
