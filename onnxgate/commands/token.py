"""`onnxgate token create NAME --role ROLE --tokens FILE`: a new ops API token. The secret is printed once; the file
keeps its SHA-256 only."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.admin.tokens import ROLES, InvalidTokens, create_token
from onnxgate.errors import UsageError
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("token", help="manage the ops API's bearer tokens")
    actions = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token, append its hash to the tokens file, print its secret once",
                                description="Make a token for the ops API (/admin/v1/): its secret is printed once and "
                                "never stored; the tokens file (created 0600) keeps its name, role and SHA-256.")
    create.add_argument("name", help="who the token is for: the actor of the changes it makes")
    create.add_argument("--role", required=True, choices=ROLES,
                        help="read: GETs; deploy: deploy, canary, promote, rollback, shadow, snapshots; approve: "
                        "approvals; admin: all")
    create.add_argument("--tokens", required=True, type=Path, metavar="FILE",
                        help="the tokens file (.toml or .json), as given to onnxgate serve --admin-tokens")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    create.set_defaults(run=run_create)


def run_create(args: argparse.Namespace) -> int:
    try:
        secret = create_token(args.tokens, args.name, args.role)
    except InvalidTokens as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json({"name": args.name, "role": args.role, "tokens": str(args.tokens), "secret": secret})
    else:
        print(secret, flush=True)  # alone on stdout: SECRET=$(onnxgate token create ...)
        print(f"token {args.name!r} ({args.role}) added to {args.tokens}; its secret (above) is stored nowhere: "
              "keep it now", file=sys.stderr)
    return 0
