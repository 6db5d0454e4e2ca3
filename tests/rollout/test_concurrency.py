"""Many processes running rollout operations at once on one store: registry.json stays whole and consistent, every
change is audited exactly once, and replaying the audit log reproduces the registry."""
from __future__ import annotations

import multiprocessing
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstore.deployments import Change, Deploy
from modelstore.errors import StoreError
from modelstore.layout import Store
from modelstore.replay import replay, same_registry
from modelstore.rollout import (
    AdvanceCanary,
    EndBake,
    Promote,
    Rollback,
    RollbackBake,
    RollbackCanary,
    StartCanary,
    StartShadow,
    StopShadow,
    advance_canary_step,
    promote,
    rollback_bake,
    rollback_canary,
    rollback_environment,
    start_canary,
    start_shadow,
    stop_shadow,
)
from modelstore.transitions import Operation, transition
from tests.rollout.conftest import VERSIONS, build_store

ENVIRONMENTS = ("prod", "staging")
CONTEXT = multiprocessing.get_context("fork")


def random_operation(store: Store, rng: random.Random, worker: int):
    environment = rng.choice(ENVIRONMENTS)
    change = Change(actor=f"worker-{worker}", reason="race")
    current = store.registry.read().state.deployment("tiny", environment)  # what a gateway worker judged, now stale
    canary = current.canary
    choice = rng.randrange(8)
    if choice == 0:
        return start_canary(store, "tiny", rng.choice(VERSIONS), environment, rng.choice([5, 10, 50]),
                            steps=rng.choice([(), (25, 50, 100)]), interval_s=1, change=change)
    if choice == 1:
        return rollback_canary(store, "tiny", environment, change, {"reasons": ["race"]},
                               expected_version=canary.version if canary else None)
    if choice == 2 and canary:
        return advance_canary_step(store, "tiny", environment, canary.weight, change, expected_version=canary.version)
    if choice == 3:
        return promote(store, "tiny", environment, change)
    if choice == 4:
        return rollback_environment(store, "tiny", environment, change)
    if choice == 5:
        return rollback_bake(store, "tiny", environment, change, expected_version=current.version)
    if choice == 6:
        return start_shadow(store, "tiny", rng.choice(VERSIONS), environment, 50, change)
    if choice == 7:
        return stop_shadow(store, "tiny", environment, change)
    return None


def run_worker(root: str, worker: int, rounds: int, start, results) -> None:
    store, rng = Store(Path(root)), random.Random(worker)
    start.wait()
    changed = refused = 0
    for _ in range(rounds):
        try:
            outcome = random_operation(store, rng, worker)
        except StoreError:
            refused += 1  # a transition the state no longer allowed: expected under races
            continue
        changed += bool(outcome and outcome.changed)
    results.put((changed, refused))


def run_together(target, args_for, count: int) -> list:
    start, results = CONTEXT.Event(), CONTEXT.Queue()
    processes = [CONTEXT.Process(target=target, args=(*args_for(index), start, results)) for index in range(count)]
    for process in processes:
        process.start()
    start.set()
    collected = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected


def check_invariants(store: Store) -> None:
    data = store.registry.read().state  # parses and validates, or raises CorruptRegistry
    assert set(data.deployments["tiny"]) == set(ENVIRONMENTS)
    serving = set()
    for deployment in data.deployments["tiny"].values():
        serving.add(deployment.version)
        if deployment.canary:
            assert deployment.canary.version != deployment.version
            assert deployment.bake is None
            serving.add(deployment.canary.version)
        if deployment.shadow:
            assert deployment.shadow.version != deployment.version
            serving.add(deployment.shadow.version)
    for version, record in data.models["tiny"].items():
        assert (record.status == "deployed") == (version in serving), (version, record.status, serving)
    assert store.registry.audit.verify() == len(store.registry.audit.entries())
    assert replay_audit(store.registry.audit.entries()) == {
        env: (dep.version, dep.canary.version if dep.canary else None, dep.shadow.version if dep.shadow else None)
        for env, dep in data.deployments["tiny"].items()
    }


def replay_audit(entries: list[dict]) -> dict[str, tuple]:
    """Each environment's (stable, canary, shadow) as the audit log tells it. The log is written under the registry
    lock, so a lost update (a write based on a stale read) shows up as a mismatch with registry.json."""
    state: dict[str, list] = {}
    for entry in entries:
        if entry["environment"] is None:
            continue
        current = state.setdefault(entry["environment"], [None, None, None])
        action, after = entry["action"], entry["after"]
        if action in ("deploy", "promote", "rollback", "bake_rollback"):
            current[0] = after
            current[1] = None
            if current[2] == after:  # a shadow of another version keeps mirroring
                current[2] = None
        elif action in ("canary", "canary_step"):
            current[1] = after
        elif action == "canary_rollback":
            current[1] = None
        elif action == "shadow":
            current[2] = after
        elif action == "shadow_stop":
            current[2] = None
    return {environment: tuple(values) for environment, values in state.items()}


