"""The routing key is the operator's, not the client's: it is read only from the header the operator names
(ONNXGATE_ROUTING_HEADER / `onnxgate serve --routing-header`), and bucketed with the deployment's own salt, recorded in
registry.json, kept for the deployment's life and replayed from the audit log."""
from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.data_plane import RoutingHeader, data_plane_headers
from gateway.errors import InvalidInput
from gateway.settings import GatewaySettings
from gateway.traffic import bucket, choose_arm, threshold
from modelstore.deployments import Change, deploy
from modelstore.registry import parse_registry
from modelstore.replay import replay, same_registry
from modelstore.rollout import (
    StartCanary,
    advance_canary_step,
    promote,
    rollback_canary,
    start_canary,
    start_shadow,
    stop_shadow,
)
from modelstore.transitions import transition
from onnxgate.__main__ import main
from tests.factories import free_port, running_server, stop_server, wait_ready
from tests.gateway.conftest import gateway_settings
from tests.rollout.gateway_fixtures import GOOD_ROW, OTHER, STABLE, RolloutStore, build_rollout_store

DEADLINE_S = 90.0
TESTS = Change(actor="tests", reason="trusted routing")
BODY = {"inputs": [GOOD_ROW]}
V2_BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW}]}


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    return build_rollout_store(tmp_path / "models")


def salt_of(rollout: RolloutStore, environment: str = "production") -> str | None:
    return rollout.deployment(environment).routing_salt


def scope(*headers: tuple[bytes, bytes], client: tuple[str, int] | None = ("10.0.0.7", 51000)) -> dict:
    return {"type": "http", "headers": list(headers), "client": client}


# --- reading the headers -----------------------------------------------------------------------------------------


def test_only_the_named_header_is_the_routing_key_and_the_source_falls_back_to_the_client_address():
    untrusting = RoutingHeader()
    read = data_plane_headers(scope((b"x-routing-key", b"user-1"), (b"x-user", b"alice")), untrusting)
    assert (read.routing_key, read.source) == (None, "10.0.0.7")
    trusting = RoutingHeader(b"x-user", 256)
    read = data_plane_headers(scope((b"x-routing-key", b"user-1"), (b"x-user", b"alice"), (b"x-environment", b"prod"),
                                    (b"content-length", b"12")), trusting)
    assert read == ("prod", "alice", b"12", "alice", None, None, None, False)
    assert data_plane_headers(scope((b"x-forwarded-for", b"10.1.2.3")), trusting).chunked_or_forwarded
    assert data_plane_headers(scope((b"transfer-encoding", b"chunked")), trusting).chunked_or_forwarded
    assert data_plane_headers(scope((b"x-user", b"")), trusting).routing_key is None  # empty: absent
    assert data_plane_headers(scope(client=None), trusting).source is None
    assert data_plane_headers(scope((b"x-routing-key", b"user-1")), RoutingHeader(b"x-routing-key")).source == "user-1"


def test_a_routing_key_too_long_or_sent_twice_is_refused():
    trusting = RoutingHeader(b"x-user", 16)
    assert data_plane_headers(scope((b"x-user", b"u" * 16)), trusting).routing_key == "u" * 16
    with pytest.raises(InvalidInput, match="17 bytes, over the limit of 16"):
        data_plane_headers(scope((b"x-user", b"u" * 17)), trusting)
    with pytest.raises(InvalidInput, match="more than once"):
        data_plane_headers(scope((b"x-user", b"mallory"), (b"x-user", b"alice")), trusting)


def test_the_setting_is_a_lowercased_header_name_and_unset_by_default():
    assert GatewaySettings(routing_header=None).routing_header is None
    assert GatewaySettings(routing_header="").routing_header is None
    assert GatewaySettings(routing_header="X-User").routing_header == "x-user"
    for bad in ("X User", "x-user:", "X-Environment", "X-Request-Id", "Transfer-Encoding"):
        with pytest.raises(ValueError, match="routing_header"):
            GatewaySettings(routing_header=bad)


def test_bad_routing_keys_get_a_json_400_on_both_data_plane_routes(rollout: RolloutStore):
    app = create_app(gateway_settings(rollout.store, "production", routing_header="X-User", max_routing_key_bytes=64),
                     metrics_registry=CollectorRegistry())
    with TestClient(app) as client:
        for path, body in (("/predict/iris", BODY), ("/v2/models/iris/infer", V2_BODY)):
            long = client.post(path, json=body, headers={"X-User": "u" * 65})
            twice = client.post(path, json=body, headers=[("X-User", "a"), ("X-User", "b")])
            fine = client.post(path, json=body, headers={"X-User": "u" * 64})
            assert (long.status_code, twice.status_code, fine.status_code) == (400, 400, 200)
            assert "over the limit of 64" in long.json()["error"] and "more than once" in twice.json()["error"]


