"""A canary that fails every request, end to end (a real `onnxgate serve`, the default SLO, 30% weight, single-row
requests from many users): no client sees an error (stable answers each request the canary failed, saying so), and
the early test withholds the canary long before its first judging window ends, then the controller records the
rollback with the test's figures.

Asserted on counts (canary requests before the withhold), never on time; the seconds are printed (run with -s) and
recorded as junit properties."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from gateway.judge import EARLY_THRESHOLD
from tests.rollout.gateway_fixtures import (
    FLAKY,
    POISONED_ROW,
    STABLE,
    TRUSTING_USER_HEADER,
    USER_HEADER,
    Poster,
    RolloutStore,
    build_rollout_store,
    serve_store,
    wait_until,
)

pytestmark = pytest.mark.e2e

DEADLINE_S = 90.0
WEIGHT = 30
TARGET_REQUESTS = 50  # the target: withheld within 50 of its requests or 1 s, whichever comes later


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    return build_rollout_store(tmp_path / "models")


def test_canary_failing_every_request_costs_clients_nothing_and_is_withheld_early(
        rollout: RolloutStore, record_property: pytest.RecordProperty):
    # FLAKY fails every poisoned row; stable (v1.0.0) answers them. Every request is poisoned: the canary fails all.
    counter = itertools.count()
    with serve_store(rollout.store, tick_s=1.0, env=TRUSTING_USER_HEADER) as url:
        clients = [Poster(url, "/predict/iris", lambda i: {"inputs": [POISONED_ROW]},
                          lambda i: f"user-{next(counter)}", header=USER_HEADER) for _ in range(2)]
        with clients[0], clients[1]:
            time.sleep(0.5)
            rollout.canary(FLAKY, WEIGHT)
            wait_until(lambda: rollout.deployment().canary is None, DEADLINE_S, "the rollback to be recorded")
            recorded_at = time.monotonic()
            wait_until(lambda: any(p.started > recorded_at for c in clients for p in c.posted), DEADLINE_S,
                       "a request after the rollback")
        health = httpx.get(url + "/health").json()
    posted = sorted((p for c in clients for p in c.posted), key=lambda p: p.started)
    canary = [p for p in posted if p.retried_from == FLAKY]
    errors = [p for p in posted if p.status != 200]
    first, last = canary[0], canary[-1]
    in_first_second = sum(p.started <= first.finished + 1.0 for p in canary)
    seconds = last.finished - first.started
    record_property("canary_requests_before_withhold", len(canary))
    record_property("seconds_first_canary_answer_to_withhold", round(seconds, 3))
    record_property("client_errors", len(errors))
    record_property("total_requests", len(posted))
    print(f"\nfailing canary at {WEIGHT}%: withheld after {len(canary)} of its requests, {seconds:.3f} s after its "
          f"first; {len(errors)} client errors in {len(posted)} requests")

    assert not clients[0].errors and not clients[1].errors
    assert errors == []
    assert all(p.arm == "stable" and p.answer["version"] == STABLE for p in canary)
    assert not any(p.arm == "canary" for p in posted)  # the canary never answered anyone
    assert len(canary) <= max(TARGET_REQUESTS, in_first_second)
    assert not any(p.retried_from for p in posted if p.started > last.finished)  # withheld: no canary request after

    record = rollout.deployment()
    assert record.version == STABLE and record.last_rollback["kind"] == "canary"
    assert record.last_rollback["causes"] == ["error_rate"] and record.last_rollback["from"] == FLAKY
    figures = record.last_rollback["figures"]
    assert figures["decided"] == "early" and figures["failing_sources"] == "several"
    assert figures["sequential_statistic"] >= figures["sequential_threshold"] == round(EARLY_THRESHOLD, 3)
    assert figures["candidate_requests"] == figures["candidate_errors"] <= len(canary)
    assert figures["h0_error_rate"] == 0.01  # the default SLO's max_error_rate: stable never failed
    [entry] = rollout.audit_actions("canary_rollback")
    assert entry["actor"].startswith("gateway@") and "sequential test" in entry["reason"]
    assert entry["details"]["figures"]["run_failures"] == figures["run_failures"]
    assert health["models"][0]["rollout"]["last_rollback"]["from"] == FLAKY
