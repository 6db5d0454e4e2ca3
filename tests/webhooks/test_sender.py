"""The event sender against a real HTTP receiver on loopback: delivery in log order, the event filter, the signature
as a receiver checks it, retries (connection refused, 5xx, 429) until delivery, 4xx refusals skipped after the
configured tries, and one sender per store."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstore.audit import AuditLog
from modelstore.layout import Store
from modelstore.rollout import rollback_environment
from modelstore.transitions import Change
from tests.factories import WebhookReceiver, deploy_version, make_store, publish_classifier, wait_until
from tests.webhooks.conftest import logged, make_history, subscriber, write_events
from webhooks.cursor import CursorStore
from webhooks.errors import SenderBusy
from webhooks.payload import verify_signature
from webhooks.sender import EventSender
from webhooks.status import subscriber_status

pytestmark = pytest.mark.e2e
@contextlib.contextmanager
def running_sender(store: Store) -> Iterator[EventSender]:
    sender = EventSender(store.root)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), name="event-sender", daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def test_every_event_in_order_signed_and_filtered(store: Store) -> None:
    with WebhookReceiver() as receiver:
        write_events(store, subscriber("all", receiver.url("/all"), secret="s3cret"),
                     subscriber("deploys", receiver.url("/deploys"), events='["deployment_completed"]'))
        make_history(store)
        with running_sender(store):
            everything = logged(store)
            wait_until(lambda: len(receiver.bodies("/all")) == len(everything), what="every event at /all")
            # an event recorded while the sender runs arrives too
            rollback_environment(store, "iris", "production", Change(actor="alice", reason="bad answers"))
            everything = logged(store)
            wait_until(lambda: len(receiver.bodies("/all")) == len(everything), what="the rollback at /all")
            deploys = [item for item in everything if item[1] == "deployment_completed"]
            wait_until(lambda: len(receiver.bodies("/deploys")) == len(deploys), what="the deploys")

    assert len(everything) >= 5 and len(deploys) == 2
    received = receiver.requests("/all")
    assert [body["position"] for body in receiver.bodies("/all")] == [position for position, _, _ in everything]
    for (headers, raw), (position, event, line) in zip(received, everything, strict=True):
        body = receiver.bodies("/all")[position - 1]
        assert body["event"] == event and headers["x-onnxgate-event"] == event
        assert body["entry"] == AuditLog(store.audit_path).entries()[position - 1]
        assert headers["x-onnxgate-delivery"] == body["id"] == hashlib.sha256(line).hexdigest()
        expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        assert headers["x-onnxgate-signature"] == expected
        assert verify_signature(b"s3cret", raw, headers["x-onnxgate-signature"])
        assert not verify_signature(b"another", raw, headers["x-onnxgate-signature"])
        assert body["text"].startswith(f"onnxgate: {event}: ")
    rollback = receiver.bodies("/all")[-1]
    assert rollback["event"] == "deployment_rolled_back"
    assert rollback["text"] == ("onnxgate: deployment_rolled_back: iris v1.0.0 in production (v2.0.0 -> v1.0.0) by "
                                "alice: bad answers")
    assert [body["position"] for body in receiver.bodies("/deploys")] == [position for position, _, _ in deploys]
    assert all("x-onnxgate-signature" not in headers for headers, _ in receiver.requests("/deploys"))


def test_a_receiver_that_is_down_gets_everything_once_in_order_when_it_comes_back(store: Store) -> None:
    receiver = WebhookReceiver()  # not started: connections to its port are refused
    write_events(store, subscriber("late", receiver.url("/late")))
    make_history(store)
    cursors = CursorStore(store.root)
    with running_sender(store):
        wait_until(lambda: (cursors.read("late") or None) is not None and cursors.read("late").failures >= 3,
                   what="three refused connections")
        cursor = cursors.read("late")
        assert cursor.position == 0 and "Connection refused" in (cursor.last_error or "")
        publish_classifier(store, "iris", "v3.0.0", seed=3)  # logged while the receiver is down
        with receiver:
            everything = logged(store)
            wait_until(lambda: len(receiver.bodies("/late")) == len(everything), what="the backlog")
            wait_until(lambda: cursors.read("late").position == len(everything), what="the cursor at the end")
    ids = [body["id"] for body in receiver.bodies("/late")]
    assert len(ids) == len(set(ids)) == len(everything)
    assert [body["position"] for body in receiver.bodies("/late")] == list(range(1, len(everything) + 1))
    cursor = cursors.read("late")
    assert cursor.delivered == len(everything) and cursor.failures == 0 and cursor.last_error is None


def test_server_errors_are_retried_and_client_errors_skipped_after_three_tries(store: Store) -> None:
    make_history(store)
    everything = logged(store)
    with WebhookReceiver() as receiver:
        receiver.statuses["/flaky"] = [500, 503, 429, 408]
        receiver.statuses["/picky"] = [400, 404, 422]  # the first event is refused three times, then skipped
        write_events(store, subscriber("flaky", receiver.url("/flaky")), subscriber("picky", receiver.url("/picky")))
        with running_sender(store):
            wait_until(lambda: len(receiver.bodies("/flaky")) == len(everything), what="every event at /flaky")
            wait_until(lambda: len(receiver.bodies("/picky")) == len(everything) - 1, what="the rest at /picky")
    assert [body["position"] for body in receiver.bodies("/flaky")] == list(range(1, len(everything) + 1))
    assert [body["position"] for body in receiver.bodies("/picky")] == list(range(2, len(everything) + 1))
    picky = CursorStore(store.root).read("picky")
    assert [(skipped.position, skipped.event, skipped.status) for skipped in picky.skipped] == [
        (1, everything[0][1], 422)]
    rows = {row["subscriber"]: row for row in subscriber_status(store)}
    assert rows["picky"]["backlog"] == rows["flaky"]["backlog"] == 0
    assert rows["picky"]["position"] == len(everything) and len(rows["picky"]["skipped"]) == 1


def test_a_new_subscriber_starts_at_the_end_by_default(store: Store) -> None:
    make_history(store)
    with WebhookReceiver() as receiver:
        write_events(store, subscriber("new", receiver.url("/new"), start="end"))
        sender = EventSender(store.root)
        sender.run_once()
        assert receiver.bodies("/new") == []
        deploy_version(store, "iris", "v1.0.0", "staging")
        sender.run_once()
    assert [body["event"] for body in receiver.bodies("/new")] == ["deployment_completed"]
    assert receiver.bodies("/new")[0]["entry"]["environment"] == "staging"


def test_one_sender_per_store(tmp_path: Path) -> None:
    store = make_store(tmp_path / "models")
    write_events(store, subscriber("any", "http://127.0.0.1:9/"))
    first = EventSender(store.root)
    with first.sender_lock(wait=None), pytest.raises(SenderBusy, match="another process is the event sender"):
        EventSender(store.root).run_once()
