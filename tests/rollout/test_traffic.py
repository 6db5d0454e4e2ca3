"""The canary split and the sliding windows: shared vectors, statistics of the split, stickiness, window figures."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import traffic
from gateway.traffic import (
    BUCKETS,
    MAX_SLOTS,
    MAX_SOURCES_PER_SLOT,
    ArmWindows,
    SlidingWindow,
    bucket,
    choose_arm,
    choose_shadow,
    threshold,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "routing.json"
KEYS = [f"user-{n}" for n in range(20_000)]


def deployment(weight: float | None, shadow_weight: float | None = None, salt: str | None = None) -> SimpleNamespace:
    canary = None if weight is None else SimpleNamespace(version="v1.1.0", weight=weight)
    shadow = None if shadow_weight is None else SimpleNamespace(version="v1.2.0", weight=shadow_weight)
    return SimpleNamespace(version="v1.0.0", canary=canary, shadow=shadow, routing_salt=salt)


def test_bucket_is_the_first_8_bytes_of_sha256_mod_10000():
    for key in ["", "user-1", "Zoë", "用户-123", "🚀 launch", "a" * 500]:
        expected = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % 10_000
        assert bucket(key) == expected
        assert 0 <= bucket(key) < BUCKETS


def test_salted_bucket_hashes_salt_nul_key():
    salt = "5f1c0e9a7b3d42c8a1e6f0b2d4c8e9a7"
    for key in ["", "user-1", "Zoë", "用户-123", "a" * 500]:
        expected = int(hashlib.sha256(f"{salt}\0{key}".encode()).hexdigest()[:16], 16) % 10_000
        assert bucket(key, salt) == expected
    assert sum(bucket(key, salt) != bucket(key) for key in KEYS[:1000]) > 990


@pytest.mark.skipif(not VECTORS.exists(), reason="tests/vectors/routing.json not written yet")
def test_shared_vectors_with_the_node_loader():
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    for case in vectors["buckets"]:
        assert bucket(case["key"]) == case["bucket"], case["key"]
    for case in vectors["thresholds"]:
        assert threshold(case["weight"]) == case["threshold"], case["weight"]
    for case in vectors["salted_buckets"]:
        assert bucket(case["key"], case["salt"]) == case["bucket"], (case["salt"], case["key"])
    for choices in (vectors["choices"], vectors["salted_choices"]):
        entry = choices["deployment"]
        view = SimpleNamespace(version=entry["version"], canary=SimpleNamespace(**entry["canary"]), shadow=None,
                               routing_salt=entry.get("routing_salt"))
        for case in choices["expected"]:
            assert choose_arm(view, case["key"], random.Random(0))[1] == case["version"], case["key"]
    assert vectors["salted_choices"]["deployment"]["routing_salt"]


@pytest.mark.parametrize("weight", [1, 10, 50, 90])
def test_keyed_split_matches_the_weight(weight):
    share = sum(choose_arm(deployment(weight), key, random.Random(0))[0] == "canary" for key in KEYS) / len(KEYS)
    tolerance = 4 * (weight / 100 * (1 - weight / 100) / len(KEYS)) ** 0.5
    assert abs(share - weight / 100) < tolerance


@pytest.mark.parametrize("weight", [5, 25])
def test_unkeyed_split_uses_the_injected_rng(weight):
    rng = random.Random(1234)
    arms = [choose_arm(deployment(weight), None, rng) for _ in range(20_000)]
    share = sum(arm == "canary" for arm, _ in arms) / len(arms)
    assert abs(share - weight / 100) < 4 * (weight / 100 * (1 - weight / 100) / len(arms)) ** 0.5
    assert {version for arm, version in arms if arm == "canary"} == {"v1.1.0"}
    replay = random.Random(1234)
    assert [choose_arm(deployment(weight), None, replay) for _ in range(len(arms))] == arms


def test_no_canary_and_the_edges():
    rng = random.Random(0)
    assert {choose_arm(deployment(None), key, rng) for key in KEYS[:500]} == {("stable", "v1.0.0")}
    assert {choose_arm(deployment(100), key, rng)[0] for key in KEYS[:500]} == {"canary"}
    assert {choose_arm(deployment(100), None, rng)[0] for _ in range(500)} == {"canary"}


def test_routing_is_sticky_and_monotonic_in_the_weight():
    rng = random.Random(0)
    at = {w: {key for key in KEYS if choose_arm(deployment(w), key, rng)[0] == "canary"} for w in (5, 25, 50, 100)}
    assert at[5] <= at[25] <= at[50] <= at[100] == set(KEYS)
    assert at[5] and at[25] - at[5]
    again = {key for key in KEYS if choose_arm(deployment(5), key, random.Random(99))[0] == "canary"}
    assert again == at[5]


def test_two_salts_split_the_same_keys_differently_each_at_the_weight_and_sticky():
    rng = random.Random(0)
    first, second = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    in_canary = {salt: {key for key in KEYS if choose_arm(deployment(20, salt=salt), key, rng)[0] == "canary"}
                 for salt in (first, second)}
    tolerance = 4 * (0.2 * 0.8 / len(KEYS)) ** 0.5
    for keys in in_canary.values():
        assert abs(len(keys) / len(KEYS) - 0.2) < tolerance
    # independent splits: about 20% of one canary's users are in the other's, not all of them
    overlap = len(in_canary[first] & in_canary[second]) / len(in_canary[first])
    assert abs(overlap - 0.2) < 0.05
    again = {key for key in KEYS if choose_arm(deployment(20, salt=first), key, random.Random(7))[0] == "canary"}
    assert again == in_canary[first]
    # the shadow reads the same salt
    mirrored = {key for key in KEYS[:2000] if choose_shadow(deployment(None, 20, salt=first), key, rng)}
    assert mirrored == {key for key in KEYS[:2000] if key in in_canary[first]}


def test_shadow_mirrors_its_weight_and_only_when_present():
    rng = random.Random(0)
    assert choose_shadow(deployment(10), "user-1", rng) is None
    assert {choose_shadow(deployment(None, 100), key, rng) for key in KEYS[:200]} == {"v1.2.0"}
    mirrored = sum(choose_shadow(deployment(None, 20), key, rng) is not None for key in KEYS) / len(KEYS)
    assert abs(mirrored - 0.2) < 0.015


def test_window_counts_errors_and_quantile_against_numpy():
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(mean=np.log(0.004), sigma=0.6, size=3000)
    window = SlidingWindow()
    for index, latency in enumerate(latencies):
        window.record(float(latency), ok=index % 50 != 0, now=100.0 + index * 9.0 / len(latencies))
    summary = window.summary(now=109.5, span_s=10, quantile=0.95)
    assert summary.requests == len(latencies)
    assert summary.errors == len(latencies[::50])
    exact = float(np.quantile(latencies, 0.95))
    assert abs(summary.latency_s - exact) / exact < 0.03


def test_window_forgets_what_is_older_than_the_span():
    window = SlidingWindow(horizon_s=60)
    for second in range(30):
        window.record(0.001 * (second + 1), ok=second >= 10, now=1000.0 + second)
    recent = window.summary(now=1029.5, span_s=10, quantile=1.0)
    assert (recent.requests, recent.errors) == (10, 0)
    assert abs(recent.latency_s - 0.030) / 0.030 < 0.03
    assert window.summary(now=1029.5, span_s=30, quantile=0.5).errors == 10
    empty = window.summary(now=5000.0, span_s=10, quantile=0.95)
    assert (empty.requests, empty.latency_s, empty.error_rate) == (0, None, None)


def test_ring_reuses_slots_without_mixing_old_laps():
    window = SlidingWindow(horizon_s=5)
    window.record(0.001, ok=False, now=10.2)
    window.record(0.001, ok=True, now=15.2)  # same slot index, next lap: the old error is gone
    summary = window.summary(now=15.5, span_s=5, quantile=0.5)
    assert (summary.requests, summary.errors) == (1, 0)
    window.record(0.001, ok=False, now=10.3)  # older than the ring: dropped, not added to the new lap
    assert window.summary(now=15.5, span_s=5, quantile=0.5).errors == 0


def test_traffic_windows_tie_figures_to_a_version():
    windows = ArmWindows()
    windows.record("stable", "v1.0.0", 0.002, True, 10.0)
    assert windows.summary("stable", "v1.0.0", 10.5, 10, 0.95).requests == 1
    assert windows.summary("stable", "v1.1.0", 10.5, 10, 0.95).requests == 0
    windows.record("stable", "v1.1.0", 0.002, True, 11.0)
    assert windows.summary("stable", "v1.0.0", 11.5, 10, 0.95).requests == 0
    fresh = windows.summary("stable", "v1.1.0", 11.5, 10, 0.95)
    assert (fresh.requests, fresh.version) == (1, "v1.1.0")
    assert windows.summary("canary", "v1.1.0", 11.5, 10, 0.95).requests == 0


@pytest.mark.parametrize("window_s", [1.0, 10.0, 300.0, 3600.0])
def test_windows_hold_a_whole_judging_window_whatever_its_length(window_s):
    """A deployment's `--window 5m` is judged on 5 minutes of data: the ring holds at least two windows (it was sized
    from the gateway's default once, and kept 60 s). Observations every second over one window all count, but for
    the slot the window starts in."""
    windows = ArmWindows(window_s)
    start = 1_700_000_000.0
    count = int(window_s)
    for second in range(count):
        windows.record("canary", "v2", 0.001, second % 10 != 0, start + second)
    summary = windows.summary("canary", "v2", start + count - 0.5, window_s, 0.95)
    assert count - windows.slot_s <= summary.requests <= count
    assert summary.errors >= len(range(0, count, 10)) - windows.slot_s / 10
    assert windows.slot_s * MAX_SLOTS >= 2 * window_s


def test_window_counts_sources_one_vote_each():
    window = SlidingWindow()
    for index in range(1000):  # one source floods with good requests
        window.record(0.001, True, 100.0 + index / 1000, source="flood")
    for source in ("a", "b", "c"):  # three others: one request in two fails
        window.record(0.001, True, 100.5, source=source)
        window.record(0.001, False, 100.6, source=source)
    window.record(0.001, True, 100.7)  # no source: counted per request only
    summary = window.summary(now=100.9, span_s=10, quantile=0.5)
    assert (summary.requests, summary.errors) == (1007, 3)
    assert (summary.sources, summary.failing_sources) == (4, 3)
    assert summary.source_error_rate == pytest.approx((0 + 0.5 * 3) / 4)
    assert (window.total_requests, window.total_errors) == (1007, 3)


def test_sources_per_slot_are_capped():
    window = SlidingWindow()
    for index in range(MAX_SOURCES_PER_SLOT + 500):
        window.record(0.001, index % 2 == 0, 100.2, source=f"user-{index}")
    summary = window.summary(now=100.5, span_s=10, quantile=0.5)
    assert summary.requests == MAX_SOURCES_PER_SLOT + 500  # every request counts per request
    assert summary.sources == MAX_SOURCES_PER_SLOT
    assert summary.failing_sources == MAX_SOURCES_PER_SLOT // 2
    window.record(0.001, False, 100.3, source="user-0")  # a source already tracked still counts
    assert window.summary(now=100.5, span_s=10, quantile=0.5).failing_sources == MAX_SOURCES_PER_SLOT // 2 + 1


def test_a_span_shorter_than_a_slot_reads_the_current_slot_late_in_the_second():
    window = SlidingWindow(horizon_s=60)
    for index in range(5):
        window.record(0.002, ok=True, now=2000.1 + index * 0.1)
    assert window.summary(now=2000.9, span_s=0.3, quantile=0.95).requests == 5
    assert window.summary(now=2001.2, span_s=0.3, quantile=0.95).requests == 0


RECORDS = st.lists(st.tuples(st.floats(1e-7, 30.0), st.booleans(), st.integers(0, 11).map(lambda tenth: 100.0 + tenth / 2),
                             st.sampled_from([None, "a", "b", "c", "d", "e"])), max_size=80)


@given(records=RECORDS, cap=st.integers(1, 6))
@settings(max_examples=300, deadline=None)
def test_a_batch_counts_as_its_requests_one_at_a_time(records, cap):
    """record_many (how the gateway folds its held recordings) leaves every slot as recording the requests one by one,
    in order, would: requests, errors, latency bins, and the sources the per-slot cap admits with their failures, over
    several slots and out of order. The ring holds 4 one-second slots, so the oldest seconds also fall off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(traffic, "MAX_SOURCES_PER_SLOT", cap)
        batched, one_by_one = SlidingWindow(horizon_s=4), SlidingWindow(horizon_s=4)
        batched.record_many(records)
        for latency_s, ok, now, source in records:
            one_by_one.record(latency_s, ok, now, source)
    assert (batched.total_requests, batched.total_errors) == (one_by_one.total_requests, one_by_one.total_errors)
    for second in range(100, 107):
        for quantile in (0.5, 0.9, 1.0):
            assert (batched.summary(second + 0.5, 1.0, quantile)
                    == one_by_one.summary(second + 0.5, 1.0, quantile))
