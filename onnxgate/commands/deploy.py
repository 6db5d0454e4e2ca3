"""`onnxgate deploy NAME VERSION --env ENV [--dry-run]`: make a verified version the stable one of an environment."""
from __future__ import annotations

import argparse

from modelstore.deployments import Deploy
from modelstore.transitions import transition
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
    parser = sub.add_parser("deploy", help="deploy a version to an environment (checks its sha256 and the gates first)")
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="version to deploy, e.g. v1.2.0")
    parser.add_argument("--env", required=True, metavar="ENV", help="environment, e.g. staging or production")
    add_dry_run_argument(parser)
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    outcome = transition(store_from(args), Deploy(args.name, args.env, args.version), change_from(args),
                         dry_run=args.dry_run)
    previous = outcome.before
    replaced = f" (was {previous})" if previous and previous != args.version else ""
    print_outcome(outcome, args.json, f"deployed {args.name} {args.version} to {args.env}{replaced}", args.dry_run)
    return 0
