"""`onnxgate approve NAME VERSION --env ENV [--reject] [--rollback]`: record a reviewer's decision on a version."""
from __future__ import annotations

import argparse

from modelstore.approvals import approve
from onnxgate.commands.canary import print_outcome
from onnxgate.commands.common import add_change_arguments, add_json_argument, add_store_argument, change_from, store_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("approve", help="approve (or --reject) a version for an environment",
                            description="Record an approval of VERSION for ENV by --actor (default: the OS user). The "
                            "environment's policy (policy.toml) says how many distinct approvers a deployment needs "
                            "and whether the deployer's own approval counts; any reviewer's rejection blocks it. A "
                            "reviewer's latest decision is the one that counts.")
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="version, e.g. v1.2.0")
    parser.add_argument("--env", required=True, help="environment, e.g. production")
    parser.add_argument("--reject", action="store_true", help="record a rejection instead")
    parser.add_argument("--rollback", action="store_true",
                        help="approve rolling back to VERSION (the policy's rollback_approvals), not deploying it")
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    status = "rejected" if args.reject else "approved"
    kind = "rollback" if args.rollback else "deploy"
    outcome = approve(store_from(args), args.name, args.version, args.env, change_from(args), status=status, kind=kind)
    what = "rolling back to" if args.rollback else "deploying"
    print_outcome(outcome, args.json, f"{status} {what} {args.name} {args.version} in {args.env}")
    return 0
