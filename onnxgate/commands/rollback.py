"""`onnxgate rollback NAME --env ENV [--to VERSION]`: undo the last change to an environment.

With a canary running, this rolls the canary back (all traffic to stable; stable untouched). Without one, the stable
version returns to the previous one, or to --to.
"""
from __future__ import annotations

import argparse

from modelstore.rollout import rollback_environment
from onnxgate.commands.canary import print_outcome
from onnxgate.commands.common import (
    add_change_arguments,
    add_dry_run_argument,
    add_json_argument,
    add_store_argument,
    change_from,
    store_from,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rollback", help="roll back the canary, else the stable version",
                            description="With a canary running, roll the canary back (stable is untouched). Otherwise "
                            "return the stable version to the previous one, or to --to VERSION.")
    parser.add_argument("name", help="model name")
    parser.add_argument("--env", required=True, help="environment, e.g. prod")
    parser.add_argument("--to", metavar="VERSION", help="stable version to return to (no canary running)")
    add_dry_run_argument(parser)
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    outcome = rollback_environment(store_from(args), args.name, args.env, change_from(args), to=args.to,
                                   dry_run=args.dry_run)
    if outcome.action == "canary_rollback":
        text = (f"rolled back the canary {args.name} {outcome.before} in {args.env}: all traffic to {outcome.after}"
                if outcome.changed else f"{args.name} has no canary in {args.env} any more: nothing to do")
    else:
        text = f"rolled back {args.name} in {args.env}: {outcome.before} -> {outcome.after}"
    print_outcome(outcome, args.json, text, args.dry_run)
    return 0
