"""Rollout operations on a real store: registry state, statuses, audit entries, idempotence of gateway decisions."""
from __future__ import annotations

import time

import pytest

from modelstore.deployments import Change, deploy
from modelstore.errors import IntegrityError, InvalidSloPolicy, InvalidTransition, NotDeployed, VersionNotFound
from modelstore.rollout import (
    DEFAULT_BAKE_S,
    advance_canary_step,
    epoch_seconds,
    promote,
    rollback_bake,
    rollback_canary,
    rollback_environment,
    start_canary,
    start_shadow,
    stop_shadow,
)
from modelstore.slo import SloPolicy

OPS = Change(actor="ops", reason="rollout test")


def state(store):
    data = store.registry.read().state
    return data, data.deployment("tiny", "prod")


def statuses(store) -> dict[str, str]:
    return {version: record.status for version, record in store.registry.read().state.models["tiny"].items()}


def actions(store) -> list[str]:
    return [entry["action"] for entry in store.registry.audit.entries()]


def test_start_canary_records_state_status_and_audit(make_rollout_store):
    store = make_rollout_store()
    outcome = start_canary(store, "tiny", "v1.1.0", "prod", 10, steps=(5, 25, 50, 100), interval_s=60, change=OPS,
                           slo=SloPolicy(max_error_rate=0.02))
    assert outcome.changed and (outcome.before, outcome.after, outcome.weight) == ("v1.0.0", "v1.1.0", 10)
    _, deployment = state(store)
    canary = deployment.canary
    assert (canary.version, canary.weight, canary.steps, canary.interval_s) == ("v1.1.0", 10, [25, 50, 100], 60)
    assert deployment.slo.max_error_rate == 0.02 and deployment.version == "v1.0.0"
    assert statuses(store)["v1.1.0"] == "deployed"
    entry = store.registry.audit.entries()[-1]
    assert (entry["action"], entry["actor"], entry["reason"], entry["before"], entry["after"]) == (
        "canary", "ops", "rollout test", "v1.0.0", "v1.1.0")
    assert entry["details"]["steps"] == [25, 50, 100]

    reweighted = start_canary(store, "tiny", "v1.1.0", "prod", 20, change=OPS)
    _, again = state(store)
    assert reweighted.details["previous_weight"] == 10 and again.canary.weight == 20
    assert again.canary.started_at == canary.started_at and again.canary.steps == []
    assert again.slo.max_error_rate == 0.02


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"version": "v1.0.0"}, InvalidTransition, "already the stable version"),
    ({"version": "v9.0.0"}, VersionNotFound, "no version"),
    ({"environment": "staging"}, NotDeployed, "nothing deployed"),
    ({"weight": 0}, InvalidTransition, "above 0"),
    ({"weight": 150}, InvalidTransition, "at most 100"),
    ({"steps": (25, 50)}, InvalidTransition, "interval"),
    ({"steps": (50, 25), "interval_s": 5}, InvalidTransition, "increase"),
    ({"slo": SloPolicy(max_error_rate=5)}, InvalidSloPolicy, "max_error_rate"),
])
def test_start_canary_refuses(make_rollout_store, kwargs, error, message):
    store = make_rollout_store()
    before = store.registry_path.read_bytes()
    arguments = {"version": "v1.1.0", "environment": "prod", "weight": 10, **kwargs}
    with pytest.raises(error, match=message):
        start_canary(store, "tiny", arguments.pop("version"), arguments.pop("environment"), arguments.pop("weight"),
                     **arguments)
    assert store.registry_path.read_bytes() == before


def test_start_canary_refuses_a_tampered_model_and_a_second_canary(make_rollout_store):
    store = make_rollout_store()
    store.model_path("tiny", "v1.2.0").write_bytes(b"not the model")
    with pytest.raises(IntegrityError):
        start_canary(store, "tiny", "v1.2.0", "prod", 10)
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    with pytest.raises(InvalidTransition, match="promote it or roll it back first"):
        start_canary(store, "tiny", "v1.3.0", "prod", 10)


