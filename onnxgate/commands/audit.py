"""`onnxgate audit verify`: check the audit log's hash chain and name the first line where it breaks."""
from __future__ import annotations

import argparse

from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="audit log tools")
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain of the audit log")
    add_store_argument(verify)
    add_json_argument(verify)
    verify.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    log = store_from(args).registry.audit
    lines = log.verify()
    if args.json:
        print_json({"ok": True, "lines": lines, "path": str(log.path)})
    else:
        print(f"OK {log.path}: hash chain holds over {lines} line(s)")
    return 0
