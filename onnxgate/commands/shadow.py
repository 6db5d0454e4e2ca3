"""`onnxgate shadow NAME VERSION --env ENV --weight 100` (or `--stop`): mirror traffic to a version that answers nobody."""
from __future__ import annotations

import argparse

from modelstore.rollout import start_shadow, stop_shadow
from onnxgate.commands.canary import percentage, print_outcome
from onnxgate.commands.common import add_change_arguments, add_json_argument, add_store_argument, change_from, store_from
from onnxgate.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("shadow", help="mirror a share of requests to a version, judged but never answering",
                            description="Mirror --weight percent of ENV's requests to VERSION: the gateway runs it, "
                            "measures latency and errors against stable, and discards its answers.")
    parser.add_argument("name", help="model name")
    parser.add_argument("version", nargs="?", help="version to shadow (or 'latest'); omit with --stop")
    parser.add_argument("--env", required=True, help="environment, e.g. prod")
    parser.add_argument("--weight", type=percentage, default=100.0, help="percent of requests to mirror (default 100)")
    parser.add_argument("--stop", action="store_true", help="stop the running shadow")
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store, change = store_from(args), change_from(args)
    if args.stop:
        if args.version:
            raise UsageError("--stop takes no VERSION: it stops whatever shadow runs in the environment")
        outcome = stop_shadow(store, args.name, args.env, change)
        print_outcome(outcome, args.json, f"stopped shadowing {args.name} {outcome.before} in {args.env}")
        return 0
    if not args.version:
        raise UsageError("give the VERSION to shadow, or --stop")
    outcome = start_shadow(store, args.name, args.version, args.env, args.weight, change)
    print_outcome(outcome, args.json, f"shadowing {args.weight:g}% of {args.name} requests in {args.env} to "
                                      f"{outcome.after}; its answers are measured, never returned")
    return 0
