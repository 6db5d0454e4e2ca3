"""`onnxgate package NAME VERSION`: write a reproducible model_packages/<name>_<version>.tar.gz."""
from __future__ import annotations

import argparse
from pathlib import Path

from modelstore.package import build_package
from onnxgate.commands.common import add_json_argument, add_store_argument, read_input_file, store_from
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("package", help="write a reproducible .tar.gz package of a store version")
    parser.add_argument("name")
    parser.add_argument("version", help="a version such as v1.2.0, or 'latest'")
    parser.add_argument("--out", default="model_packages", help="output directory (default: model_packages)")
    parser.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM) to sign the manifest with")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    key = read_input_file(args.sign, "signing key") if args.sign else None
    version = store.resolve_version(args.name, args.version)
    path = build_package(store, args.name, version, Path(args.out), signing_key=key)
    if args.json:
        print_json({"package": str(path), "name": args.name, "version": version, "signed": key is not None})
    else:
        print(f"wrote {path}{' (signed)' if key else ''}")
    return 0
