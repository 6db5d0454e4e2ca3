"""`onnxgate import PACKAGE`: verify a package and install its version into a store."""
from __future__ import annotations

import argparse
from pathlib import Path

from modelstore.package import import_package
from onnxgate.commands.common import (
    add_change_arguments,
    add_json_argument,
    add_store_argument,
    change_from,
    read_input_file,
    store_from,
)
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="verify a package and unpack it into the store (refuses path traversal, "
                            "links and tampered files)")
    parser.add_argument("package")
    parser.add_argument("--force", action="store_true", help="replace the version if the store has it already")
    parser.add_argument("--public-key", metavar="PEM", help="require a valid Ed25519 signature from this key")
    add_store_argument(parser)
    add_change_arguments(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    key = read_input_file(args.public_key, "public key") if args.public_key else None
    metadata = import_package(Path(args.package), store, change_from(args), force=args.force, public_key=key)
    if args.json:
        print_json({"name": metadata.name, "version": metadata.version, "store": str(store.root)})
    else:
        print(f"imported {metadata.name} {metadata.version} into {store.root}")
    return 0
