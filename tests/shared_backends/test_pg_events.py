"""The event sender with the registry in a real PostgreSQL: it reads the audit log through the registry (no audit.log
under the store root), delivers every entry in order to a real HTTP receiver on loopback, including one committed
while it runs, and `events status` counts the same log."""
from __future__ import annotations

import threading

import pytest

from modelstore.events import event_of
from modelstore.layout import AUDIT_FILE, Store
from modelstore.rollout import rollback_environment
from modelstore.transitions import Change
from tests.factories import WebhookReceiver, deploy_version, publish_classifier, wait_until
from tests.webhooks.conftest import subscriber, write_events
from webhooks.sender import EventSender
from webhooks.status import subscriber_status

pytestmark = pytest.mark.e2e


def test_the_sender_delivers_the_audit_log_kept_in_postgres(pg_store: Store) -> None:
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    publish_classifier(pg_store, "iris", "v2.0.0", seed=2)
    deploy_version(pg_store, "iris", "v1.0.0")
    deploy_version(pg_store, "iris", "v2.0.0")
    with WebhookReceiver() as receiver:
        write_events(pg_store, subscriber("all", receiver.url("/all")))
        sender = EventSender(pg_store.root, registry=pg_store.registry)
        stop = threading.Event()
        thread = threading.Thread(target=sender.run, args=(stop,), name="event-sender", daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(receiver.bodies("/all")) == len(pg_store.registry.audit.entries()),
                       what="every entry of the database's audit log")
            rollback_environment(pg_store, "iris", "production", Change(actor="alice", reason="bad answers"))
            entries = pg_store.registry.audit.entries()
            wait_until(lambda: len(receiver.bodies("/all")) == len(entries), what="the rollback committed meanwhile")
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()
    bodies = receiver.bodies("/all")
    assert [body["position"] for body in bodies] == list(range(1, len(entries) + 1))
    assert [body["event"] for body in bodies] == [event_of(entry) for entry in entries]
    assert bodies[-1]["event"] == "deployment_rolled_back" and bodies[-1]["entry"]["actor"] == "alice", bodies[-1]
    assert not (pg_store.root / AUDIT_FILE).exists()
    [row] = subscriber_status(pg_store)
    assert row["log_lines"] == len(entries) and row["backlog"] == 0, row