@pytest.mark.parametrize("workers", [6])
def test_concurrent_rollout_operations_leave_the_registry_consistent(tmp_path, workers):
    store = build_store(tmp_path / "store", environments=ENVIRONMENTS)
    audited_before = len(store.registry.audit.entries())
    results = run_together(run_worker, lambda index: (str(store.root), index, 40), workers)
    changed = sum(c for c, _ in results)
    assert changed > workers  # the races did change things, not only refuse
    check_invariants(store)
    assert len(store.registry.audit.entries()) == audited_before + changed


def race_decision(root: str, operation: str, start, results) -> None:
    store = Store(Path(root))
    start.wait()
    if operation == "rollback":
        outcome = rollback_canary(store, "tiny", "prod", Change(actor="gateway"), expected_version="v1.1.0")
    else:
        outcome = advance_canary_step(store, "tiny", "prod", 10, Change(actor="gateway"), expected_version="v1.1.0")
    results.put(outcome.changed)


@pytest.mark.parametrize(("operation", "action"), [("rollback", "canary_rollback"), ("advance", "canary_step")])
def test_workers_reaching_the_same_decision_apply_it_once(tmp_path, operation, action):
    store = build_store(tmp_path / "store")
    start_canary(store, "tiny", "v1.1.0", "prod", 10, steps=(25, 100), interval_s=1)
    results = run_together(race_decision, lambda _: (str(store.root), operation), 8)
    assert sorted(results) == [False] * 7 + [True]
    assert [entry["action"] for entry in store.registry.audit.entries()].count(action) == 1
    deployment = store.registry.read().state.deployment("tiny", "prod")
    assert deployment.canary is None if operation == "rollback" else deployment.canary.weight == 25
    assert store.registry.audit.verify() == len(store.registry.audit.entries())


# --- property: any interleaving of any operations, replayed from the audit log, is the registry ----------------------

OPERATIONS = ("deploy", "canary", "step", "promote", "rollback", "rollback_canary", "rollback_bake", "end_bake",
              "shadow", "stop_shadow")
PLANNED = st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(ENVIRONMENTS), st.sampled_from(VERSIONS),
                    st.sampled_from([5.0, 10.0, 50.0]), st.sampled_from([0.0, 1.0, 300.0]))


def planned_operation(store: Store, step: tuple, worker: int) -> Operation:
    """One step of a plan as an operation, decided (like a gateway worker) on a state that may be stale by the time
    it commits."""
    kind, environment, version, weight, seconds = step
    current = store.registry.read().state.deployment("tiny", environment)
    canary = current.canary
    if kind == "deploy":
        return Deploy("tiny", environment, version)
    if kind == "canary":
        return StartCanary("tiny", environment, version, weight, (25.0, 50.0, 100.0) if seconds else (), seconds or None)
    if kind == "step":
        return AdvanceCanary("tiny", environment, canary.weight if canary else weight,
                             expected_version=canary.version if canary else None, default_bake_s=seconds)
    if kind == "promote":
        return Promote("tiny", environment, seconds)
    if kind == "rollback":
        return Rollback("tiny", environment)
    if kind == "rollback_canary":
        return RollbackCanary("tiny", environment, {"reasons": ["race"]},
                              expected_version=canary.version if canary else None)
    if kind == "rollback_bake":
        return RollbackBake("tiny", environment, {"reasons": ["race"]},
                            expected_version=current.version)
    if kind == "end_bake":
        return EndBake("tiny", environment, expected_version=current.version)
    if kind == "shadow":
        return StartShadow("tiny", environment, version, weight)
    return StopShadow("tiny", environment)


def run_plan(root: str, worker: int, plan: list[tuple], start, results) -> None:
    store = Store(Path(root))
    start.wait()
    changed = refused = 0
    for step in plan:
        try:
            outcome = transition(store, planned_operation(store, step, worker),
                                 Change(actor=f"worker-{worker}", reason=f"plan step {step[0]}"))
        except StoreError:
            refused += 1  # a transition the state did not allow
            continue
        changed += outcome.changed
    results.put((changed, refused))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(st.lists(PLANNED, min_size=1, max_size=20), min_size=2, max_size=4))
def test_random_sequences_from_several_processes_replay_from_the_audit_log_to_the_registry(plans):
    with tempfile.TemporaryDirectory() as directory:
        store = build_store(Path(directory) / "store", environments=ENVIRONMENTS)
        audited_before = len(store.registry.audit.entries())
        results = run_together(run_plan, lambda index: (str(store.root), index, plans[index]), len(plans))
        check_invariants(store)
        entries = store.registry.audit.entries()
        data = store.registry.read().state
        assert len(entries) == audited_before + sum(changed for changed, _ in results)
        assert [entry["revision"] for entry in entries] == list(range(1, len(entries) + 1))
        assert data.revision == len(entries)
        assert same_registry(replay(entries), data)
