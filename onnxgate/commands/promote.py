"""`onnxgate promote NAME --env ENV`: make the running canary the stable version."""
from __future__ import annotations

import argparse

from modelstore.rollout import promote
from onnxgate.commands.canary import duration, print_outcome
from onnxgate.commands.common import (
    add_change_arguments,
    add_dry_run_argument,
    add_json_argument,
    add_store_argument,
    change_from,
    store_from,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("promote", help="make the environment's canary its stable version",
                            description="Make the canary stable. For a bake period afterwards (the deployment's SLO "
                            "bake_s, else --bake, else 5m; 0 for none) the gateway rolls back to the replaced version "
                            "if the new one does worse than it did.")
    parser.add_argument("name", help="model name")
    parser.add_argument("--env", required=True, help="environment, e.g. prod")
    parser.add_argument("--bake", type=duration, metavar="DURATION", help="bake period if the deployment sets none")
    add_dry_run_argument(parser)
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    outcome = promote(store_from(args), args.name, args.env, change_from(args), bake_s=args.bake,
                      dry_run=args.dry_run)
    bake_until = outcome.details.get("bake_until")
    bake = f"; baking until {bake_until}" if bake_until else ""
    print_outcome(outcome, args.json, f"promoted {args.name} {outcome.after} to stable in {args.env} "
                                      f"(was {outcome.before}){bake}", args.dry_run)
    return 0
