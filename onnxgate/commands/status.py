"""`onnxgate status`: what each environment serves, from registry.json. A deployment entry that does not validate
is reported as an error (exit code 5) after the valid ones."""
from __future__ import annotations

import argparse

from modelstore.errors import InvalidEntry
from modelstore.overview import invalid_deployments, status_rows
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="show the deployed version of every model per environment")
    parser.add_argument("--env", metavar="ENV", help="only this environment")
    add_json_argument(parser)
    add_store_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = store_from(args).registry.read().state
    rows = status_rows(data, args.env)
    if args.json:
        print_json(rows)
    elif not rows:
        print("nothing deployed" + (f" to {args.env}" if args.env else ""))
    else:
        headers = ["model", "environment", "version", "deployed_at", "status"]
        headers += [column for column in ("canary", "shadow", "last_rollback") if any(row[column] for row in rows)]
        print_table(headers, [[row[h] for h in headers] for row in rows])
    invalid = invalid_deployments(data, args.env)
    if invalid:  # set aside when the registry was read: shown as an error, never silently left out
        raise InvalidEntry("; ".join(invalid))
    return 0