# --- the salt in the registry ------------------------------------------------------------------------------------


def test_a_canary_gives_the_deployment_a_salt_that_it_keeps_for_its_life(rollout: RolloutStore):
    store = rollout.store
    assert salt_of(rollout) is None
    start_canary(store, "iris", OTHER, "production", 10, (50, 100), 60, TESTS)
    salt = salt_of(rollout)
    assert salt is not None and len(salt) == 32
    [entry] = rollout.audit_actions("canary")
    assert entry["details"]["routing_salt"] == salt
    advance_canary_step(store, "iris", "production", 10, TESTS)
    start_canary(store, "iris", OTHER, "production", 60, change=TESTS, routing_salt="ab" * 16)  # re-weight
    promote(store, "iris", "production", TESTS, bake_s=0)
    assert salt_of(rollout) == salt
    start_canary(store, "iris", STABLE, "production", 20, change=TESTS)
    rollback_canary(store, "iris", "production", TESTS)
    deploy(store, "iris", STABLE, "production", TESTS)
    start_shadow(store, "iris", OTHER, "production", 50, TESTS)
    stop_shadow(store, "iris", "production", TESTS)
    assert salt_of(rollout) == salt
    assert all("routing_salt" not in e["details"] for e in rollout.store.registry.audit.entries()[-8:])


def test_a_shadow_also_gives_a_salt_and_a_later_canary_keeps_it(rollout: RolloutStore):
    start_shadow(rollout.store, "iris", OTHER, "production", 50, TESTS, routing_salt="0f" * 16)
    assert salt_of(rollout) == "0f" * 16
    start_canary(rollout.store, "iris", OTHER, "production", 10, change=TESTS)
    assert salt_of(rollout) == "0f" * 16


def test_two_deployments_salted_differently_send_the_same_key_to_different_sides(rollout: RolloutStore):
    deploy(rollout.store, "iris", STABLE, "staging", TESTS)
    for environment in ("production", "staging"):
        start_canary(rollout.store, "iris", OTHER, environment, 50, change=TESTS)
    state = rollout.store.registry.read().state
    production, staging = state.deployment("iris", "production"), state.deployment("iris", "staging")
    assert production.routing_salt != staging.routing_salt
    keys = [f"user-{i}" for i in range(2000)]
    rng = random.Random(0)
    sides = [(choose_arm(production, key, rng)[0], choose_arm(staging, key, rng)[0]) for key in keys]
    differ = sum(a != b for a, b in sides) / len(keys)
    assert abs(differ - 0.5) < 0.1, f"{differ:.1%} of keys differ between two independent 50% splits"


def test_replay_rebuilds_the_salts(rollout: RolloutStore):
    store = rollout.store
    deploy(store, "iris", STABLE, "staging", TESTS)
    start_canary(store, "iris", OTHER, "production", 10, (100,), 60, TESTS)
    advance_canary_step(store, "iris", "production", 10, TESTS)  # promotes
    start_shadow(store, "iris", OTHER, "staging", 30, TESTS)
    start_canary(store, "iris", STABLE, "production", 5, change=TESTS)
    state = store.registry.read().state
    assert state.deployment("iris", "production").routing_salt and state.deployment("iris", "staging").routing_salt
    replayed = replay(store.registry.audit.entries())
    assert same_registry(replayed, state)
    assert replayed.deployment("iris", "production").routing_salt == state.deployment("iris", "production").routing_salt


def test_the_cli_records_a_salt_and_audit_replay_restores_it(rollout: RolloutStore):
    root = str(rollout.store.root)
    assert main(["canary", "iris", OTHER, "--env", "production", "--weight", "10", "--store", root]) == 0
    salt = salt_of(rollout)
    assert salt is not None
    original = json.loads(rollout.store.registry_path.read_bytes())
    assert original["deployments"]["iris"]["production"]["routing_salt"] == salt
    rollout.store.registry_path.unlink()
    assert main(["audit", "replay", "--restore", "--store", root]) == 0
    assert json.loads(rollout.store.registry_path.read_bytes()) == original


