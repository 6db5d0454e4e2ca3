"""`onnxgate list`: every model and version in the store, with registry status and headline metrics.

A version whose metadata cannot be read is listed as broken, with the reason, and the command exits non-zero: one
bad file neither hides the other versions nor ends in a traceback. A registry entry set aside as invalid is reported
the same way."""
from __future__ import annotations

import argparse
import sys

from modelstore.overview import version_rows
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json, print_table

BROKEN_EXIT_CODE = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list models and versions in the store")
    parser.add_argument("name", nargs="?", help="only this model")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    registry = store.registry.read().state
    names = [args.name] if args.name else store.list_models()
    rows = version_rows(store, registry, names)
    broken = [row["error"] for row in rows if row["status"] == "broken"]
    broken += [entry.describe() for entry in registry.invalid if not args.name or entry.name == args.name]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["MODEL", "VERSION", "STATUS", "SERVING", "FRAMEWORK", "TASK", "METRICS", "CREATED"],
            [[r["name"], r["version"] + (" *" if r["latest"] else ""), r["status"], ",".join(r["environments"]) or "-",
              r["framework"] or "-", r["task"] or "-", " ".join(f"{k}={v:.3f}" for k, v in r["metrics"].items()),
              r["created_at"] or "-"] for r in rows],
        )
    for error in broken:
        print(f"onnxgate list: error: {error}", file=sys.stderr)
    return BROKEN_EXIT_CODE if broken else 0