def test_promote_makes_the_canary_stable_and_starts_a_bake(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    start_shadow(store, "tiny", "v1.2.0", "prod", 50)
    started = time.time()
    outcome = promote(store, "tiny", "prod", OPS)
    _, deployment = state(store)
    assert (deployment.version, deployment.previous_version, deployment.canary) == ("v1.1.0", "v1.0.0", None)
    assert deployment.bake.previous_version == "v1.0.0"
    assert abs(epoch_seconds(deployment.bake.until) - (started + DEFAULT_BAKE_S)) < 5
    assert deployment.shadow.version == "v1.2.0"
    assert statuses(store) == {"v1.0.0": "deprecated", "v1.1.0": "deployed", "v1.2.0": "deployed", "v1.3.0": "registered"}
    assert actions(store)[-1] == "promote" and outcome.details["bake_until"] == deployment.bake.until
    with pytest.raises(InvalidTransition, match="no canary"):
        promote(store, "tiny", "prod")


def test_bake_length_comes_from_the_deployment_then_the_argument(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    promote(store, "tiny", "prod", bake_s=0)
    assert state(store)[1].bake is None
    start_canary(store, "tiny", "v1.2.0", "prod", 10, slo=SloPolicy(bake_s=3600))
    started = time.time()
    promote(store, "tiny", "prod", bake_s=0)
    assert abs(epoch_seconds(state(store)[1].bake.until) - (started + 3600)) < 5


def test_rollback_canary_is_recorded_once_and_a_repeat_is_a_no_op(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    figures = {"verdict": "breach", "reasons": ["error rate 5.00% above 1.00%"], "figures": {"candidate_requests": 40}}
    outcome = rollback_canary(store, "tiny", "prod", Change(actor="gateway", reason="SLO breach"), figures,
                              expected_version="v1.1.0")
    assert outcome.changed and (outcome.before, outcome.after) == ("v1.1.0", "v1.0.0")
    _, deployment = state(store)
    assert deployment.canary is None and deployment.version == "v1.0.0"
    assert deployment.last_rollback["kind"] == "canary" and deployment.last_rollback["from"] == "v1.1.0"
    assert deployment.last_rollback["figures"] == {"candidate_requests": 40}
    assert statuses(store)["v1.1.0"] == "rolled_back"
    entry = store.registry.audit.entries()[-1]
    assert (entry["action"], entry["actor"], entry["details"]["reasons"]) == (
        "canary_rollback", "gateway", ["error rate 5.00% above 1.00%"])

    registry_bytes, audit_lines = store.registry_path.read_bytes(), len(store.registry.audit.entries())
    again = rollback_canary(store, "tiny", "prod", Change(actor="gateway"), figures, expected_version="v1.1.0")
    assert not again.changed
    assert store.registry_path.read_bytes() == registry_bytes and len(store.registry.audit.entries()) == audit_lines


def test_rollback_canary_leaves_a_newer_canary_alone(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.2.0", "prod", 10)
    assert not rollback_canary(store, "tiny", "prod", expected_version="v1.1.0").changed
    assert state(store)[1].canary.version == "v1.2.0"


def test_steps_advance_by_compare_and_set_and_the_last_promotes(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 5, steps=(25, 100), interval_s=1)
    first_step_started = state(store)[1].canary.step_started_at
    stepped = advance_canary_step(store, "tiny", "prod", 5, Change(actor="gateway"), expected_version="v1.1.0")
    assert stepped.changed and stepped.weight == 25 and stepped.details == {"weight_from": 5, "weight_to": 25}
    canary = state(store)[1].canary
    assert canary.weight == 25 and canary.step_started_at >= first_step_started
    entries = len(store.registry.audit.entries())
    assert not advance_canary_step(store, "tiny", "prod", 5, expected_version="v1.1.0").changed
    assert not advance_canary_step(store, "tiny", "prod", 25, expected_version="v1.2.0").changed
    assert len(store.registry.audit.entries()) == entries
    promoted = advance_canary_step(store, "tiny", "prod", 25, Change(actor="gateway"), bake_s=60)
    assert promoted.action == "promote" and promoted.details["via"] == "steps"
    _, deployment = state(store)
    assert (deployment.version, deployment.canary, deployment.bake.previous_version) == ("v1.1.0", None, "v1.0.0")
    assert actions(store)[-2:] == ["canary_step", "promote"]


def test_bake_rollback_returns_to_the_previous_version_once(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    promote(store, "tiny", "prod")
    outcome = rollback_bake(store, "tiny", "prod", Change(actor="gateway", reason="bake breach"),
                            {"reasons": ["p95 latency"]}, expected_version="v1.1.0")
    assert outcome.changed and (outcome.before, outcome.after) == ("v1.1.0", "v1.0.0")
    _, deployment = state(store)
    assert (deployment.version, deployment.bake, deployment.last_rollback["kind"]) == ("v1.0.0", None, "bake")
    assert statuses(store)["v1.1.0"] == "rolled_back" and statuses(store)["v1.0.0"] == "deployed"
    assert actions(store)[-1] == "bake_rollback"
    assert not rollback_bake(store, "tiny", "prod", expected_version="v1.1.0").changed
    assert actions(store)[-1] == "bake_rollback" and actions(store).count("bake_rollback") == 1


def test_a_new_canary_ends_the_bake(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10)
    promote(store, "tiny", "prod")
    outcome = start_canary(store, "tiny", "v1.2.0", "prod", 10)
    assert state(store)[1].bake is None and outcome.details["ended_bake_of"] == "v1.0.0"
    assert not rollback_bake(store, "tiny", "prod").changed


def test_shadow_start_replace_stop(make_rollout_store):
    store = make_rollout_store()
    start_shadow(store, "tiny", "v1.1.0", "prod", 100, OPS)
    assert state(store)[1].shadow.version == "v1.1.0" and statuses(store)["v1.1.0"] == "deployed"
    replaced = start_shadow(store, "tiny", "latest", "prod", 30, OPS)
    assert (replaced.before, replaced.after) == ("v1.1.0", "v1.3.0") and state(store)[1].shadow.weight == 30
    assert statuses(store)["v1.1.0"] == "registered"
    with pytest.raises(InvalidTransition, match="stable version"):
        start_shadow(store, "tiny", "v1.0.0", "prod")
    stop_shadow(store, "tiny", "prod", OPS)
    assert state(store)[1].shadow is None and statuses(store)["v1.3.0"] == "registered"
    with pytest.raises(InvalidTransition, match="no shadow"):
        stop_shadow(store, "tiny", "prod")
    assert actions(store)[-3:] == ["shadow", "shadow", "shadow_stop"]


def test_rollback_command_semantics(make_rollout_store):
    store = make_rollout_store()
    deploy(store, "tiny", "v1.1.0", "prod")
    start_canary(store, "tiny", "v1.2.0", "prod", 10)
    with pytest.raises(InvalidTransition, match="roll it back first"):
        rollback_environment(store, "tiny", "prod", to="v1.0.0")
    first = rollback_environment(store, "tiny", "prod", OPS)
    assert (first.action, first.before, first.after) == ("canary_rollback", "v1.2.0", "v1.1.0")
    assert state(store)[1].version == "v1.1.0"
    second = rollback_environment(store, "tiny", "prod", OPS)
    assert (second.action, second.before, second.after) == ("rollback", "v1.1.0", "v1.0.0")
    _, deployment = state(store)
    assert deployment.version == "v1.0.0" and deployment.last_rollback["kind"] == "stable"
    assert statuses(store)["v1.1.0"] == "rolled_back"
    third = rollback_environment(store, "tiny", "prod", OPS, to="v1.3.0")
    assert third.after == "v1.3.0"
    with pytest.raises(InvalidTransition, match="already the stable"):
        rollback_environment(store, "tiny", "prod", to="v1.3.0")
    assert store.registry.audit.verify() == len(store.registry.audit.entries())


def test_a_plain_deploy_over_a_running_canary_ends_it_and_keeps_the_shadow(make_rollout_store):
    store = make_rollout_store()
    start_canary(store, "tiny", "v1.1.0", "prod", 10, change=OPS)
    start_shadow(store, "tiny", "v1.3.0", "prod", change=OPS)
    deploy(store, "tiny", "v1.2.0", "prod", OPS)
    _, deployment = state(store)
    assert (deployment.version, deployment.canary, deployment.shadow.version) == ("v1.2.0", None, "v1.3.0")
    assert statuses(store) == {"v1.0.0": "deprecated", "v1.1.0": "registered", "v1.2.0": "deployed",
                               "v1.3.0": "deployed"}
