"""`onnxgate events run|status` as processes: a sender killed mid-backlog (SIGKILL, a request in flight) resumes from
its cursor: nothing is lost, and only the event in flight is sent twice, with the same delivery id (at-least-once)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from modelstore.layout import Store
from tests.factories import WebhookReceiver, deploy_version, publish_classifier, wait_until
from tests.webhooks.conftest import logged, make_history, subscriber, write_events
from webhooks.cursor import CursorStore
from webhooks.sender import EventSender

pytestmark = pytest.mark.e2e


def onnxgate(store: Store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxgate", "events", *args, "--store", str(store.root)],
                          capture_output=True, text=True, timeout=120)


def test_a_sender_killed_mid_backlog_resumes_without_loss(store: Store) -> None:
    make_history(store)
    with WebhookReceiver() as receiver:
        write_events(store, subscriber("ops", receiver.url("/ops")))
        sent = onnxgate(store, "run", "--once")
        assert sent.returncode == 0, sent.stderr
        first = len(logged(store))
        assert [body["position"] for body in receiver.bodies("/ops")] == list(range(1, first + 1))

        publish_classifier(store, "iris", "v3.0.0", seed=3)
        deploy_version(store, "iris", "v3.0.0", "staging")
        receiver.hold.clear()  # the next request waits at the receiver: in flight when the sender dies
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "events", "run", "--store", str(store.root)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(receiver.waiting.is_set, what="a request in flight")
        finally:
            process.kill()
            process.wait(30)
        receiver.hold.set()  # the receiver answers (and keeps) the request whose sender is gone
        wait_until(lambda: len(receiver.bodies("/ops")) == first + 1, what="the request in flight to be recorded")
        assert CursorStore(store.root).read("ops").position == first  # its delivery was never recorded

        resumed = onnxgate(store, "run", "--once")
        assert resumed.returncode == 0, resumed.stderr
    everything = logged(store)
    bodies = receiver.bodies("/ops")
    positions = [body["position"] for body in bodies]
    assert positions == [*range(1, first + 2), *range(first + 1, len(everything) + 1)]
    counts = Counter(body["id"] for body in bodies)
    assert [count for count in counts.values() if count > 1] == [2]
    assert len(counts) == len(everything)

    status = onnxgate(store, "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert (row["subscriber"], row["position"], row["backlog"], row["log_lines"]) == ("ops", len(everything), 0,
                                                                                      len(everything))


def test_status_shows_the_backlog_and_a_second_sender_is_refused(store: Store) -> None:
    make_history(store)
    write_events(store, subscriber("down", "http://127.0.0.1:9/never", events='["deployment_completed"]'))
    status = onnxgate(store, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[2].split()[:5] == ["down", "deployment_completed", "0", str(len(logged(store))),
                                                        "2"]
    with EventSender(store.root).sender_lock(wait=None):
        busy = onnxgate(store, "run", "--once")
    assert busy.returncode == 13
    assert "another process is the event sender" in busy.stderr


def test_a_broken_events_toml_is_refused_with_its_line(store: Store) -> None:
    (store.root / "events.toml").write_text('[[subscribers]]\nname = "a"\nurl = "http://x/"\nevent = ["*"]\n')
    for args in (("run", "--once"), ("status",)):
        refused = onnxgate(store, *args)
        assert refused.returncode == 14
        assert refused.stderr.strip() == (f"onnxgate events: error: {store.root / 'events.toml'}: line 4: "
                                          "subscribers.0.event: unknown field (did you mean 'events'?)")
    assert not os.path.exists(store.root / ".events")
