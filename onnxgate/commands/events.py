"""`onnxgate events run [--once] | status`: the store's audit events POSTed to the subscribers of events.toml (a thin
shell over webhooks/), for stores without a gateway (a gateway runs the sender itself)."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from onnxgate.commands.common import add_json_argument, add_store_argument
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "events", help="send audit events to the webhooks of events.toml; show each subscriber's backlog",
        description="POST every audit event to the subscribers of events.toml at the store root (signed when a "
                    "secret is set), retrying with backoff and resuming from each subscriber's cursor in .events/. "
                    "A gateway serving the store does this itself; one sender runs per store at a time.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="deliver until SIGTERM or Ctrl-C (waits while another sender runs)")
    run.add_argument("--once", action="store_true",
                     help="try each pending event once, in order, and exit (exit 13 if another sender runs)")
    status = actions.add_parser("status", help="each subscriber's cursor, backlog and last error")
    for each in (run, status):
        add_store_argument(each)
        add_json_argument(each)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    return {"run": _send, "status": _status}[args.action](args)


def _send(args: argparse.Namespace) -> int:
    from onnxgate.commands.common import store_from
    from webhooks.config import read_events_config
    from webhooks.sender import EventSender

    store = store_from(args)
    if read_events_config(store.root) is None:
        print(f"{store.root}/events.toml: no such file; nothing to send")
        return 0
    sender = EventSender(store.root, registry=store.registry)
    if args.once:
        sender.run_once()
        return _status(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sender.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _status(args: argparse.Namespace) -> int:
    from onnxgate.commands.common import store_from
    from webhooks.status import subscriber_status

    rows = subscriber_status(store_from(args))
    if args.json:
        print_json(rows)
        return 0
    print_table(("subscriber", "events", "position", "log", "backlog", "delivered", "skipped", "last error"),
                [(r["subscriber"], ",".join(r["events"]), r["position"], r["log_lines"], r["backlog"], r["delivered"],
                  len(r["skipped"]), r["last_error"] or "-") for r in rows])
    return 0
