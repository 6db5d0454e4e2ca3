"""The gateway runs the event sender in its lifespan: a broken events.toml is refused with its line in the log and
serving goes on; fixed, the events flow; several gateways on one store send each event once (one holds the lock)."""
from __future__ import annotations

import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.layout import Store
from tests.factories import WebhookReceiver, deploy_version, publish_classifier, running_server, wait_until
from tests.gateway.conftest import gateway_settings
from tests.webhooks.conftest import logged, subscriber, write_events

pytestmark = pytest.mark.e2e


def test_a_broken_events_toml_does_not_stop_serving_and_a_fixed_one_sends(store: Store,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="onnxgate.events")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    deploy_version(store, "iris", "v1.0.0")
    (store.root / "events.toml").write_text('[[subscribers]]\nname = "ops"\nurl = "http://127.0.0.1:9/"\n'
                                            'events = ["deploymnet_completed"]\n')
    with WebhookReceiver() as receiver:
        apps = [create_app(gateway_settings(store), metrics_registry=CollectorRegistry()) for _ in range(2)]
        with running_server(apps[0]) as first, running_server(apps[1]) as second:
            wait_until(lambda: "events.toml refused" in caplog.text, what="the refusal in the log")
            assert "line 4: subscribers.0.events: unknown event 'deploymnet_completed' (did you mean " \
                   "'deployment_completed'?)" in caplog.text
            for url in (first, second):
                answer = httpx.post(f"{url}/predict/iris", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]}, timeout=60)
                assert answer.status_code == 200, answer.text

            write_events(store, subscriber("ops", receiver.url("/ops")))
            everything = logged(store)
            wait_until(lambda: len(receiver.bodies("/ops")) == len(everything), what="the events after the fix")
            publish_classifier(store, "iris", "v2.0.0", seed=2)
            deploy_version(store, "iris", "v2.0.0")
            everything = logged(store)
            wait_until(lambda: len(receiver.bodies("/ops")) == len(everything), what="the new events")
    ids = [body["id"] for body in receiver.bodies("/ops")]
    assert len(ids) == len(set(ids)) == len(everything)  # two gateways, each event once
    assert [body["position"] for body in receiver.bodies("/ops")] == list(range(1, len(everything) + 1))
