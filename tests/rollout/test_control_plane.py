"""The gateway's own rollout decisions go through the one transition API: the store's checks refuse them like anyone
else's, and the SLO they are made under is the one type resolved once (deployment over gateway defaults). Real app
(TestClient), real store, real onnxruntime sessions; the judge runs on its own clock."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from gateway.app import create_app
from modelstore.clock import epoch_seconds
from modelstore.errors import ChangeRefused
from modelstore.layout import Store
from modelstore.rollout import promote
from modelstore.slo import SloPolicy
from tests.gateway.conftest import gateway_settings
from tests.rollout.gateway_fixtures import GOOD_ROW, OTHER, STABLE, RolloutStore, build_rollout_store, wait_until

QUICK_SLO = {"window_s": 0.3, "min_requests": 3, "breaches_to_rollback": 2}


@pytest.fixture
def rollout(tmp_path: Path) -> RolloutStore:
    return build_rollout_store(tmp_path / "models")


@contextmanager
def serving_under_load(client: TestClient) -> Iterator[None]:
    """Requests from one thread for as long as the block runs, so that both arms fill their windows."""
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            assert client.post("/predict/iris", json={"inputs": [GOOD_ROW]}).status_code == 200

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(30)


def test_automatic_promotion_bakes_for_the_gateways_default_not_300_s(rollout: RolloutStore):
    """A gateway-wide bake_s (--slo-file / ONNXGATE_SLO) used to be validated and then ignored: the gateway's own
    promotion baked for 300 s."""
    rollout.canary(OTHER, 50, steps=(100,), interval_s=0.3, **QUICK_SLO)
    settings = gateway_settings(rollout.store, "production", rollout_tick_s=0.05, slo=SloPolicy(bake_s=7))
    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client, serving_under_load(client):
        wait_until(lambda: rollout.deployment().canary is None, 60, "the automatic promotion")
    [promotion] = rollout.audit_actions("promote")
    assert promotion["actor"].startswith("gateway@") and promotion["details"]["via"] == "steps"
    bake = rollout.deployment().bake
    assert (rollout.deployment().version, bake.previous_version) == (OTHER, STABLE)
    assert epoch_seconds(bake.until) - epoch_seconds(promotion["time"]) == pytest.approx(7, abs=1)
    assert promotion["details"]["bake_s"] == 7


def test_a_deployments_window_sizes_the_windows_it_is_judged_on(rollout: RolloutStore):
    """A deployment's --window 5m used to be judged on at most 60 s: the windows were sized from the default once."""
    rollout.canary(OTHER, 10, window_s=300)
    settings = gateway_settings(rollout.store, "production", rollout_tick_s=3600)
    with TestClient(create_app(settings, metrics_registry=CollectorRegistry())) as client:
        state = client.app.state.service.pools.rollouts[("iris", "production")]
        assert state.windows.window_s == 300 and state.windows.horizon_s >= 600
        rollout.canary(OTHER, 10, window_s=20)
        client.portal.call(client.app.state.service.reload)
        assert state.windows.window_s == 20 and state.windows.horizon_s >= 40


def test_the_gateways_own_promotion_passes_the_stores_checks(rollout: RolloutStore):
    """A policy on the store refuses promotions: the gateway's judge steps the canary up (allowed) and then cannot
    promote it, exactly as the CLI could not."""
    refused: list[str] = []

    def no_promotions(store, proposal) -> list[dict]:
        if proposal.outcome.action == "promote":
            refused.append(proposal.change.actor)
            raise ChangeRefused("promotions wait for an approval")
        return []

    rollout.canary(OTHER, 25, steps=(50, 100), interval_s=0.3, **QUICK_SLO)
    guarded = Store(rollout.store.root, relative_paths=True, checks=(no_promotions,))
    settings = gateway_settings(rollout.store, "production", rollout_tick_s=0.05, gate_retry_s=0.1)
    app = create_app(settings, metrics_registry=CollectorRegistry(), store=guarded)
    with TestClient(app) as client, serving_under_load(client):
        wait_until(lambda: len(refused) >= 2, 60, "two refused promotions")
    deployment = rollout.deployment()
    assert (deployment.version, deployment.canary.version, deployment.canary.weight) == (STABLE, OTHER, 50)
    assert rollout.audit_actions("promote") == []
    [step] = rollout.audit_actions("canary_step")
    assert step["details"] == {"weight_from": 25.0, "weight_to": 50.0}
    assert all(actor.startswith("gateway@") for actor in refused)
    with pytest.raises(ChangeRefused):
        promote(guarded, "iris", "production")

