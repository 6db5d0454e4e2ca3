"""`onnxgate deploy NAME VERSION --env ENV`: make a verified version the stable one of an environment."""
from __future__ import annotations

import argparse

from modelstore.deployments import deploy
from onnxgate.commands.common import add_change_arguments, add_store_argument, change_from, store_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("deploy", help="deploy a version to an environment (checks its sha256 first)")
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="version to deploy, e.g. v1.2.0")
    parser.add_argument("--env", required=True, metavar="ENV", help="environment, e.g. staging or production")
    add_change_arguments(parser)
    add_store_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    previous = deploy(store_from(args), args.name, args.version, args.env, change_from(args))
    replaced = f" (was {previous})" if previous and previous != args.version else ""
    print(f"deployed {args.name} {args.version} to {args.env}{replaced}")
    return 0
