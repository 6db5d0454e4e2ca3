"""The gateway's own promotion passes the same gates as the CLI: a real `onnxgate serve` process judging a canary
that climbs its steps; the step to 100 is refused while the policy's approval is missing (the canary stays where it
is, /health says why, the refusal is audited with its figures), and goes through once a reviewer approves."""
from __future__ import annotations

import threading

import httpx
import pytest

from modelstore.approvals import approve
from modelstore.transitions import Change
from tests.governance.gate_fixtures import audit
from tests.rollout.gateway_fixtures import GOOD_ROW, OTHER, STABLE, build_rollout_store, serve_store, wait_until

pytestmark = pytest.mark.e2e

POLICY = "[environments.production]\napprovals = 1\n"


def test_an_automatic_promotion_waits_for_its_approval_and_says_why(tmp_path):
    rollout = build_rollout_store(tmp_path / "models")
    rollout.canary(OTHER, 50, steps=(100,), interval_s=0.5, window_s=0.5, min_requests=3, breaches_to_rollback=2)
    rollout.store.policy_path.write_text(POLICY)  # after the canary started: its promotion is what is gated
    stop = threading.Event()
    with serve_store(rollout.store, tick_s=0.1, env={"ONNXGATE_GATE_RETRY_S": "0.5"}) as url:
        def send() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    client.post("/predict/iris", json={"inputs": [GOOD_ROW]})

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            def refusal() -> dict | None:
                health = httpx.get(f"{url}/health/iris", timeout=30).json()
                return (health.get("rollout") or {}).get("canary", {}).get("promotion_refused")

            wait_until(lambda: refusal() is not None, 120, "/health to report the refused promotion")
            reported = refusal()
            assert "refused by policy" in reported["reason"] and reported["action"] == "promote"
            [failing] = reported["failing_checks"]
            assert failing["check"] == "approvals" and failing["value"]["status"] == "pending"
            deployment = rollout.deployment()
            assert (deployment.version, deployment.canary.version, deployment.canary.weight) == (STABLE, OTHER, 50)
            denied = audit(rollout.store, "deployment_denied")
            assert denied and denied[0]["actor"].startswith("gateway@")
            assert denied[0]["details"]["action"] == "promote" and denied[0]["details"]["version"] == OTHER

            approve(rollout.store, "iris", OTHER, "production", Change(actor="bob", reason="looks good"))
            wait_until(lambda: rollout.deployment().canary is None, 120, "the promotion after the approval")
        finally:
            stop.set()
            sender.join(30)
    assert rollout.deployment().version == OTHER
    [promotion] = rollout.audit_actions("promote")
    assert promotion["actor"].startswith("gateway@") and promotion["details"]["via"] == "steps"
    verified = audit(rollout.store, "deployment_verified")
    assert verified[-1]["details"]["checks"][-1]["value"]["approvers"] == ["bob"]
