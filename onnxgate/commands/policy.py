"""`onnxgate policy`: check policy.toml and show the gates each environment applies."""
from __future__ import annotations

import argparse

from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("policy", help="validate the store's policy.toml and show its gates per environment")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    policy = store.read_policy()
    if args.json:
        print_json(policy.model_dump(mode="json") if policy else None)
        return 0
    if policy is None:
        print(f"no policy: {store.policy_path} does not exist, no change is gated")
        return 0
    print(f"{store.policy_path}: valid")
    tables = {**policy.environments, **({"(default)": policy.default} if policy.default else {})}
    for environment, rules in tables.items():
        given = rules.model_dump(exclude_defaults=True)
        print(f"[{environment}] " + (", ".join(f"{key}={value}" for key, value in sorted(given.items()))
                                     or "defaults only (sha256 and parity checked)"))
    return 0