def test_registries_and_logs_from_before_salts_keep_their_users_sides(rollout: RolloutStore):
    """A StartCanary without a salt (what replay makes of an old audit entry) leaves the deployment unsalted, and an
    unsalted deployment splits exactly as before salts: bucket = sha256(key)."""
    transition(rollout.store, StartCanary("iris", "production", OTHER, 25), TESTS)
    assert salt_of(rollout) is None
    deployment = rollout.deployment()
    rng = random.Random(0)
    for key in (f"user-{i}" for i in range(500)):
        expected = "canary" if bucket(key) < threshold(25) else "stable"
        assert choose_arm(deployment, key, rng)[0] == expected
    assert same_registry(replay(rollout.store.registry.audit.entries()), rollout.store.registry.read().state)


def test_a_malformed_salt_sets_its_entry_aside_and_the_rest_stays_usable():
    raw = {"deployments": {"iris": {
        "production": {"version": "v1", "deployed_at": "2026-01-01T00:00:00Z", "routing_salt": "not hex"},
        "staging": {"version": "v1", "deployed_at": "2026-01-01T00:00:00Z", "routing_salt": "ab" * 16}}}}
    data = parse_registry(json.dumps(raw).encode(), "registry.json")
    assert data.deployment("iris", "production") is None
    assert "routing_salt" in data.invalid[0].reason
    assert data.deployment("iris", "staging").routing_salt == "ab" * 16


def test_serve_refuses_a_bad_header_name_in_one_line(rollout: RolloutStore):
    result = subprocess.run([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--routing-header",
                             "X User", "--store", str(rollout.store.root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--routing-header 'X User'" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


# --- end to end: the split over a real server --------------------------------------------------------------------


def canary_keys(weight: float) -> Iterator[str]:
    """Keys an attacker computes to land in the canary with the published, unsalted bucket."""
    return (key for i in itertools.count() if bucket(key := f"attacker-{i}") < threshold(weight))


def share_within(count: int, total: int, weight: float) -> bool:
    p = weight / 100
    return abs(count / total - p) < 4 * np.sqrt(p * (1 - p) / total)


@pytest.mark.e2e
def test_without_a_trusted_header_a_client_routing_key_does_not_pick_its_side(rollout: RolloutStore):
    weight, requests = 30, 300
    rollout.canary(OTHER, weight)
    settings = gateway_settings(rollout.store, "production", routing_header=None, rollout_tick_s=3600)
    with running_server(create_app(settings, metrics_registry=CollectorRegistry())) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        key = next(canary_keys(weight))
        arms = [client.post("/predict/iris", json=BODY, headers={"X-Routing-Key": key}).json()["arm"]
                for _ in range(requests)]
        v2_arms = [client.post("/v2/models/iris/infer", json=V2_BODY, headers={"X-Routing-Key": key}).json()
                   ["parameters"]["arm"] for _ in range(requests)]
    for seen in (arms, v2_arms):
        assert set(seen) == {"stable", "canary"}
        assert share_within(seen.count("canary"), requests, weight), f"{seen.count('canary')} of {requests} canary"


@contextmanager
def serve_trusting(rollout: RolloutStore, header: str) -> Iterator[str]:
    """`onnxgate serve --routing-header HEADER` in its own process."""
    command = [sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port := free_port()),
               "--routing-header", header, "--store", str(rollout.store.root)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env.update(ONNXGATE_ROLLOUT_TICK_S="3600")
    with open(rollout.store.root.parent / "gateway.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, DEADLINE_S)
            yield url
        finally:
            stop_server(process)


@pytest.mark.e2e
def test_with_a_trusted_header_each_user_keeps_the_side_its_salted_bucket_gives(rollout: RolloutStore):
    weight = 30
    rollout.canary(OTHER, weight)
    salt = salt_of(rollout)
    attacker = canary_keys(weight)
    users = [f"user-{i}" for i in range(60)]
    with serve_trusting(rollout, "X-User") as url, httpx.Client(base_url=url, timeout=30) as client:
        sides = {}
        for user in users:
            seen = {client.post("/predict/iris", json=BODY, headers={"X-User": user, "X-Routing-Key": next(attacker)})
                    .json()["arm"] for _ in range(3)}
            seen.add(client.post("/v2/models/iris/infer", json=V2_BODY, headers={"x-user": user}).json()
                     ["parameters"]["arm"])
            assert len(seen) == 1, f"{user} saw {seen}"
            sides[user] = seen.pop()
        # X-Routing-Key alone is just another header here: no stickiness from it
        key = next(attacker)
        alone = [client.post("/predict/iris", json=BODY, headers={"X-Routing-Key": key}).json()["arm"]
                 for _ in range(200)]
    assert sides == {user: "canary" if bucket(user, salt) < threshold(weight) else "stable" for user in users}
    assert set(sides.values()) == {"stable", "canary"}
    assert share_within(alone.count("canary"), len(alone), weight), f"{alone.count('canary')} of 200 canary"
