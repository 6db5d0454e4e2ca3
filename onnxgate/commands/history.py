"""`onnxgate history [NAME]`: the audit log, newest last."""
from __future__ import annotations

import argparse

from modelstore.events import event_of
from modelstore.overview import HISTORY_LIMIT, history
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("history", help="show the audit log (register, deploy, rollback, ...)")
    parser.add_argument("name", nargs="?", help="only this model")
    parser.add_argument("--env", help="only this environment")
    parser.add_argument("--event", help="only entries of this lifecycle event, e.g. deployment_denied")
    parser.add_argument("--limit", type=int, default=HISTORY_LIMIT,
                        help=f"at most this many entries, newest (default {HISTORY_LIMIT})")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    entries = history(store_from(args), model=args.name, environment=args.env, event=args.event, limit=args.limit)
    if args.json:
        print_json(entries)
        return 0
    print_table(["TIME", "EVENT", "ACTION", "MODEL", "ENV", "BEFORE", "AFTER", "ACTOR", "REASON"],
                [[e["time"], event_of(e) or "-", e["action"], e.get("model") or "-", e.get("environment") or "-",
                  e.get("before") or "-", e.get("after") or "-", e["actor"], e.get("reason") or ""] for e in entries])
    return 0
